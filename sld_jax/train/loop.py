"""``run(config, workdir)``: resume, epochs, evaluation and saving — and nothing else.

The pieces of a run (data, student, teacher, optimiser, initial state, step description) are
built once by :func:`sld_jax.train.setup.build`. The loop resumes from the newest readable
checkpoint in ``workdir``, holds one compiled train step per static variant (two for methods with
the γ-gated student swap), evaluates on the full test split after each epoch, and writes
TensorBoard events, ``metrics.jsonl``, checkpoints, a plot and a markdown summary.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from sld_jax import models
from sld_jax.errors import UserError
from sld_jax.machine import machine_description
from sld_jax.train import checkpoint as ckpt_lib
from sld_jax.train import metrics as metrics_lib
from sld_jax.train import report, schedule, setup
from sld_jax.train import workdir as workdir_lib
from sld_jax.train.data_io import open_datasets
from sld_jax.train.mesh import mesh_for
from sld_jax.train.step import compile_train_step
from sld_jax.train.teacher import check_teacher_logits

log = logging.getLogger("sld_jax")


class NonFiniteLossError(UserError, RuntimeError):
    """Training produced a non-finite loss or gradient and ``on_nonfinite == "stop"``."""


class _Preemption:
    """Turns SIGTERM into a flag checked between steps (the step in flight always finishes)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: no signal handling
            self._previous = None
        return self

    def _handle(self, signum, frame):
        del signum, frame
        self.requested = True
        log.warning("SIGTERM received: finishing the current step, then saving a checkpoint.")

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def agreed(self) -> bool:
        """True once any process was asked to stop (all processes agree, so they save together)."""
        if jax.process_count() == 1:
            return self.requested
        from jax.experimental import multihost_utils

        flags = multihost_utils.process_allgather(np.array(self.requested, np.int32))
        return bool(np.any(flags))


def _sum_trees(a, b):
    return b if a is None else jax.tree.map(jnp.add, a, b)


def _to_host(tree) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(tree).items()}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains (or resumes) the run described by ``config`` in ``workdir``.

    Returns:
      dict with ``history`` (per-epoch records), ``best`` and ``last`` records, ``preempted``
      (True when stopped by SIGTERM after saving), and ``workdir``.

    Raises:
      ValueError: bad config, teacher mismatch, bad data — before any training step.
      NonFiniteLossError: a non-finite loss with ``on_nonfinite == "stop"``.
      CheckpointError: an unwritable workdir or a failed save.
      WorkdirBusyError: another run holds ``workdir``.
      RunMismatchError: ``workdir`` holds a run with a config that differs in a field that
        changes the computation (and ``resume_policy`` is not ``"override"``).
    """
    setup.validate(config)
    workdir = os.path.abspath(workdir)
    with workdir_lib.WorkdirLock(workdir):
        workdir_lib.check_same_run(config, workdir)
        return _run_locked(config, workdir)


def _run_locked(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    t_start = time.perf_counter()
    checkpointer = ckpt_lib.Checkpointer(workdir, keep=config.keep_checkpoints)
    mesh = mesh_for(config)
    built = setup.build(config, mesh, data=open_datasets(config, mesh))  # after the workdir check
    data, state = built.data, built.state
    if built.teacher is not None:
        check_teacher_logits(
            built.teacher,
            built.teacher_variables,
            next(iter(data.eval_batches())),
            mean=data.spec.mean,
            std=data.spec.std,
            where=config.teacher.checkpoint,
        )
    spe = data.steps_per_epoch
    total_steps = spe * config.num_epochs

    meta: dict[str, Any] = {"history": [], "best": None, "epoch_sums": None}
    restored = checkpointer.restore_latest(state)
    if restored is not None:
        state, meta = restored
        log.info("resumed from step %d in %s", int(state.step), workdir)
    workdir_lib.reset_metrics(workdir, int(state.step) if restored is not None else None)
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))

    compiled: dict[bool, Callable] = {}

    def step_fn(student_swap: bool):
        if student_swap not in compiled:
            compiled[student_swap] = compile_train_step(
                built.step_config(student_swap=student_swap), built.mesh
            )
        return compiled[student_swap]

    rng = jax.device_put(jax.random.PRNGKey(config.seed), NamedSharding(built.mesh, P()))
    writer = metrics_lib.MetricWriter(workdir)
    progress = metrics_lib.Progress(
        total_epochs=config.num_epochs, steps_per_epoch=spe, log_every=config.log_every_steps
    )
    history: list[dict] = list(meta.get("history") or [])
    best = meta.get("best")
    step = int(state.step)
    preempted = False
    stop_at = config.max_steps or total_steps

    def save(epoch_sums, *, is_best=False):
        checkpointer.save(
            int(state.step),
            state,
            {
                "history": history,
                "best": best,
                "epoch_sums": epoch_sums,
                "steps_per_epoch": spe,
                "name": config.name,
            },
            best=is_best,
        )

    with _Preemption() as preemption:
        while step < min(total_steps, stop_at):
            epoch = schedule.epoch_of_step(step, spe)
            first = step - (epoch - 1) * spe
            train_step = step_fn(built.student_swap(epoch))
            sums = None
            if first and meta.get("epoch_sums"):  # resuming inside an epoch: keep its sums
                sums = jax.tree.map(jnp.asarray, meta["epoch_sums"])
            progress.start_epoch(epoch, first)
            pending = None
            for batch in data.train_batches(epoch=epoch, start_step=first):
                state, m = train_step(state, built.teacher_variables, batch, rng)
                step += 1
                if pending is not None:
                    _check_finite(pending, config, checkpointer)
                pending = (step, m)
                sums = _sum_trees(sums, {k: v for k, v in m.items() if k != "finite"})
                progress.update(config.batch_size)
                if preemption.agreed() or step >= stop_at:
                    break
            if pending is not None:
                _check_finite(pending, config, checkpointer)
            progress.end_epoch()
            epoch_done = step == epoch * spe
            if not epoch_done:  # preempted or max_steps inside an epoch
                save(_to_host(sums) if sums is not None else None)
                preempted = preemption.requested
                break
            record = _epoch_record(epoch, sums, built.lr_fn(step - 1), built.eval_step, state, data)
            history.append(record)
            is_best = best is None or record["test_top1"] > best["test_top1"]
            if is_best:
                best = record
            writer.write(step, {k: v for k, v in record.items() if k != "epoch"}, epoch=epoch)
            log.info(
                "epoch %d/%d: train loss %.4f top-1 %.2f%% | test top-1 %.2f%% top-5 %.2f%% (best %.2f%%)",
                epoch,
                config.num_epochs,
                record["train_loss"],
                100 * record["train_top1"],
                100 * record["test_top1"],
                100 * record["test_top5"],
                100 * best["test_top1"],
            )
            if (
                epoch % config.checkpoint_every_epochs == 0
                or epoch == config.num_epochs
                or is_best
                or preemption.requested
            ):
                save(None, is_best=is_best)
            if preemption.agreed():
                preempted = True
                break
    writer.close()
    wall = time.perf_counter() - t_start
    if jax.process_index() == 0 and history:
        report.plot_history(history, os.path.join(workdir, "accuracy.png"), config.name)
        report.write_summary(
            os.path.join(workdir, "summary.md"),
            name=config.name,
            config_text=str(config),
            history=history,
            best=best,
            wall_seconds=wall,
            machine=machine_description(),
        )
    checkpointer.close()
    return {
        "history": history,
        "best": best,
        "last": history[-1] if history else None,
        "preempted": preempted,
        "workdir": workdir,
        "state": state,
        "compiled_variants": {k: fn._cache_size() for k, fn in compiled.items()},
    }


def _check_finite(pending, config, checkpointer) -> None:
    step, m = pending
    if float(m["finite"]) > 0:
        return
    if config.on_nonfinite == "skip":
        log.warning("step %d: non-finite loss or gradient; the update was skipped.", step)
        return
    good = checkpointer.last_good_step()
    raise NonFiniteLossError(
        f"step {step}: the loss or a gradient is not finite (NaN/Inf); the update was not applied. "
        f"Last good checkpoint: {'none' if good is None else f'step {good}'} in "
        f"{checkpointer.workdir}/checkpoints. Lower the learning rate, or set "
        "--config.on_nonfinite=skip to drop such steps."
    )


def evaluate_variables(eval_step, variables, data) -> dict[str, float]:
    """Top-1, top-5, mean CE and count over the full (padded, masked) test split.

    Args:
      eval_step: the compiled eval step (:func:`sld_jax.train.step.compile_eval_step`).
      variables: the model's replicated ``{"params", "batch_stats"}``.
      data: the run's datasets (:class:`~sld_jax.train.data_io.RunData`).

    Returns:
      ``{"top1", "top5", "ce", "count"}``: fractions, the mean loss, and the number of examples.
    """
    sums = None
    for batch in data.eval_batches():
        sums = _sum_trees(sums, eval_step(variables, batch))
    sums = _to_host(sums)
    n = max(sums["count"], 1.0)
    return {"top1": sums["top1"] / n, "top5": sums["top5"] / n, "ce": sums["ce"] / n, "count": sums["count"]}


def _epoch_record(epoch, sums, lr, eval_step, state, data) -> dict[str, float]:
    train = _to_host(sums)
    count = max(train.pop("count"), 1.0)
    record = {
        "epoch": epoch,
        "lr": float(lr),
        "train_loss": train.pop("loss") / count,
        "train_top1": train.pop("correct") / count,
    }
    record.update(
        {
            f"train_{k}" if not k.endswith("fraction") and k != "teacher_student_agreement" else k: v / count
            for k, v in train.items()
        }
    )
    ev = evaluate_variables(eval_step, {"params": state.params, "batch_stats": state.batch_stats}, data)
    record.update(test_top1=ev["top1"], test_top5=ev["top5"], test_loss=ev["ce"], test_count=ev["count"])
    return record


def evaluate(config: ml_collections.ConfigDict, workdir: str, *, which: str = "best") -> dict:
    """Evaluates a saved run (``sld-eval``): top-1/top-5 of its best or last checkpoint."""
    setup.validate(config)
    mesh = mesh_for(config)
    variables, meta = ckpt_lib.load_run_variables(workdir, which=which, fallback=False)
    built = setup.build(config, mesh, train=False)
    mismatch = models.variables_mismatch(variables, built.student, image_size=built.data.spec.image_size)
    if mismatch:
        raise ckpt_lib.CheckpointError(
            f"the checkpoint in {workdir} does not fit its config.json (model {config.model!r}, "
            f"{built.data.spec.num_classes} classes: {mismatch}); was config.json overwritten by "
            "another run?"
        )
    variables = jax.device_put(variables, NamedSharding(mesh, P()))
    ev = evaluate_variables(built.eval_step, variables, built.data)
    return {
        "top1": ev["top1"],
        "top5": ev["top5"],
        "loss": ev["ce"],
        "count": int(ev["count"]),
        "which": which,
        "epoch": (meta.get("history") or [{}])[-1].get("epoch"),
    }
