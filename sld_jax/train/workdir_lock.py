"""One process per workdir: :class:`WorkdirLock`.

``fcntl.flock`` on ``workdir/.lock``, held while the run lives and released by the operating system
when the process dies (no stale lock after a SIGKILL). The file names the holder (host, pid, start
time) so a second process gets an error saying who has the workdir. In a multi-process run process
0 holds it; every process learns whether it was taken.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket

import jax

from sld_jax.errors import UserError
from sld_jax.train import checkpoint as ckpt_lib

LOCK_FILE = ".lock"


class WorkdirBusyError(UserError):
    """Another process holds the workdir's lock."""


def _holder_text() -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": now})


def _describe_holder(path: str) -> str:
    try:
        with open(path) as f:
            holder = json.loads(f.read() or "{}")
        return (
            f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, "
            f"started {holder.get('started', '?')}"
        )
    except (OSError, ValueError):
        return "holder unknown"


class WorkdirLock:
    """An exclusive, process-lifetime lock on a workdir (a context manager).

    ``flock`` locks belong to the open file: a second ``WorkdirLock`` on the same workdir fails
    even inside the same process, and the lock vanishes with the process. On a network file
    system the lock is only as good as the file system's ``flock`` (NFSv4 and Lustre with
    ``flock`` mounts honour it across hosts; some mounts silently make it host-local).

    Args:
      workdir: the run directory (created if absent).
      enabled: take the lock (default: on process 0 only; other processes only learn the outcome).

    Raises:
      WorkdirBusyError: another process holds the lock (the message names host, pid, start time).
      CheckpointError: the workdir cannot be created or written.
    """

    def __init__(self, workdir: str, *, enabled: bool | None = None):
        self.workdir = os.path.abspath(workdir)
        self.path = os.path.join(self.workdir, LOCK_FILE)
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self._fd: int | None = None

    def acquire(self) -> "WorkdirLock":
        error = None
        if self.enabled:
            try:
                ckpt_lib.check_writable(self.workdir)
                error = self._try_lock()
            except ckpt_lib.CheckpointError as e:
                if jax.process_count() == 1:
                    raise
                error = str(e)  # the other processes must hear of it, not wait forever
        if jax.process_count() > 1:
            error = _broadcast_error(error)
        if error is not None:
            raise WorkdirBusyError(error)
        return self

    def _try_lock(self) -> str | None:

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return (
                f"the workdir {self.workdir} is in use by another sld-train run "
                f"({_describe_holder(self.path)}); wait for it to finish, stop it, or choose "
                "another --workdir."
            )
        except OSError as e:  # a file system without flock support
            os.close(fd)
            return (
                f"cannot lock the workdir {self.workdir} ({e.strerror}): its file system does "
                "not support flock; use a local or flock-capable directory as --workdir."
            )
        os.ftruncate(fd, 0)
        os.write(fd, _holder_text().encode())
        os.fsync(fd)
        self._fd = fd
        return None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "WorkdirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _broadcast_error(error: str | None) -> str | None:
    """Process 0's lock outcome, on every process (so that all of them stop together)."""
    import numpy as np
    from jax.experimental import multihost_utils

    failed = multihost_utils.broadcast_one_to_all(np.array(error is not None, np.int32))
    if int(failed) and error is None:
        return "process 0 could not lock the workdir (see its error)."
    return error
