"""``run(config, workdir)``: the epoch loop joining data, models, losses, checkpoints and logs.

The loop is the only place that knows all the pieces. It resumes from the newest readable
checkpoint in ``workdir``, holds one compiled train step per static variant (two for methods with
the γ-gated student swap), evaluates on the full test split after each epoch, and writes
TensorBoard events, ``metrics.jsonl``, checkpoints, a plot and a markdown summary.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from sld_jax import models
from sld_jax.bench.common import machine_description
from sld_jax.train import checkpoint as ckpt_lib
from sld_jax.train import metrics as metrics_lib
from sld_jax.train import objectives, report, schedule
from sld_jax.train.data_io import open_datasets
from sld_jax.train.state import TrainState, create_train_state, pytorch_sgd
from sld_jax.train.step import StepConfig, compile_eval_step, compile_train_step, make_mesh
from sld_jax.train.teacher import load_teacher

log = logging.getLogger("sld_jax")


class NonFiniteLossError(RuntimeError):
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


def compute_dtype(name: str):
    """``"float32"``/``"bfloat16"`` -> the jnp dtype, with a clear error otherwise."""
    table = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
    if name not in table:
        raise ValueError(f"compute_dtype must be one of {sorted(table)}, got {name!r}.")
    return table[name]


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Cheap checks of a config before any data or model is touched."""
    objectives.get_objective(config.method, config.loss)  # unknown method -> error with suggestion
    models.get_model(config.model, num_classes=2)  # unknown name -> error naming the nearest
    if objectives.get_objective(config.method, config.loss).uses_teacher:
        models.get_model(config.teacher.arch, num_classes=2)
        if not config.teacher.checkpoint:
            raise ValueError(
                f"method {config.method!r} needs a teacher: set --config.teacher.checkpoint to a "
                "vanilla run's workdir or an sld-import-teacher output directory.")
    if config.batch_size <= 0 or config.num_epochs <= 0:
        raise ValueError("batch_size and num_epochs must be positive.")
    if config.on_nonfinite not in ("stop", "skip"):
        raise ValueError(f"on_nonfinite must be 'stop' or 'skip', got {config.on_nonfinite!r}.")
    compute_dtype(config.compute_dtype)
    n = _num_devices(config)
    if config.batch_size % n:
        raise ValueError(
            f"batch_size {config.batch_size} must be divisible by the number of devices ({n}); "
            f"use e.g. --config.batch_size={max(n, config.batch_size // n * n)}.")


def _num_devices(config) -> int:
    per_process = config.get("num_devices", 0) or jax.local_device_count()
    if per_process > jax.local_device_count():
        raise ValueError(f"num_devices={per_process} but this process has only "
                         f"{jax.local_device_count()} devices.")
    return per_process * jax.process_count()


def _mesh(config):
    """The ``data`` mesh over the first ``num_devices`` devices of every process (0 = all)."""
    per_process = config.get("num_devices", 0) or jax.local_device_count()
    devices = [d for p in range(jax.process_count())
               for d in [x for x in jax.devices() if x.process_index == p][:per_process]]
    return make_mesh(devices)


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
    """
    t_start = time.perf_counter()
    validate_config(config)
    workdir = os.path.abspath(workdir)
    checkpointer = ckpt_lib.Checkpointer(workdir, keep=config.keep_checkpoints)
    dtype = compute_dtype(config.compute_dtype)
    mesh = _mesh(config)
    data = open_datasets(config, mesh)
    spec = data.spec
    spe = data.steps_per_epoch
    total_steps = spe * config.num_epochs

    objective = objectives.get_objective(config.method, config.loss)
    axis_name = "data" if config.sync_batchnorm else None
    student = models.get_model(config.model, num_classes=spec.num_classes, dtype=dtype,
                               axis_name=axis_name)
    teacher_model, teacher_vars = None, None
    if objective.uses_teacher:
        teacher_model, teacher_vars = load_teacher(
            config.teacher, num_classes=spec.num_classes, dtype=dtype,
            image_size=spec.image_size)
    replicated = NamedSharding(mesh, P())
    if teacher_vars is not None:
        teacher_vars = jax.device_put(teacher_vars, replicated)

    lr_fn = schedule.lr_schedule(config.optim.lr, config.optim.stages, spe, config.optim.decay_rate)
    tx = pytorch_sgd(lr_fn, momentum=config.optim.momentum, weight_decay=config.optim.weight_decay)
    dummy = jnp.zeros((1, spec.image_size, spec.image_size, 3), jnp.float32)
    init_model = models.get_model(config.model, num_classes=spec.num_classes, dtype=dtype)
    variables = jax.jit(lambda k: init_model.init(k, dummy, train=False))(
        jax.random.PRNGKey(config.seed))
    state = jax.device_put(create_train_state(variables, tx), replicated)

    meta: dict[str, Any] = {"history": [], "best": None, "epoch_sums": None}
    restored = checkpointer.restore_latest(state)
    if restored is not None:
        state, meta = restored
        log.info("resumed from step %d in %s", int(state.step), workdir)
        _forget_metrics_after(workdir, int(state.step))
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))

    step_cfg = dict(student=student, teacher=teacher_model,
                    objective=objectives.objective_with_diagnostics(objective), tx=tx,
                    two_views=objective.two_views, steps_per_epoch=spe, mean=tuple(spec.mean),
                    std=tuple(spec.std), crop_padding=spec.crop_padding,
                    host_crops=data.host_crops)
    compiled: dict[bool, Callable] = {}

    def step_fn(student_swap: bool):
        if student_swap not in compiled:
            compiled[student_swap] = compile_train_step(
                StepConfig(student_swap=student_swap, **step_cfg), mesh)
        return compiled[student_swap]

    eval_fn = compile_eval_step(student, mesh, spec.mean, spec.std)
    rng = jax.device_put(jax.random.PRNGKey(config.seed), replicated)
    writer = metrics_lib.MetricWriter(workdir)
    progress = metrics_lib.Progress(total_epochs=config.num_epochs, steps_per_epoch=spe,
                                    log_every=config.log_every_steps)
    history: list[dict] = list(meta.get("history") or [])
    best = meta.get("best")
    step = int(state.step)
    preempted = False
    stop_at = config.max_steps or total_steps

    def save(epoch_sums, *, is_best=False):
        checkpointer.save(int(state.step), state,
                          {"history": history, "best": best, "epoch_sums": epoch_sums,
                           "steps_per_epoch": spe, "name": config.name}, best=is_best)

    with _Preemption() as preemption:
        while step < min(total_steps, stop_at):
            epoch = schedule.epoch_of_step(step, spe)
            first = step - (epoch - 1) * spe
            swap = objective.has_student_swap and schedule.student_swap_for_epoch(
                epoch, config.loss.gamma)
            train_step = step_fn(swap)
            sums = None
            if first and meta.get("epoch_sums"):  # resuming inside an epoch: keep its sums
                sums = jax.tree.map(jnp.asarray, meta["epoch_sums"])
            progress.start_epoch(epoch, first)
            pending = None
            for batch in data.train_batches(epoch=epoch, start_step=first):
                state, m = train_step(state, teacher_vars, batch, rng)
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
            record = _epoch_record(epoch, sums, lr_fn(step - 1), eval_fn, state, data)
            history.append(record)
            is_best = best is None or record["test_top1"] > best["test_top1"]
            if is_best:
                best = record
            writer.write(step, {k: v for k, v in record.items() if k != "epoch"}, epoch=epoch)
            log.info(
                "epoch %d/%d: train loss %.4f top-1 %.2f%% | test top-1 %.2f%% top-5 %.2f%% "
                "(best %.2f%%)", epoch, config.num_epochs, record["train_loss"],
                100 * record["train_top1"], 100 * record["test_top1"], 100 * record["test_top5"],
                100 * best["test_top1"])
            if (epoch % config.checkpoint_every_epochs == 0 or epoch == config.num_epochs
                    or is_best or preemption.requested):
                save(None, is_best=is_best)
            if preemption.agreed():
                preempted = True
                break
    writer.close()
    wall = time.perf_counter() - t_start
    if jax.process_index() == 0 and history:
        report.plot_history(history, os.path.join(workdir, "accuracy.png"), config.name)
        report.write_summary(os.path.join(workdir, "summary.md"), name=config.name,
                             config_text=str(config), history=history, best=best,
                             wall_seconds=wall, machine=machine_description())
    checkpointer.close()
    return {"history": history, "best": best, "last": history[-1] if history else None,
            "preempted": preempted, "workdir": workdir, "state": state,
            "compiled_variants": {k: fn._cache_size() for k, fn in compiled.items()}}


def _forget_metrics_after(workdir: str, step: int) -> None:
    """Drops ``metrics.jsonl`` lines newer than the restored checkpoint (and torn lines).

    A run killed between writing an epoch's metrics and saving its checkpoint repeats that epoch
    on resume; without this its line would appear twice.
    """
    path = os.path.join(workdir, "metrics.jsonl")
    if jax.process_index() != 0 or not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.readlines()
    keep = []
    for line in lines:
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):  # a line cut short by the kill
            continue
    if len(keep) != len(lines):
        with open(path + ".tmp", "w") as f:
            f.writelines(keep)
        os.replace(path + ".tmp", path)


def _check_finite(pending, config, checkpointer) -> None:
    step, m = pending
    if float(m["finite"]) > 0:
        return
    if config.on_nonfinite == "skip":
        log.warning("step %d: non-finite loss or gradient; the update was skipped.", step)
        return
    good = checkpointer.all_steps()
    raise NonFiniteLossError(
        f"step {step}: the loss or a gradient is not finite (NaN/Inf); the update was not applied. "
        f"Last good checkpoint: {'step ' + str(good[-1]) if good else 'none'} in "
        f"{checkpointer.workdir}/checkpoints. Lower the learning rate, or set "
        "--config.on_nonfinite=skip to drop such steps.")


def _epoch_record(epoch, sums, lr, eval_fn, state, data) -> dict[str, float]:
    train = _to_host(sums)
    count = max(train.pop("count"), 1.0)
    record = {"epoch": epoch, "lr": float(lr), "train_loss": train.pop("loss") / count,
              "train_top1": train.pop("correct") / count}
    record.update({f"train_{k}" if not k.endswith("fraction") and k != "teacher_student_agreement"
                   else k: v / count for k, v in train.items()})
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    ev = None
    for batch in data.eval_batches():
        ev = _sum_trees(ev, eval_fn(variables, batch))
    ev = _to_host(ev)
    n = max(ev["count"], 1.0)
    record.update(test_top1=ev["top1"] / n, test_top5=ev["top5"] / n, test_loss=ev["ce"] / n,
                  test_count=ev["count"])
    return record


def evaluate(config: ml_collections.ConfigDict, workdir: str, *, which: str = "best") -> dict:
    """Evaluates a saved run (``sld-eval``): top-1/top-5 of its best or last checkpoint."""
    validate_config(config)
    mesh = _mesh(config)
    data = open_datasets(config, mesh, train=False)
    spec = data.spec
    variables, meta = ckpt_lib.load_run_variables(workdir, which=which)
    model = models.get_model(config.model, num_classes=spec.num_classes,
                             dtype=compute_dtype(config.compute_dtype))
    variables = jax.device_put(variables, NamedSharding(mesh, P()))
    eval_fn = compile_eval_step(model, mesh, spec.mean, spec.std)
    ev = None
    for batch in data.eval_batches():
        ev = _sum_trees(ev, eval_fn(variables, batch))
    ev = _to_host(ev)
    n = max(ev["count"], 1.0)
    return {"top1": ev["top1"] / n, "top5": ev["top5"] / n, "loss": ev["ce"] / n,
            "count": int(ev["count"]), "which": which,
            "epoch": (meta.get("history") or [{}])[-1].get("epoch")}
