"""Checkpoints with orbax ``CheckpointManager``: the last k, the best, and a safe restore.

Layout under a run's workdir::

    checkpoints/<step>/   the last ``keep`` checkpoints (state + JSON metadata)
    best/<step>/          the checkpoint with the best test top-1 so far

Orbax writes each checkpoint to a temporary directory and renames it when complete, so an
interrupted save never looks like a checkpoint. Every checkpoint's metadata also carries
checksums of its arrays and of itself (:mod:`sld_jax.train.integrity`). A checkpoint that exists
but cannot be read (a corrupt file), does not match its checksums or holds non-finite values is
skipped with a warning and the previous good one is used.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

import jax
import orbax.checkpoint as ocp

from sld_jax.errors import UserError
from sld_jax.train import integrity
from sld_jax.train.validation import check_which

log = logging.getLogger(__name__)


class CheckpointError(UserError, RuntimeError):
    """A checkpoint could not be written or no usable checkpoint could be read."""


def check_writable(directory: str) -> None:
    """Raises :class:`CheckpointError` now if ``directory`` cannot be created or written."""
    try:
        os.makedirs(directory, exist_ok=True)
        probe = os.path.join(directory, f".write_probe_{jax.process_index()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise CheckpointError(
            f"the workdir {directory!r} is not writable ({e.strerror}); choose another --workdir "
            "or fix its permissions/free space."
        ) from e


def _options(keep: int | None) -> ocp.CheckpointManagerOptions:
    return ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=False, cleanup_tmp_directories=True
    )


def _one_replica(tree: Any) -> Any:
    """``tree`` with each array replicated over several devices of this (only) process replaced by
    its first device's copy (no copy is made).

    Orbax saves a replicated array "replica-parallel": each replica writes a slice, which on one
    process costs two eager slice programs per array and save for nothing. One replica writes the
    same values; restores take their sharding from their target, so nothing else changes. Under
    several processes the arrays are left to orbax, whose replica-parallel writes spread a save
    over the hosts.
    """
    if jax.process_count() > 1:
        return tree

    def leaf(x):
        if isinstance(x, jax.Array) and len(x.sharding.device_set) > 1 and x.is_fully_replicated:
            return x.addressable_data(0)
        return x

    return jax.tree.map(leaf, tree)


def _abstract(tree: Any) -> Any:
    def leaf(x):
        if isinstance(x, jax.Array):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
        return x

    return jax.tree.map(leaf, tree)


class Checkpointer:
    """Saves and restores a run's TrainState plus JSON metadata (history, best accuracy, ...)."""

    def __init__(self, workdir: str, *, keep: int = 3):
        self.workdir = os.path.abspath(workdir)
        check_writable(self.workdir)
        self._last = ocp.CheckpointManager(
            os.path.join(self.workdir, "checkpoints"), options=_options(keep), item_handlers=_item_handlers()
        )
        self._best = ocp.CheckpointManager(
            os.path.join(self.workdir, "best"), options=_options(1), item_handlers=_item_handlers()
        )

    def all_steps(self) -> list[int]:
        """Steps of the complete checkpoints in ``checkpoints/``, ascending."""
        self._last.reload()
        return sorted(self._last.all_steps())

    def save(self, step: int, state: Any, metadata: dict, *, best: bool = False) -> None:
        """Writes a checkpoint at ``step`` (and to ``best/`` if ``best``); every process calls it."""
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(_one_replica(state)),
            metadata=ocp.args.JsonSave(integrity.with_checksums(state, metadata)),
        )
        managers = [self._last] + ([self._best] if best else [])
        for manager in managers:
            try:
                if step in manager.all_steps():
                    manager.delete(step)
                manager.save(step, args=args, force=True)
                manager.wait_until_finished()
            except Exception as e:  # a full disk or a vanished directory: keep the previous ones
                previous = [s for s in manager.all_steps() if s != step]
                raise CheckpointError(
                    f"could not write the checkpoint of step {step} to {manager.directory} "
                    f"({_first_line(e)}); "
                    f"the previous checkpoint (step {previous[-1] if previous else 'none'}) is intact. "
                    "Free disk space or choose another --workdir, then rerun to resume."
                ) from e

    def restore_latest(self, target_state: Any) -> tuple[Any, dict] | None:
        """Restores the newest readable checkpoint into the structure/sharding of ``target_state``.

        Returns:
          ``(state, metadata)``, or None when there is no checkpoint. A checkpoint that fails to
          load or to verify (checksums, finite values) triggers a warning and a fall-back to the
          previous one.

        Raises:
          CheckpointError: if checkpoints exist but none can be read.
        """
        steps = self.all_steps()
        errors = []
        for step in reversed(steps):
            try:
                return self._restore(self._last, step, target_state)
            except Exception as e:  # corrupt or partial: fall back
                warnings.warn(
                    f"checkpoint {step} in {self._last.directory} is unreadable ({type(e).__name__}: "
                    f"{_first_line(e)[:300]}); falling back to the previous checkpoint.",
                    RuntimeWarning,
                )
                errors.append(step)
        if steps:
            raise CheckpointError(
                f"none of the checkpoints {steps} in {self._last.directory} could be read; "
                "delete the directory to start afresh."
            )
        return None

    def restore_best(self, target_state: Any) -> tuple[Any, dict] | None:
        """Restores the best checkpoint (or None if there is none)."""
        self._best.reload()
        steps = sorted(self._best.all_steps())
        if not steps:
            return None
        return self._restore(self._best, steps[-1], target_state)

    def last_good_step(self) -> int | None:
        """The newest step in ``checkpoints/`` that restores and verifies (None if there is none)."""
        for step in reversed(self.all_steps()):
            try:
                _restore_verified(self._last, step, _host_target(self._last, step))
                return step
            except Exception:  # noqa: BLE001 - any failure means "not good"
                continue
        return None

    @staticmethod
    def _restore(manager, step, target_state):
        return _restore_verified(manager, step, _abstract(target_state))

    def close(self) -> None:
        self._last.close()
        self._best.close()


def _first_line(error: BaseException) -> str:
    """The first line of an exception's message (orbax's can run to hundreds of lines)."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _restore_verified(manager, step, target) -> tuple[Any, dict]:
    """Restores ``step`` into ``target`` and verifies it; ``(state, metadata)``."""
    restored = manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target), metadata=ocp.args.JsonRestore())
    )
    where = f"checkpoint {step} in {manager.directory}"
    metadata = integrity.verify(restored["state"], dict(restored["metadata"]), where=where)
    return restored["state"], metadata


def _item_handlers() -> dict:
    return {"state": ocp.StandardCheckpointHandler(), "metadata": ocp.JsonCheckpointHandler()}


def _host_target(manager: ocp.CheckpointManager, step: int) -> Any:
    """Abstract arrays of the saved state on this process's first device.

    Restoring into this target works whatever topology saved the checkpoint (another device
    count, several processes, a pod); without a target orbax refuses such a checkpoint.
    """
    sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    saved = manager.item_metadata(step)["state"]
    return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding), saved)


def load_run_variables(
    workdir: str, *, which: str = "best", fallback: bool = True, seed_index: int | None = 0
) -> tuple[dict, dict]:
    """Reads the model variables of a finished (or interrupted) run, e.g. to use it as a teacher.

    Args:
      workdir: a ``sld-train`` workdir.
      which: "best" (the best mean test top-1 over the run's seeds) or "last"; "best" falls back
        to "last" if absent.
      fallback: on a checkpoint that fails to load or verify, warn and try the previous one;
        False (``sld-eval``): raise instead, so that no other checkpoint is evaluated silently.
      seed_index: which of the run's seeds (0: its first seed, ``config.seed``); None: all of
        them, stacked on a leading seed axis (also for runs saved before the seed axis existed).

    Raises:
      CheckpointError: no readable checkpoint, or (``fallback=False``) the newest one fails.

    Returns:
      ``({"params", "batch_stats"}, metadata)`` as host (numpy) arrays.
    """
    subdirs = ["best", "checkpoints"] if check_which(which) == "best" else ["checkpoints"]
    for sub in subdirs:
        directory = os.path.join(os.path.abspath(workdir), sub)
        if not os.path.isdir(directory):
            continue
        # No clean-up: a reader must not delete the temporary directory of a save in progress
        # (e.g. sld-eval or a student reading the workdir of a teacher that is still training).
        reader = ocp.CheckpointManagerOptions(create=False, cleanup_tmp_directories=False)
        with ocp.CheckpointManager(directory, options=reader, item_handlers=_item_handlers()) as manager:
            steps = sorted(manager.all_steps())
            for step in reversed(steps):
                try:
                    state, metadata = _restore_verified(manager, step, _host_target(manager, step))
                except Exception as e:
                    if not fallback:
                        what = (
                            _first_line(e)
                            if isinstance(e, integrity.IntegrityError)
                            else f"checkpoint {step} in {directory} is unreadable ({_first_line(e)[:300]})"
                        )
                        raise CheckpointError(
                            f"{what}; refusing to use it. Evaluate the other one (--which=best/last) "
                            "or retrain from an earlier checkpoint."
                        ) from e
                    warnings.warn(
                        f"checkpoint {step} in {directory} is unreadable ({_first_line(e)[:300]}); "
                        "trying the previous one.",
                        RuntimeWarning,
                    )
                    continue
                state = jax.device_get(state)
                variables = {"params": state["params"], "batch_stats": state.get("batch_stats", {})}
                return _select_seed(variables, metadata, seed_index, where=directory), metadata
    raise CheckpointError(
        f"no readable checkpoint under {workdir!r} (looked in best/ and checkpoints/); train the "
        "teacher first with a vanilla config or import one with sld-import-teacher."
    )


def _select_seed(variables: dict, metadata: dict, seed_index: int | None, *, where: str) -> dict:
    """One seed's variables (``seed_index``) or all of them on a leading axis (None)."""
    num_seeds = metadata.get("num_seeds")
    if num_seeds is None:  # saved before the seed axis: one seed, no leading axis
        return jax.tree.map(lambda x: x[None], variables) if seed_index is None else variables
    if seed_index is None:
        return variables
    if not 0 <= seed_index < num_seeds:
        raise CheckpointError(
            f"seed index {seed_index} is out of range: the run in {where} trained {num_seeds} seeds "
            f"(indices 0..{num_seeds - 1})."
        )
    return jax.tree.map(lambda x: x[seed_index], variables)
