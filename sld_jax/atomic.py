"""Files written whole or not at all: a temporary file beside the target, renamed over it.

A kill or a failed write (a full disk) leaves the previous file, or none, never a torn one; the
temporary file of a failed write is removed. The one implementation for every file sld_jax
writes outside orbax: run configs, ``finished.json``, metrics, summaries and plots, dataset
caches, imported teachers' metadata. Also the one write probe of a directory
(:func:`write_probe_error`). Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str, *, fsync: bool = False) -> Iterator[str]:
    """Yields a fresh temporary path beside ``path`` (``.<name>.tmp-<pid>-<random>``, not yet
    created: the caller creates it, with the usual permissions); renames it over ``path`` when the
    block ends without an exception.

    Args:
      path: the file to write.
      fsync: flush the temporary file to disk before the rename (for large files that must
        survive a power cut, e.g. dataset caches).

    Raises:
      OSError: from the write or the rename (the temporary file is removed, ``path`` untouched);
        any other exception of the block likewise.

    >>> import pathlib, tempfile
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(str(target)) as tmp:
    ...     _ = pathlib.Path(tmp).write_text("whole")
    >>> target.read_text(), [p.name for p in target.parent.iterdir()]
    ('whole', ['a.txt'])
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_text(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def write_probe_error(directory: str) -> OSError | None:
    """Why files cannot be written in ``directory`` (created if missing), or None when they can.

    The probe file's name is unique to the call (pid and a random part, created exclusively) and
    the file is removed afterwards, so callers probing one directory at the same time never see
    each other's probe.
    """
    probe = None
    try:
        os.makedirs(directory, exist_ok=True)
        name = f".write_probe_{os.getpid()}_{secrets.token_hex(16)}"
        with open(os.path.join(directory, name), "x") as f:
            probe = f.name
            f.write("ok")
    except OSError as e:
        return e
    finally:
        if probe is not None:
            with contextlib.suppress(OSError):
                os.remove(probe)
    return None
