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
import time
from typing import Any, TypedDict

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from sld_jax.errors import UserError
from sld_jax.machine import machine_description
from sld_jax.train import autotune, kill_points, report, schedule, setup, validation, workdir_lock
from sld_jax.train import checkpoint as ckpt_lib
from sld_jax.train import metrics as metrics_lib
from sld_jax.train import seeds as seeds_lib
from sld_jax.train import workdir as workdir_lib
from sld_jax.train.data_io import open_datasets
from sld_jax.train.evaluate import evaluate_variables
from sld_jax.train.mesh import mesh_for
from sld_jax.train.preemption import Preemption
from sld_jax.train.teacher import check_teacher_logits

log = logging.getLogger("sld_jax")


class NonFiniteLossError(UserError, RuntimeError):
    """Training produced a non-finite loss or gradient and ``on_nonfinite == "stop"``."""


class RunResult(TypedDict):
    """What :func:`run` returns (a dict with these keys).

    Attributes:
      seeds: per seed ``{"seed", "history", "best", "last"}`` (:func:`sld_jax.train.seeds.per_seed`).
      summary: best and last test top-1 over seeds (:func:`sld_jax.train.seeds.summary`).
      history, best, last: the first seed's per-epoch records, best and last record.
      preempted: stopped by SIGTERM or a first Ctrl-C after saving (``stopped_by`` says which).
      stopped_by: ``"SIGTERM"``, ``"Ctrl-C"`` or None.
      workdir: the run directory (absolute).
      state: the final train state (K seeds).
      compiled_variants: :meth:`sld_jax.train.setup.Run.compiled_variants`.
    """

    seeds: list[dict]
    summary: dict[str, dict]
    history: list[dict]
    best: dict | None
    last: dict | None
    preempted: bool
    stopped_by: str | None
    workdir: str
    state: Any
    compiled_variants: dict[bool, int]


def run(config: ml_collections.ConfigDict, workdir: str) -> RunResult:
    """Trains (or resumes) the run described by ``config`` in ``workdir``.

    Returns:
      The :class:`RunResult`.

    Raises:
      ValueError: bad config, teacher mismatch, bad data — before any training step.
      NonFiniteLossError: a non-finite loss with ``on_nonfinite == "stop"``.
      CheckpointError: an unwritable workdir or a failed save.
      WorkdirBusyError: another run holds ``workdir``.
      RunMismatchError: ``workdir`` holds a run with a config that differs in a field that
        changes the computation (and ``resume_policy`` is not ``"override"``).
    """
    validation.validate(config)
    workdir = os.path.abspath(workdir)
    with workdir_lock.WorkdirLock(workdir):
        workdir_lib.check_same_run(config, workdir)
        return _run_locked(config, workdir)


def _run_locked(config: ml_collections.ConfigDict, workdir: str) -> RunResult:
    t_start = time.perf_counter()
    checkpointer = ckpt_lib.Checkpointer(workdir, keep=config.keep_checkpoints)
    mesh = mesh_for(config)
    built = setup.build(config, mesh, data=open_datasets(config, mesh))  # after the workdir check
    built = autotune.settle(built, workdir, total_steps=built.data.steps_per_epoch * config.num_epochs)
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
    num_seeds = built.num_seeds

    meta: dict[str, Any] = {}
    restored = checkpointer.restore_latest(state)
    if restored is not None:
        state, meta = restored
        log.info("resumed from step %d in %s", int(state.step[0]), workdir)
    if meta.get("teacher") not in (None, built.teacher_fingerprint):
        workdir_lib.teacher_changed(config, workdir)
    # The best epoch's step, which best/ holds exactly (checkpoints written before it was recorded:
    # the newest step of best/, as those versions read it).
    if restored is not None and "best_step" not in meta:
        held = checkpointer.best_steps()
        best_step = held[-1] if held else None
    else:
        best_step = meta.get("best_step")
        checkpointer.reconcile_best(best_step, state)
    workdir_lib.clear_finished(workdir)  # until this run has written its last outputs again
    workdir_lib.reset_metrics(workdir, int(state.step[0]) if restored is not None else None)
    if jax.process_index() == 0:
        workdir_lib.write_config(workdir, config)

    previous = seeds_lib.per_seed(meta) if restored is not None else []
    histories: list[list[dict]] = [list(r["history"]) for r in previous] or [[] for _ in built.seeds]
    bests: list[dict | None] = [r["best"] for r in previous] or [None] * num_seeds
    best_mean = meta.get("best_mean_top1")
    writer = metrics_lib.MetricWriter(workdir)
    progress = metrics_lib.Progress(
        total_epochs=config.num_epochs, steps_per_epoch=spe, log_every=config.log_every_steps
    )
    step = int(state.step[0])
    preempted = False
    stop_at = min(total_steps, config.max_steps or total_steps)

    def save(epoch_sums, *, is_best=False):
        checkpointer.save(
            int(state.step[0]),
            state,
            {
                "num_seeds": num_seeds,
                "seeds": built.seeds,
                "histories": histories,
                "bests": bests,
                "best_mean_top1": best_mean,
                "best_step": best_step,
                # The teacher's fingerprint: a resume from another teacher would mix two runs.
                "teacher": built.teacher_fingerprint,
                "epoch_sums": epoch_sums,
                "steps_per_epoch": spe,
                "name": config.name,
            },
            best=is_best,
        )

    checked_memory = False
    with Preemption() as preemption:
        while step < stop_at:
            epoch = schedule.epoch_of_step(step, spe)
            first = step - (epoch - 1) * spe
            dispatch = built.dispatch(student_swap=built.student_swap(epoch))
            sums = None
            if first and meta.get("epoch_sums"):  # resuming inside an epoch: keep its sums
                sums = {k: jnp.asarray(v, jnp.float32) for k, v in meta["epoch_sums"].items()}
            progress.start_epoch(epoch, first)
            pending = None
            end = min(epoch * spe, stop_at) - (epoch - 1) * spe
            for feed, n in built.feeds(epoch=epoch, start_step=first, stop_step=end):
                args = (state, built.teacher_variables, feed, built.split, built.rngs, built.active(n))
                if not checked_memory:
                    built.check_fits(dispatch, *args)
                state, m = dispatch(*args)
                if not checked_memory:
                    # After the first step is under way, not beside its tracing and compiling (both
                    # would share the interpreter and the cores); ``args`` keep their shapes when
                    # the call has donated their buffers.
                    built.compile_ahead(epoch, schedule.epoch_of_step(stop_at - 1, spe), args)
                    checked_memory = True
                if pending is not None:
                    _check_finite(pending, config, checkpointer, built.seeds)
                pending = (step, n, m["finite"])
                step += n
                sums = metrics_lib.sum_trees(sums, {k: v.sum(0) for k, v in m.items() if k != "finite"})
                progress.update(config.batch_size * n, steps=n)
                if preemption.agreed():
                    break
            if pending is not None:
                _check_finite(pending, config, checkpointer, built.seeds)
            progress.end_epoch()
            if step != epoch * spe:  # preempted or max_steps inside an epoch
                save(metrics_lib.to_host_lists(sums) if sums is not None else None)
                preempted = preemption.requested
                break
            lr = float(built.lr_fn(step - 1))
            evals = evaluate_variables(
                built.eval_step, {"params": state.params, "batch_stats": state.batch_stats}, data
            )
            train = metrics_lib.to_host_lists(sums)
            records = [
                metrics_lib.epoch_record(
                    epoch, {k: v[i] for k, v in train.items()}, lr, {k: v[i] for k, v in evals.items()}
                )
                for i in range(num_seeds)
            ]
            for i, record in enumerate(records):
                histories[i].append(record)
                if bests[i] is None or record["test_top1"] > bests[i]["test_top1"]:
                    bests[i] = record
            mean_top1 = float(np.mean([r["test_top1"] for r in records]))
            is_best = best_mean is None or mean_top1 > best_mean
            if is_best:
                best_mean, best_step = mean_top1, step
            metrics_lib.write_epoch(writer, step, records, built.seeds)
            metrics_lib.log_epoch(epoch, config.num_epochs, records, bests)
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
    results = seeds_lib.per_seed({"seeds": built.seeds, "histories": histories, "bests": bests})
    complete = not preempted and step >= stop_at
    if complete:
        kill_points.reached("before_summary", step)
        held = checkpointer.best_steps()
        if held != ([] if best_step is None else [best_step]):  # by construction never: readers rely on it
            raise ckpt_lib.CheckpointError(
                f"best/ of {workdir} holds steps {held}, not the best epoch's step {best_step}; "
                "rerun the command to repair it."
            )
    try:
        if jax.process_index() == 0 and histories[0]:
            report.plot_histories(results, os.path.join(workdir, "accuracy.png"), config.name)
            report.write_summary(
                os.path.join(workdir, "summary.md"),
                name=config.name,
                config_text=str(config),
                results=results,
                wall_seconds=wall,
                machine=machine_description(),
            )
    finally:
        checkpointer.close()
    if complete and jax.process_index() == 0:
        workdir_lib.mark_finished(workdir, step=step, best_step=best_step, teacher=built.teacher_fingerprint)
    return RunResult(
        history=results[0]["history"],
        best=results[0]["best"],
        last=results[0]["last"],
        seeds=results,
        summary=seeds_lib.summary(results),
        preempted=preempted,
        stopped_by=preemption.signal_name if preempted else None,
        workdir=workdir,
        state=state,
        compiled_variants=built.compiled_variants(),
    )


def _check_finite(pending, config, checkpointer, run_seeds) -> None:
    first, n, finite = pending
    finite = np.asarray(jax.device_get(finite))[:n]  # [n, K]
    if finite.all():
        return
    bad = [(first + 1 + i, run_seeds[k]) for i, k in zip(*np.nonzero(finite == 0))]
    several = len(run_seeds) > 1
    where = ", ".join(f"step {s}" + (f" (seed {seed})" if several else "") for s, seed in bad)
    if config.on_nonfinite == "skip":
        log.warning(
            "%s: non-finite loss or gradient; the update was skipped%s.",
            where,
            " for that seed (the other seeds train on)" if several else "",
        )
        return
    good = checkpointer.last_good_step()
    raise NonFiniteLossError(
        f"{where}: the loss or a gradient is not finite (NaN/Inf); the update was not applied. "
        f"Last good checkpoint: {'none' if good is None else f'step {good}'} in "
        f"{checkpointer.workdir}/checkpoints. Lower the learning rate, or set "
        "--config.on_nonfinite=skip to drop such steps."
    )
