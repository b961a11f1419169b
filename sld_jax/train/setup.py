"""From a config to the pieces of a run: ``validate(config)`` and ``build(config, mesh)``.

``validate`` checks a config's values (names, ranges, divisibility) before anything is read or
compiled. ``build`` then builds each piece once — data, student, teacher, optimiser, initial state,
the static step description — for :func:`sld_jax.train.loop.run`, :func:`sld_jax.train.loop.evaluate`
and ``python -m sld_jax.bench step`` alike.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from sld_jax import models
from sld_jax.train import mesh as mesh_lib
from sld_jax.train import methods, schedule, validation
from sld_jax.train.data_io import RunData, open_datasets
from sld_jax.train.state import TrainState, create_train_state, pytorch_sgd
from sld_jax.train.step import StepConfig, compile_eval_step
from sld_jax.train.teacher import load_teacher

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def compute_dtype(name: str):
    """``"float32"``/``"bfloat16"``/``"float16"`` -> the jnp dtype, with a clear error otherwise."""
    if name not in _DTYPES:
        raise ValueError(f"compute_dtype must be one of {sorted(_DTYPES)}, got {name!r}.")
    return _DTYPES[name]


def validate(config: ml_collections.ConfigDict) -> None:
    """Cheap checks of a run config's values, before any data, model or compilation.

    Raises:
      ValueError: naming the field, what was wrong and the fix.
    """
    validation.check_ranges(config)
    method = methods.get_method(config.method)  # unknown method -> error with suggestion
    models.check_name(config.model)
    if method.uses_teacher:
        models.check_name(config.teacher.arch)
        if not config.teacher.checkpoint:
            raise ValueError(
                f"method {config.method!r} needs a teacher: set --config.teacher.checkpoint to a "
                "vanilla run's workdir or an sld-import-teacher output directory."
            )
    if config.on_nonfinite not in ("stop", "skip"):
        raise ValueError(f"on_nonfinite must be 'stop' or 'skip', got {config.on_nonfinite!r}.")
    compute_dtype(config.compute_dtype)
    n = mesh_lib.num_devices(config)
    if config.batch_size % n:
        raise ValueError(
            f"batch_size {config.batch_size} must be divisible by the number of devices ({n}); "
            f"use e.g. --config.batch_size={max(n, config.batch_size // n * n)}."
        )
    methods.objective_kwargs(method, config.loss)  # an unknown teacher transform fails here


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
      state: the freshly initialised, replicated :class:`~sld_jax.train.state.TrainState`.
      eval_step: the compiled evaluation step ``(variables, batch) -> sums``.
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
            pseudo_teacher=(
                methods.pseudo_teacher_kwargs(self.config.loss)
                if self.method.student_swap == methods.PSEUDO_TEACHER
                else ()
            ),
        )

    def student_swap(self, epoch: int) -> bool:
        """The γ gate of ``epoch`` (1-based): the static variant of the step to run."""
        return self.method.student_swap_gated and schedule.student_swap_for_epoch(
            epoch, self.config.loss.gamma
        )


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
      config: a run config (call :func:`validate` first).
      mesh: the ``data`` mesh (:func:`sld_jax.train.mesh.mesh_for`).
      data: the datasets; default: opened from ``config.dataset``.
      teacher_variables: the teacher's variables; default: loaded from ``config.teacher``.
      train: False for evaluation only (no train split is read, no teacher is loaded).

    Returns:
      The :class:`Run`.
    """
    data = open_datasets(config, mesh, train=train) if data is None else data
    spec = data.spec
    dtype = compute_dtype(config.compute_dtype)
    method = methods.get_method(config.method)
    replicated = NamedSharding(mesh, P())
    axis_name = mesh_lib.DATA_AXIS if config.sync_batchnorm else None
    student = models.get_model(config.model, num_classes=spec.num_classes, dtype=dtype, axis_name=axis_name)
    teacher = None
    if method.uses_teacher and train:
        if teacher_variables is None:
            teacher, teacher_variables = load_teacher(
                config.teacher, num_classes=spec.num_classes, dtype=dtype, image_size=spec.image_size
            )
        else:
            teacher = models.get_model(config.teacher.arch, num_classes=spec.num_classes, dtype=dtype)
        teacher_variables = jax.device_put(teacher_variables, replicated)
    lr_fn = schedule.lr_schedule(
        config.optim.lr, config.optim.stages, data.steps_per_epoch, config.optim.decay_rate
    )
    tx = pytorch_sgd(lr_fn, momentum=config.optim.momentum, weight_decay=config.optim.weight_decay)
    # Parameters are initialised outside shard_map, where no BatchNorm axis name is bound.
    init_model = models.get_model(config.model, num_classes=spec.num_classes, dtype=dtype)
    variables = models.init_variables(init_model, jax.random.PRNGKey(config.seed), image_size=spec.image_size)
    state = jax.device_put(create_train_state(variables, tx), replicated)
    eval_step = compile_eval_step(student, mesh, spec.mean, spec.std)
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
    )
