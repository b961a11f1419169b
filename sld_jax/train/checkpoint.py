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

from sld_jax import atomic
from sld_jax.errors import UserError
from sld_jax.train import integrity, kill_points

log = logging.getLogger(__name__)


class CheckpointError(UserError, RuntimeError):
    """A checkpoint could not be written or no usable checkpoint could be read."""


def check_writable(directory: str) -> None:
    """Raises :class:`CheckpointError` now if ``directory`` cannot be created or written (probed by
    :func:`sld_jax.atomic.write_probe_error`: concurrent runs never see each other's probe)."""
    error = atomic.write_probe_error(directory)
    if error is not None:
        raise CheckpointError(
            f"the workdir {directory!r} is not writable ({error.strerror}); choose another --workdir "
            "or fix its permissions/free space."
        ) from error


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


def _save_args(state: Any, metadata: dict) -> ocp.args.Composite:
    """What one checkpoint holds: the state (one replica) and the metadata with its checksums."""
    return ocp.args.Composite(
        state=ocp.args.StandardSave(_one_replica(state)),
        metadata=ocp.args.JsonSave(integrity.with_checksums(state, metadata)),
    )


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
            os.path.join(self.workdir, "checkpoints"), options=_options(keep), item_handlers=item_handlers()
        )
        self._best = ocp.CheckpointManager(
            # Pruned by save() itself: the previous best stays until the checkpoint that records
            # the new one is written.
            os.path.join(self.workdir, "best"),
            options=_options(None),
            item_handlers=item_handlers(),
        )

    def all_steps(self) -> list[int]:
        """Steps of the complete checkpoints in ``checkpoints/``, ascending."""
        self._last.reload()
        return sorted(self._last.all_steps())

    def save(self, step: int, state: Any, metadata: dict, *, best: bool = False) -> None:
        """Writes a checkpoint at ``step`` (and to ``best/`` if ``best``); every process calls it.

        ``best/<step>`` is written first and the previous best is removed only after
        ``checkpoints/<step>`` (whose metadata records ``best_step``) is written: at every moment
        ``best/`` holds the best step that the newest checkpoint records. A kill or a failed write
        in between leaves one extra, newer step in ``best/``, which :meth:`reconcile_best` drops
        on the resume.
        """
        args = _save_args(state, metadata)
        stale = [s for s in self._best.all_steps() if s != step] if best else []
        if best:
            self._write(self._best, step, args)
            kill_points.reached("best_saved", step)
        self._write(self._last, step, args)
        kill_points.reached("checkpoint_saved", step)
        for old in stale:
            self._best.delete(old)

    def _write(self, manager: ocp.CheckpointManager, step: int, args: Any) -> None:
        """``manager.save(step)``, replacing a step of that number; a failure is a CheckpointError
        naming the intact previous checkpoint."""
        try:
            if step in manager.all_steps():
                manager.delete(step)
            manager.save(step, args=args, force=True)
            manager.wait_until_finished()
        except Exception as e:  # a full disk or a vanished directory: keep the previous ones
            previous = [s for s in self._last.all_steps() if s != step]
            raise CheckpointError(
                f"could not write the checkpoint of step {step} to {manager.directory} "
                f"({first_line(e)}); "
                f"the previous checkpoint (step {previous[-1] if previous else 'none'}) is intact. "
                "Free disk space or choose another --workdir, then rerun to resume."
            ) from e

    def best_steps(self) -> list[int]:
        """The steps held by ``best/``, ascending (one, except after an interrupted save)."""
        self._best.reload()
        return sorted(self._best.all_steps())

    def reconcile_best(self, best_step: int | None, target_state: Any) -> None:
        """Makes ``best/`` hold exactly ``best_step``: the best epoch's step as the checkpoint
        resumed from records it (None: no epoch finished yet, ``best/`` must be empty).

        A step of ``best/`` other than ``best_step`` is a best save whose checkpoint was not
        written (a kill or a failed write in between, or a fall-back past a corrupt checkpoint):
        its epoch is trained again, so it is dropped. A ``best_step`` missing from ``best/`` (a
        failed ``best/`` write of an older version) is copied from ``checkpoints/``. Nothing is
        deleted before the recorded best is known to exist. Call it on every process, on the
        managers' view of the disk at start (no process deletes before every process has looked).

        Raises:
          CheckpointError: ``best_step`` is in neither ``best/`` nor ``checkpoints/`` (nothing is
            changed then).
        """
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("sld_jax reconcile_best")
        held = sorted(self._best.all_steps())
        if best_step is not None and best_step not in held:
            if best_step not in self._last.all_steps():
                raise CheckpointError(
                    f"the best epoch's checkpoint (step {best_step}) is in neither best/ nor "
                    f"checkpoints/ of {self.workdir}; evaluate the last checkpoint (sld-eval "
                    "--which=last), or delete the workdir to train afresh."
                )
            state, metadata = self._restore(self._last, best_step, target_state)
            metadata = {k: v for k, v in metadata.items() if k != "integrity"}
            self._write(self._best, best_step, _save_args(state, metadata))
            log.warning("best/ did not hold the best epoch (step %d): copied it from checkpoints/", best_step)
        for step in held:
            if step != best_step:
                log.warning(
                    "best/ holds step %d, a best save whose checkpoint was not written (the best "
                    "epoch recorded is step %s): dropped, its epoch is trained again",
                    step,
                    best_step,
                )
                self._best.delete(step)

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
                    f"{first_line(e)[:300]}); falling back to the previous checkpoint.",
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
                restore_verified(self._last, step, host_target(self._last, step))
                return step
            except Exception:  # noqa: BLE001 - any failure means "not good"
                continue
        return None

    @staticmethod
    def _restore(manager, step, target_state):
        return restore_verified(manager, step, _abstract(target_state))

    def close(self) -> None:
        self._last.close()
        self._best.close()


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (orbax's can run to hundreds of lines)."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def restore_verified(manager, step, target) -> tuple[Any, dict]:
    """Restores ``step`` into ``target`` and verifies it; ``(state, metadata)``."""
    restored = manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target), metadata=ocp.args.JsonRestore())
    )
    where = f"checkpoint {step} in {manager.directory}"
    metadata = integrity.verify(restored["state"], dict(restored["metadata"]), where=where)
    return restored["state"], metadata


def item_handlers() -> dict:
    """The handlers of a checkpoint's two items: the state (arrays) and its JSON metadata."""
    return {"state": ocp.StandardCheckpointHandler(), "metadata": ocp.JsonCheckpointHandler()}


def host_target(manager: ocp.CheckpointManager, step: int) -> Any:
    """Abstract arrays of the saved state on this process's first device.

    Restoring into this target works whatever topology saved the checkpoint (another device
    count, several processes, a pod); without a target orbax refuses such a checkpoint.
    """
    sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    saved = manager.item_metadata(step)["state"]
    return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding), saved)
