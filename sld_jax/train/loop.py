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
from typing import Any, TypedDict

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
from sld_jax.train import kill_points, report, schedule, setup
from sld_jax.train import metrics as metrics_lib
from sld_jax.train import seeds as seeds_lib
from sld_jax.train import workdir as workdir_lib
from sld_jax.train.data_io import open_datasets
from sld_jax.train.mesh import mesh_for
from sld_jax.train.teacher import check_teacher_logits

log = logging.getLogger("sld_jax")


class NonFiniteLossError(UserError, RuntimeError):
    """Training produced a non-finite loss or gradient and ``on_nonfinite == "stop"``."""


class _Preemption:
    """Turns SIGTERM and a first Ctrl-C (SIGINT) into a flag checked between steps: the step in
    flight finishes, a checkpoint is saved and the run returns ``preempted``. A second Ctrl-C aborts
    at once (``KeyboardInterrupt``; the last saved checkpoint stays)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = False
        self.signal_name: str | None = None
        self._previous: dict = {}

    def __enter__(self):
        for signum in self.SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: no signal handling
                break
        return self

    def _handle(self, signum, frame):
        del frame
        if signum == signal.SIGINT and self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        again = " (Ctrl-C again aborts without saving)" if signum == signal.SIGINT else ""
        log.warning(
            "%s received: finishing the current step, then saving a checkpoint%s.", self.signal_name, again
        )

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)

    def agreed(self) -> bool:
        """True once any process was asked to stop (all processes agree, so they save together)."""
        if jax.process_count() == 1:
            return self.requested
        from jax.experimental import multihost_utils

        flags = multihost_utils.process_allgather(np.array(self.requested, np.int32))
        return bool(np.any(flags))


def _sum_trees(a, b):
    return b if a is None else jax.tree.map(jnp.add, a, b)


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
    setup.validate(config)
    workdir = os.path.abspath(workdir)
    with workdir_lib.WorkdirLock(workdir):
        workdir_lib.check_same_run(config, workdir)
        return _run_locked(config, workdir)


def _run_locked(config: ml_collections.ConfigDict, workdir: str) -> RunResult:
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
    with _Preemption() as preemption:
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
                if not checked_memory:
                    built.check_fits(
                        dispatch,
                        state,
                        built.teacher_variables,
                        feed,
                        built.split,
                        built.rngs,
                        built.active(n),
                    )
                    checked_memory = True
                state, m = dispatch(
                    state, built.teacher_variables, feed, built.split, built.rngs, built.active(n)
                )
                if pending is not None:
                    _check_finite(pending, config, checkpointer, built.seeds)
                pending = (step, n, m["finite"])
                step += n
                sums = _sum_trees(sums, {k: v.sum(0) for k, v in m.items() if k != "finite"})
                progress.update(config.batch_size * n, steps=n)
                if preemption.agreed():
                    break
            if pending is not None:
                _check_finite(pending, config, checkpointer, built.seeds)
            progress.end_epoch()
            if step != epoch * spe:  # preempted or max_steps inside an epoch
                save(_to_host_lists(sums) if sums is not None else None)
                preempted = preemption.requested
                break
            lr = float(built.lr_fn(step - 1))
            evals = evaluate_variables(
                built.eval_step, {"params": state.params, "batch_stats": state.batch_stats}, data
            )
            train = _to_host_lists(sums)
            records = [
                _epoch_record(
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
            _write_epoch(writer, step, records, built.seeds)
            _log_epoch(epoch, config.num_epochs, records, bests)
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


def _write_epoch(writer, step: int, records: list[dict], run_seeds: list[int]) -> None:
    """One ``metrics.jsonl`` line per seed; TensorBoard tags per seed (``seed_<s>/``) and their mean
    and std (``seeds/``) when there are several seeds."""
    several = len(records) > 1
    for seed, record in zip(run_seeds, records):
        scalars = {k: v for k, v in record.items() if k != "epoch"}
        writer.write(
            step, scalars, epoch=record["epoch"], seed=seed, tag_prefix=f"seed_{seed}/" if several else ""
        )
    if several:
        summary = {}
        for key in ("test_top1", "test_top5", "train_loss", "train_top1"):
            stats = seeds_lib.summarize([r[key] for r in records])
            summary[f"seeds/{key}_mean"], summary[f"seeds/{key}_std"] = stats["mean"], stats["std"]
        writer.write_tensorboard(step, summary)


def _log_epoch(epoch: int, num_epochs: int, records: list[dict], bests: list[dict]) -> None:
    if len(records) == 1:
        record, best = records[0], bests[0]
        log.info(
            "epoch %d/%d: train loss %.4f top-1 %.2f%% | test top-1 %.2f%% top-5 %.2f%% (best %.2f%%)",
            epoch,
            num_epochs,
            record["train_loss"],
            100 * record["train_top1"],
            100 * record["test_top1"],
            100 * record["test_top5"],
            100 * best["test_top1"],
        )
        return
    top1 = [r["test_top1"] for r in records]
    log.info(
        "epoch %d/%d, %d seeds: train loss %.4f | test top-1 %s%% (min %.2f, max %.2f) | best %s%%",
        epoch,
        num_epochs,
        len(records),
        float(np.mean([r["train_loss"] for r in records])),
        seeds_lib.format_mean_std(top1),
        100 * min(top1),
        100 * max(top1),
        seeds_lib.format_mean_std([b["test_top1"] for b in bests]),
    )


def _to_host_lists(tree) -> dict[str, list[float]]:
    """``{name: [K] array}`` -> ``{name: [K floats]}`` (JSON-ready, one value per seed)."""
    return {k: [float(x) for x in np.asarray(v).reshape(-1)] for k, v in jax.device_get(tree).items()}


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


def evaluate_variables(eval_step, variables, data) -> dict[str, list[float]]:
    """Top-1, top-5, mean CE and count of each seed over the full (padded, masked) test split.

    Args:
      eval_step: the compiled eval step of K seeds (:func:`sld_jax.train.dispatch.compile_seeds_eval_step`).
      variables: the seeds' replicated ``{"params", "batch_stats"}`` (a leading axis K).
      data: the run's datasets (:class:`~sld_jax.train.data_io.RunData`).

    Returns:
      ``{"top1", "top5", "ce", "count"}``, each a list of K values: fractions, the mean loss, and
      the number of examples.
    """
    sums = None
    for batch in data.eval_batches():
        sums = _sum_trees(sums, eval_step(variables, batch))
    sums = _to_host_lists(sums)
    n = [max(c, 1.0) for c in sums["count"]]
    return {
        "top1": [t / c for t, c in zip(sums["top1"], n)],
        "top5": [t / c for t, c in zip(sums["top5"], n)],
        "ce": [t / c for t, c in zip(sums["ce"], n)],
        "count": sums["count"],
    }


def _epoch_record(epoch: int, train: dict[str, float], lr: float, ev: dict[str, float]) -> dict[str, float]:
    """One seed's epoch record from its train sums and its evaluation."""
    train = dict(train)
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
    record.update(test_top1=ev["top1"], test_top5=ev["top5"], test_loss=ev["ce"], test_count=ev["count"])
    return record


def evaluate(config: ml_collections.ConfigDict, workdir: str, *, which: str = "best") -> dict:
    """Evaluates a saved run (``sld-eval``): top-1/top-5 of its best or last checkpoint.

    Returns:
      ``top1``, ``top5``, ``loss`` (means over the run's seeds), ``count``, ``which``, ``epoch``;
      with several seeds also ``seeds`` (one ``{"seed", "top1", "top5", "loss"}`` each) and
      ``top1_summary`` (:func:`sld_jax.train.seeds.summarize`: mean, std, min, max).
    """
    setup.validate(config)
    mesh = mesh_for(config)
    variables, meta = ckpt_lib.load_run_variables(workdir, which=which, fallback=False, seed_index=None)
    built = setup.build(config, mesh, train=False)
    first = jax.tree.map(lambda x: x[0], variables)
    mismatch = models.variables_mismatch(first, built.student, image_size=built.data.spec.image_size)
    if mismatch:
        raise ckpt_lib.CheckpointError(
            f"the checkpoint in {workdir} does not fit its config.json (model {config.model!r}, "
            f"{built.data.spec.num_classes} classes: {mismatch}); was config.json overwritten by "
            "another run?"
        )
    variables = jax.device_put(variables, NamedSharding(mesh, P()))
    ev = evaluate_variables(built.eval_step, variables, built.data)
    results = seeds_lib.per_seed(meta)
    result = {
        "top1": float(np.mean(ev["top1"])),
        "top5": float(np.mean(ev["top5"])),
        "loss": float(np.mean(ev["ce"])),
        "count": int(ev["count"][0]),
        "which": which,
        "epoch": (results[0]["last"] or {}).get("epoch"),
    }
    if len(ev["top1"]) > 1:
        result["seeds"] = [
            {"seed": r["seed"], "top1": t1, "top5": t5, "loss": ce}
            for r, t1, t5, ce in zip(results, ev["top1"], ev["top5"], ev["ce"])
        ]
        result["top1_summary"] = {k: v for k, v in seeds_lib.summarize(ev["top1"]).items() if k != "values"}
    return result
