"""From a validated config to the pieces of a run: ``build(config, mesh)``.

``build`` builds each piece once — data, student, teacher, optimiser, initial state, the static
step description — for :func:`sld_jax.train.loop.run`, :func:`sld_jax.train.evaluate.evaluate` and
``python -m sld_jax.bench step`` alike. Configs are checked before, once, by
:func:`sld_jax.train.validation.validate`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from sld_jax import models
from sld_jax.train import hardware, methods, schedule, seeds
from sld_jax.train import mesh as mesh_lib
from sld_jax.train.data_io import RunData, open_datasets, train_feed, upload_split
from sld_jax.train.dispatch import compile_dispatch, compile_seeds_eval_step
from sld_jax.train.state import TrainState, create_train_state, optimizer
from sld_jax.train.step import StepConfig
from sld_jax.train.teacher import load_teacher, variables_fingerprint

log = logging.getLogger("sld_jax")


@dataclasses.dataclass
class Run:
    """Everything a run needs, built once from its config.

    Attributes:
      config: the run config; mesh: its ``data`` mesh.
      data: the datasets (:class:`~sld_jax.train.data_io.RunData`).
      method: the :class:`~sld_jax.train.methods.Method`.
      student: the student module (BatchNorm synced over ``data`` when ``sync_batchnorm``).
      teacher, teacher_variables: the frozen teacher and its replicated variables (None without).
      lr_fn: the learning-rate schedule of the step count; tx: the optimiser.
      state: the freshly initialised, replicated :class:`~sld_jax.train.state.TrainState` of
        every seed (a leading axis K on each leaf).
      eval_step: the compiled evaluation step ``(variables of K seeds, batch) -> sums [K]``.
      seeds: the K seeds (:func:`sld_jax.train.seeds.seed_values`); rngs: their replicated
        base keys ``[K, 2]``.
      seed_axis: "vmap" or "unroll"; shares_data: every seed sees the same batches and views.
      steps_per_dispatch: optimiser steps per compiled call.
      split: the device-resident train split ``{"image", "label"}`` (``{}``: batches from the host).
      teacher_fingerprint: :func:`~sld_jax.train.teacher.variables_fingerprint` of the teacher's
        variables as loaded (None without a teacher).
    """

    config: ml_collections.ConfigDict
    mesh: Mesh
    data: RunData
    method: methods.Method
    student: Any
    teacher: Any
    teacher_variables: Any
    lr_fn: optax.Schedule
    tx: optax.GradientTransformation
    state: TrainState
    eval_step: Any
    seeds: list[int]
    rngs: jax.Array
    seed_axis: str
    shares_data: bool
    steps_per_dispatch: int
    split: dict
    teacher_fingerprint: str | None = None
    _compiled: dict = dataclasses.field(default_factory=dict, repr=False)
    _compiled_before: dict = dataclasses.field(default_factory=dict, repr=False)
    _active: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def num_seeds(self) -> int:
        return len(self.seeds)

    def data_seeds(self) -> list[int]:
        """The seeds whose data order the feed follows (the first only when seeds share data)."""
        return self.seeds[:1] if self.shares_data else list(self.seeds)

    def dispatch(self, *, student_swap: bool):
        """The compiled ``(states, teacher_variables, feed, split, rngs, active) -> (states, metrics)``
        (:func:`sld_jax.train.dispatch.dispatch_steps`) for one value of the γ gate, built once."""
        if student_swap not in self._compiled:
            fn = compile_dispatch(
                self.step_config(student_swap=student_swap),
                self.mesh,
                seed_axis=self.seed_axis,
                shares_data=self.shares_data,
            )
            # jax.jit wrappers of one function share their executables (and their count).
            self._compiled[student_swap], self._compiled_before[student_swap] = fn, fn._cache_size()
        return self._compiled[student_swap]

    def feeds(self, *, epoch: int, start_step: int, stop_step: int, steps_per_dispatch: int | None = None):
        """``(feed, n)`` pairs covering steps ``[start_step, stop_step)`` of ``epoch``
        (:func:`sld_jax.train.data_io.train_feed`), ``steps_per_dispatch`` (default: the run's) each."""
        return train_feed(
            self.data,
            self.mesh,
            seeds=self.data_seeds(),
            epoch=epoch,
            start_step=start_step,
            stop_step=stop_step,
            steps_per_dispatch=steps_per_dispatch or self.steps_per_dispatch,
            resident=bool(self.split),
            global_batch_size=self.config.batch_size,
        )

    def active(self, n: int) -> jax.Array:
        """The ``active`` mask of a feed with ``n`` real steps: bool ``[steps_per_dispatch]`` (built
        once per ``n``, not every step)."""
        if n not in self._active:
            mask = np.arange(self.steps_per_dispatch) < n
            self._active[n] = jax.device_put(mask, NamedSharding(self.mesh, P()))
        return self._active[n]

    def check_fits(self, dispatch, *args) -> None:
        """Raises :class:`~sld_jax.errors.ConfigError` when the compiled dispatch needs more memory
        per device than the device has (:func:`sld_jax.train.hardware.check_compiled_fits`)."""
        hardware.check_compiled_fits(
            dispatch, args, self.mesh, num_seeds=self.num_seeds, batch_size=self.config.batch_size
        )

    def compile_ahead(self, epoch: int, last_epoch: int, args: tuple) -> threading.Thread | None:
        """Starts compiling the γ-gate variant this run switches to later (at epoch γ + 1) in a
        background thread, so that the switch finds it compiled instead of stalling the run.

        ``args`` are the arguments of a call of the current variant (their shapes, dtypes and
        shardings are what is compiled; jit keeps the executable, and a persistent compilation cache
        stores it too). Nothing happens when the run does not cross γ between ``epoch`` and
        ``last_epoch``.

        Returns:
          The started thread, or None.
        """
        later = self.student_swap(last_epoch)
        if later == self.student_swap(epoch):
            return None
        specs = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding, weak_type=x.aval.weak_type),
            args,
        )
        fn = self.dispatch(student_swap=later)

        def compile_later_variant():
            try:
                fn.lower(*specs).compile()
            except Exception as e:  # noqa: BLE001 - the switch then compiles as it would have
                log.warning(
                    "compiling the step of epochs > γ ahead failed (%s); it compiles at the switch.", e
                )

        return _in_background(compile_later_variant)

    def compiled_variants(self) -> dict[bool, int]:
        """``{student_swap: programs compiled}`` by this run's dispatch functions: 1 per γ-gate value
        for a run's step (more means a retrace), 0 where an equal run earlier in the process had
        compiled the same program (it is shared)."""
        return {k: fn._cache_size() - self._compiled_before[k] for k, fn in self._compiled.items()}

    def step_config(self, *, student_swap: bool) -> StepConfig:
        """The static description of the train step for one value of the γ gate."""
        spec = self.data.spec
        return StepConfig(
            student=self.student,
            teacher=self.teacher,
            method=self.method,
            objective_kwargs=methods.objective_kwargs(self.method, self.config.loss),
            tx=self.tx,
            student_swap=student_swap,
            steps_per_epoch=self.data.steps_per_epoch,
            mean=tuple(spec.mean),
            std=tuple(spec.std),
            crop_padding=spec.crop_padding,
            host_crops=self.data.host_crops,
        )

    def student_swap(self, epoch: int) -> bool:
        """The γ gate of ``epoch`` (1-based): the static variant of the step to run."""
        return self.method.gamma_gated and schedule.student_swap_active(epoch, gamma=self.config.loss.gamma)


def _in_background(fn) -> threading.Thread:
    """Runs ``fn()`` in a started daemon thread."""
    thread = threading.Thread(target=fn, name="sld_jax-compile-ahead", daemon=True)
    thread.start()
    return thread


def build(
    config: ml_collections.ConfigDict,
    mesh: Mesh,
    *,
    data: RunData | None = None,
    teacher_variables: Any = None,
    train: bool = True,
) -> Run:
    """Builds the run described by a validated ``config`` on ``mesh``.

    Args:
      config: a run config (checked by :func:`sld_jax.train.validation.validate`).
      mesh: the ``data`` mesh (:func:`sld_jax.train.mesh.mesh_for`).
      data: the datasets; default: opened from ``config.dataset``.
      teacher_variables: the teacher's variables; default: loaded from ``config.teacher``.
      train: False for evaluation only (no train split is read, no teacher is loaded).

    Returns:
      The :class:`Run`.
    """
    data = open_datasets(config, mesh, train=train) if data is None else data
    spec = data.spec
    dtype = hardware.compute_dtype(config.compute_dtype)
    method = methods.get_method(config.method)
    replicated = NamedSharding(mesh, P())
    axis_name = mesh_lib.DATA_AXIS if config.sync_batchnorm else None
    student = models.get_model(config.model, num_classes=spec.num_classes, dtype=dtype, axis_name=axis_name)
    teacher = teacher_print = None
    if method.uses_teacher and train:
        if teacher_variables is None:
            teacher, teacher_variables = load_teacher(
                config.teacher, num_classes=spec.num_classes, dtype=dtype, image_size=spec.image_size
            )
        else:
            teacher = models.get_model(config.teacher.arch, num_classes=spec.num_classes, dtype=dtype)
        teacher_print = variables_fingerprint(teacher_variables)
        teacher_variables = jax.device_put(
            hardware.variables_in_compute_dtype(teacher_variables, dtype), replicated
        )
    lr_fn, tx = optimizer(
        float(config.optim.lr),
        tuple(int(s) for s in config.optim.stages),
        data.steps_per_epoch,
        float(config.optim.decay_rate),
        float(config.optim.momentum),
        float(config.optim.weight_decay),
    )
    # Parameters are initialised outside shard_map, where no BatchNorm axis name is bound.
    init_model = models.get_model(config.model, num_classes=spec.num_classes, dtype=dtype)
    run_seeds = seeds.seed_values(config.seed, config.get("num_seeds", 1))

    def init_state(seed: int) -> TrainState:
        variables = models.init_variables(init_model, jax.random.PRNGKey(seed), image_size=spec.image_size)
        return create_train_state(hardware.variables_in_compute_dtype(variables, dtype), tx)

    states = [init_state(run_seeds[0])]
    hardware.check_seeds_fit(
        len(run_seeds), hardware.tree_bytes(states[0]), mesh
    )  # before the other K - 1 exist
    states += [init_state(s) for s in run_seeds[1:]]
    state = jax.device_put(jax.tree.map(lambda *xs: jnp.stack(xs), *states), replicated)
    rngs = jax.device_put(jnp.stack([jax.random.PRNGKey(s) for s in run_seeds]), replicated)
    mode = hardware.seed_axis_mode(config)
    eval_step = compile_seeds_eval_step(student, mesh, spec.mean, spec.std, seed_axis=mode)
    split = {}
    if train and _resident(config, data):
        split = upload_split(data.train_split, mesh)
    return Run(
        config=config,
        mesh=mesh,
        data=data,
        method=method,
        student=student,
        teacher=teacher,
        teacher_variables=teacher_variables,
        lr_fn=lr_fn,
        tx=tx,
        state=state,
        eval_step=eval_step,
        seeds=run_seeds,
        rngs=rngs,
        seed_axis=mode,
        shares_data=bool(config.get("seed_axis_shares_data", False)),
        steps_per_dispatch=hardware.steps_per_dispatch(config),
        split=split,
        teacher_fingerprint=teacher_print,
    )


def _resident(config: ml_collections.ConfigDict, data: RunData) -> bool:
    """Whether the train split lives on the devices (``data_placement``; "auto": when it fits)."""
    placement = config.get("data_placement", "auto")
    if data.train_split is None or placement == "host":
        return False
    return placement == "device" or data.train_split.images.nbytes <= hardware.RESIDENT_SPLIT_MAX_BYTES
