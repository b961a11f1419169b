"""One run per workdir: an exclusive lock, the same-run check on resume, one metrics line per epoch.

* :class:`~sld_jax.train.workdir_lock.WorkdirLock` (its own module) — one process per workdir.
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
from typing import Any, Iterable

import jax

from sld_jax import atomic
from sld_jax.errors import ConfigError, UserError
from sld_jax.train import fields
from sld_jax.train.validation import flatten

log = logging.getLogger("sld_jax")

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
FINISHED_FILE = "finished.json"

# How each config field may change on a resume is declared once, with its other rules, in
# sld_jax.train.fields.FIELDS: these are views of it.
# Fields that may differ between a run and its resume (they change nothing computed at any step,
# or only how the steps are computed); every other field must be equal.
RESUMABLE_FIELDS = fields.resume_fields(fields.FREE) | fields.resume_fields(fields.ROUNDING)
# Of those, the ones that change how the steps are computed (another compiled program): a resume
# warns that its numbers differ from an uninterrupted run's by float rounding. num_devices without
# sync_batchnorm also regroups the per-device BatchNorm statistics.
ROUNDING_FIELDS = fields.resume_fields(fields.ROUNDING)
# Fields that fix the shape of the saved state: no policy can resume with another value.
SHAPE_FIELDS = fields.resume_fields(fields.SHAPE)
RESUME_POLICIES = fields.RESUME_POLICIES


class RunMismatchError(ConfigError):
    """Resuming with a config that differs from the saved one in a field that changes the run."""


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
