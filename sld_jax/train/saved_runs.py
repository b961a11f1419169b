"""Reading a saved run: its variables (a teacher, ``sld-eval``, a suite) and its recorded best.

A run's ``best/`` is read only at the step that the run's newest checkpoint records as its best
epoch; a checkpoint that cannot be read or verified falls back to the previous one with a warning,
or (``fallback=False``) raises.
"""

from __future__ import annotations

import os
import warnings

import jax
import orbax.checkpoint as ocp

from sld_jax.train import checkpoint as ckpt_lib
from sld_jax.train import integrity
from sld_jax.train.validation import check_which


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
    only = None
    if subdirs[0] == "best":
        known, only = _recorded_best_in(os.path.abspath(workdir))
        if known and only is None:  # no epoch has ended: no best yet, the last checkpoint is read
            subdirs = ["checkpoints"]
    for sub in subdirs:
        directory = os.path.join(os.path.abspath(workdir), sub)
        if not os.path.isdir(directory):
            continue
        # (e.g. sld-eval or a student reading the workdir of a teacher that is still training).
        with _reader(directory) as manager:
            steps = sorted(manager.all_steps())
            if sub == "best" and only is not None:
                steps = [only]  # the recorded best (an interrupted save may have left a newer one)
            for step in reversed(steps):
                try:
                    state, metadata = ckpt_lib.restore_verified(
                        manager, step, ckpt_lib.host_target(manager, step)
                    )
                except Exception as e:
                    if not fallback:
                        what = (
                            ckpt_lib.first_line(e)
                            if isinstance(e, integrity.IntegrityError)
                            else f"checkpoint {step} in {directory} is unreadable ({ckpt_lib.first_line(e)[:300]})"
                        )
                        raise ckpt_lib.CheckpointError(
                            f"{what}; refusing to use it. Evaluate the other one (--which=best/last) "
                            "or retrain from an earlier checkpoint."
                        ) from e
                    warnings.warn(
                        f"checkpoint {step} in {directory} is unreadable ({ckpt_lib.first_line(e)[:300]}); "
                        "trying the previous one.",
                        RuntimeWarning,
                    )
                    continue
                state = jax.device_get(state)
                variables = {"params": state["params"], "batch_stats": state.get("batch_stats", {})}
                return _select_seed(variables, metadata, seed_index, where=directory), metadata
    raise ckpt_lib.CheckpointError(
        f"no readable checkpoint under {workdir!r} (looked in best/ and checkpoints/); train the "
        "teacher first with a vanilla config or import one with sld-import-teacher."
    )


def _reader(directory: str) -> ocp.CheckpointManager:
    # No clean-up: a reader must not delete the temporary directory of a save in progress.
    options = ocp.CheckpointManagerOptions(create=False, cleanup_tmp_directories=False)
    return ocp.CheckpointManager(directory, options=options, item_handlers=ckpt_lib.item_handlers())


def recorded_best_step(workdir: str) -> tuple[bool, int | None]:
    """``(known, step)``: the best epoch's step as the newest readable checkpoint of
    ``checkpoints/`` records it (``known`` False for no checkpoint, or one written before the
    record existed)."""
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        return False, None
    with _reader(directory) as manager:
        for step in sorted(manager.all_steps(), reverse=True):
            try:
                restored = manager.restore(step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore()))
            except Exception:  # noqa: BLE001 - unreadable: the previous one
                continue
            metadata = dict(restored["metadata"])
            return ("best_step" in metadata), metadata.get("best_step")
    return False, None


def _recorded_best_in(workdir: str) -> tuple[bool, int | None]:
    """``(known, step)``: the step of ``best/`` to read, the best epoch's step that the run's newest
    checkpoint records (None: no epoch has ended yet). ``known`` is False for a run whose
    checkpoints do not record it (its newest ``best/`` step is read).

    Raises:
      CheckpointError: ``best/`` does not hold the recorded step (never another epoch instead).
    """
    known, recorded = recorded_best_step(workdir)
    if not known or recorded is None:
        return known, None
    directory = os.path.join(workdir, "best")
    held = []
    if os.path.isdir(directory):
        with _reader(directory) as manager:
            held = sorted(manager.all_steps())
    if recorded not in held:
        raise ckpt_lib.CheckpointError(
            f"best/ of {workdir} holds steps {held} but the run records step {recorded} as its best "
            "epoch (a save was interrupted, or the run is saving right now); rerun the run's command "
            "to repair it, or retry in a moment, before reading its best checkpoint."
        )
    return True, recorded


def _select_seed(variables: dict, metadata: dict, seed_index: int | None, *, where: str) -> dict:
    """One seed's variables (``seed_index``) or all of them on a leading axis (None)."""
    num_seeds = metadata.get("num_seeds")
    if num_seeds is None:  # saved before the seed axis: one seed, no leading axis
        return jax.tree.map(lambda x: x[None], variables) if seed_index is None else variables
    if seed_index is None:
        return variables
    if not 0 <= seed_index < num_seeds:
        raise ckpt_lib.CheckpointError(
            f"seed index {seed_index} is out of range: the run in {where} trained {num_seeds} seeds "
            f"(indices 0..{num_seeds - 1})."
        )
    return jax.tree.map(lambda x: x[seed_index], variables)
