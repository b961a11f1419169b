"""One run per workdir: an exclusive lock, the same-run check on resume, one metrics line per epoch.

* :class:`WorkdirLock` — ``fcntl.flock`` on ``workdir/.lock``, held while the run lives and released
  by the operating system when the process dies (no stale lock after a SIGKILL). The file names the
  holder (host, pid, start time) so a second process gets an error saying who has the workdir. In a
  multi-process run process 0 holds it; every process learns whether it was taken.
* :func:`check_same_run` — resuming compares the workdir's ``config.json`` with the new config and
  refuses when a field that changes the computation differs, unless
  ``--config.resume_policy=override``.
* :func:`reset_metrics` — drops ``metrics.jsonl`` lines newer than the restored checkpoint, or
  moves the file aside when a run starts afresh over an old workdir.
* :func:`mark_finished` / :func:`read_finished` — ``finished.json``, written after a run's last
  checkpoint, summary and plot (removed while a run trains): what "finished" means to a suite.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import socket
from typing import Any, Iterable

import jax

from sld_jax import atomic
from sld_jax.errors import ConfigError, UserError
from sld_jax.train import checkpoint as ckpt_lib
from sld_jax.train import validation
from sld_jax.train.validation import flatten

log = logging.getLogger("sld_jax")

LOCK_FILE = ".lock"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
FINISHED_FILE = "finished.json"

# How each config field may change on a resume is declared once, with its other rules, in
# sld_jax.train.validation.FIELDS: these are views of it.
# Fields that may differ between a run and its resume (they change nothing computed at any step,
# or only how the steps are computed); every other field must be equal.
RESUMABLE_FIELDS = validation.resume_fields(validation.FREE) | validation.resume_fields(validation.ROUNDING)
# Of those, the ones that change how the steps are computed (another compiled program): a resume
# warns that its numbers differ from an uninterrupted run's by float rounding. num_devices without
# sync_batchnorm also regroups the per-device BatchNorm statistics.
ROUNDING_FIELDS = validation.resume_fields(validation.ROUNDING)
# Fields that fix the shape of the saved state: no policy can resume with another value.
SHAPE_FIELDS = validation.resume_fields(validation.SHAPE)
RESUME_POLICIES = validation.RESUME_POLICIES


class WorkdirBusyError(UserError):
    """Another process holds the workdir's lock."""


class RunMismatchError(ConfigError):
    """Resuming with a config that differs from the saved one in a field that changes the run."""


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
        import fcntl

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
            import fcntl

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


def _comparable(config: Any) -> dict[str, Any]:
    """Dotted key -> JSON value (tuples as lists), as ``config.json`` stores them."""
    if hasattr(config, "to_json_best_effort"):
        config = json.loads(config.to_json_best_effort())
    return dict(flatten(config))


def differing_fields(saved: Any, new: Any, *, ignore: Iterable[str] = RESUMABLE_FIELDS) -> list[str]:
    """Dotted keys whose values differ between two configs (or exist in one only), sorted.

    >>> differing_fields({"seed": 0, "num_epochs": 5, "optim": {"lr": 0.1}},
    ...                  {"seed": 1, "num_epochs": 9, "optim": {"lr": 0.1}})
    ['seed']
    """
    a, b = _comparable(saved), _comparable(new)
    ignore = set(ignore)
    return sorted(
        k for k in set(a) | set(b) if k not in ignore and a.get(k, "<absent>") != b.get(k, "<absent>")
    )


class UnreadableConfigError(UserError):
    """A workdir's ``config.json`` exists but does not parse (torn by a kill, edited by hand)."""


def read_config(workdir: str, *, fix: str) -> dict | None:
    """The config saved in ``workdir/config.json`` as a dict; None when there is none.

    Args:
      workdir: a run directory.
      fix: the end of the error's sentence: what the caller's user can do about a torn file.

    Raises:
      UnreadableConfigError: the file exists but is not a JSON object.
    """
    path = os.path.join(workdir, CONFIG_FILE)
    try:
        with open(path) as f:
            saved = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise UnreadableConfigError(f"{path} is unreadable ({e}); {fix}") from e
    if not isinstance(saved, dict):
        raise UnreadableConfigError(f"{path} holds no config (a JSON {type(saved).__name__}); {fix}")
    return saved


def write_config(workdir: str, config: Any) -> None:
    """Writes ``config`` (a ConfigDict) to ``workdir/config.json`` atomically: a kill leaves the old
    file or the new one, never a torn one."""
    atomic.write_text(os.path.join(workdir, CONFIG_FILE), config.to_json_best_effort(indent=2))


def has_checkpoints(workdir: str) -> bool:
    """True if ``workdir/checkpoints`` holds a finalised step directory (a run to resume)."""
    directory = os.path.join(workdir, "checkpoints")
    return os.path.isdir(directory) and any(n.isdigit() for n in os.listdir(directory))


def check_same_run(config: Any, workdir: str) -> None:
    """Refuses to resume ``workdir`` with a config that would change the run's computation.

    Nothing is checked when there is nothing to resume (no checkpoint or no ``config.json``).

    Raises:
      RunMismatchError: listing the differing fields; ``--config.resume_policy=override`` accepts
        them on purpose (the workdir's ``config.json`` then records the new config).
    """
    policy = config.get("resume_policy", "strict")
    if policy not in RESUME_POLICIES:
        raise ConfigError(
            f"resume_policy must be one of {'/'.join(RESUME_POLICIES)}, got "
            f"{policy!r}; use --config.resume_policy=strict (the default)."
        )
    if not has_checkpoints(workdir):
        return
    fix = "this resume cannot be checked: restore it, or pass --config.resume_policy=override."
    try:
        saved = read_config(workdir, fix=fix)
    except UnreadableConfigError as e:
        if policy == "override":
            log.warning("%s", e)
            return
        raise
    if saved is None:
        return
    rounding = [k for k in differing_fields(saved, config, ignore=()) if k in ROUNDING_FIELDS]
    if rounding:
        log.warning(
            "resuming %s with other %s: the run continues, and its numbers differ from an "
            "uninterrupted run's by float rounding (another compiled program)",
            workdir,
            ", ".join(rounding),
        )
    diff = differing_fields(saved, config)
    if not diff:
        return
    shape = [k for k in diff if k in SHAPE_FIELDS]
    if shape:
        raise RunMismatchError(
            f"{workdir} holds a run of {shape[0]}={_comparable(saved).get(shape[0])}, and its "
            f"checkpoints hold that many seeds, so it cannot resume with "
            f"{shape[0]}={_comparable(config).get(shape[0])} under any resume_policy; use another "
            "--workdir for the new value."
        )
    if policy == "override":
        log.warning(
            "resuming %s with a changed config (resume_policy=override): %s", workdir, ", ".join(diff)
        )
        return
    shown = ", ".join(
        f"{k} ({_short(_comparable(saved).get(k))} -> {_short(_comparable(config).get(k))})" for k in diff[:8]
    )
    more = f" and {len(diff) - 8} more" if len(diff) > 8 else ""
    raise RunMismatchError(
        f"{workdir} holds a run with another config, so resuming would mix two runs; differing "
        f"fields: {shown}{more}. Use another --workdir, or pass --config.resume_policy=override to "
        "resume it with the new values on purpose."
    )


def teacher_changed(config: Any, workdir: str) -> None:
    """Refuses (strict) or warns (``resume_policy=override``) when the teacher of the run saved in
    ``workdir`` is not the teacher its checkpoint recorded (retrained or replaced since).

    Raises:
      RunMismatchError: under the strict policy.
    """
    where = config.teacher.checkpoint
    if config.get("resume_policy", "strict") == "override":
        log.warning("resuming %s with a changed teacher in %s (resume_policy=override)", workdir, where)
        return
    raise RunMismatchError(
        f"{workdir} was distilled from another teacher than the one now in {where} (it was retrained "
        "or replaced), so resuming would mix two distillations. Use another --workdir or delete this "
        "one to distil from the new teacher, or pass --config.resume_policy=override to go on on purpose."
    )


def _short(value: Any) -> str:
    text = "absent" if value is None else json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def reset_metrics(workdir: str, restored_step: int | None) -> None:
    """Keeps ``metrics.jsonl`` one line per epoch of this run (process 0 only).

    Args:
      workdir: the run directory.
      restored_step: the step resumed from; lines of later steps (and torn lines) are dropped.
        None (a fresh start): an existing file is renamed ``metrics.jsonl.<UTC time>.old``.
    """
    path = os.path.join(workdir, METRICS_FILE)
    if jax.process_index() != 0 or not os.path.exists(path):
        return
    if restored_step is None:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
        os.replace(path, f"{path}.{stamp}.old")
        log.info("fresh start: moved the old %s aside (%s.%s.old)", METRICS_FILE, METRICS_FILE, stamp)
        return
    with open(path) as f:
        lines = f.readlines()
    keep = []
    for line in lines:
        try:
            if json.loads(line)["step"] <= restored_step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):  # a line cut short by a kill
            continue
    if len(keep) != len(lines):
        atomic.write_text(path, "".join(keep))


def mark_finished(workdir: str, *, step: int, best_step: int | None, teacher: str | None) -> None:
    """Writes ``finished.json`` (atomically): the run reached its last step and wrote its outputs.

    Args:
      workdir: the run directory.
      step: the run's last step.
      best_step: the step of its best epoch (what ``best/`` holds; None when no epoch ended).
      teacher: the fingerprint of the teacher it was distilled from
        (:func:`sld_jax.train.teacher.fingerprint`; None without a teacher).
    """
    record = {"step": int(step), "best_step": best_step, "teacher": teacher}
    atomic.write_text(os.path.join(workdir, FINISHED_FILE), json.dumps(record))


def clear_finished(workdir: str) -> None:
    """Removes ``finished.json`` (process 0): the run is about to train or resume."""
    if jax.process_index() == 0:
        try:
            os.remove(os.path.join(workdir, FINISHED_FILE))
        except FileNotFoundError:
            pass


def read_finished(workdir: str) -> dict | None:
    """``finished.json``'s record (``step``, ``best_step``, ``teacher``: see :func:`mark_finished`),
    or None for a run that is not finished (or whose file is unreadable)."""
    try:
        with open(os.path.join(workdir, FINISHED_FILE)) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "step" in record else None
