"""From a config to the pieces of a run: ``validate(config)`` and ``build(config, mesh)``.

``validate`` checks a config's values (names, ranges, divisibility) before anything is read or
compiled. ``build`` then builds each piece once — data, student, teacher, optimiser, initial state,
the static step description — for :func:`sld_jax.train.loop.run`, :func:`sld_jax.train.loop.evaluate`
and ``python -m sld_jax.bench step`` alike.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from sld_jax import models
from sld_jax.data import sources
from sld_jax.errors import ConfigError
from sld_jax.train import mesh as mesh_lib
from sld_jax.train import methods, schedule, seeds, validation
from sld_jax.train.data_io import RunData, open_datasets, train_feed, upload_split
from sld_jax.train.dispatch import compile_dispatch, compile_seeds_eval_step
from sld_jax.train.state import TrainState, create_train_state, pytorch_sgd
from sld_jax.train.step import StepConfig
from sld_jax.train.teacher import load_teacher, variables_fingerprint

_DTYPES = {name: getattr(jnp, name) for name in validation.COMPUTE_DTYPES}

# How the seed axis is computed on each backend when ``seed_axis = "auto"``, and how many optimiser
# steps one compiled call runs when ``steps_per_dispatch`` is None, from
# ``python -m sld_jax.bench step --num-seeds 1,2,4,8 [--steps-per-dispatch S]`` (README,
# Performance). On XLA:CPU ``vmap`` turns the seeds' weights into batched convolutions and runs K
# seeds at half the speed of K separate runs, while unrolled seeds run at the speed of separate
# runs; a ``lax.scan`` of 4 steps ran 1.7x slower per step than one step per call. No accelerator
# was measured: there the seeds are vmapped (one launch per op for all seeds) and the steps
# dispatched one per call until a measurement says otherwise.
AUTO_SEED_AXIS = {"cpu": "unroll"}
DEFAULT_SEED_AXIS = "vmap"
AUTO_STEPS_PER_DISPATCH = {"cpu": 1}
DEFAULT_STEPS_PER_DISPATCH = 1
# "auto" keeps an in-memory train split on the devices up to this size (each device holds a copy).
RESIDENT_SPLIT_MAX_BYTES = 2 * 1024**3


def compute_dtype(name: str):
    """``"float32"``/``"bfloat16"``/``"float16"``/``"float64"`` -> the jnp dtype, with a clear error
    otherwise.

    ``"float64"`` (parameters, optimiser state and statistics in float64 too: see :func:`build`) is
    for exactness checks on the CPU: two differently compiled programs of one computation then agree
    to ~1e-12 where float32 rounding, amplified over many steps, leaves ~1e-3. It needs 64-bit JAX.
    """
    if name not in _DTYPES:
        raise ValueError(f"compute_dtype must be one of {sorted(_DTYPES)}, got {name!r}.")
    if name == "float64" and not jax.config.jax_enable_x64:
        raise ValueError(
            "compute_dtype='float64' needs 64-bit JAX: set JAX_ENABLE_X64=1 in the environment (or run "
            "inside `with jax.enable_x64(True):`), or use float32."
        )
    return _DTYPES[name]


def variables_in_compute_dtype(variables: Any, dtype) -> Any:
    """``variables`` (any pytree) with their floating leaves in float64 when ``dtype`` is float64
    (the zoo creates float32 variables); unchanged otherwise (float32 parameters under every
    lower-precision compute dtype)."""
    if dtype != jnp.float64:
        return variables
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, variables)


def validate(config: ml_collections.ConfigDict) -> None:
    """Cheap checks of a run config's values, before any data, model or compilation.

    Raises:
      ConfigError: naming the field, what was wrong and the fix (a ``ValueError``).
    """
    try:
        _validate(config)
    except ConfigError:
        raise
    except ValueError as e:  # the checks' plain ValueErrors are config errors too
        raise ConfigError(str(e)) from e


def _validate(config: ml_collections.ConfigDict) -> None:
    validation.check_fields(config)  # ranges and choices of every field
    _check_dataset(config)
    method = methods.get_method(config.method)  # unknown method -> error with suggestion
    models.check_name(config.model)
    if method.uses_teacher:
        models.check_name(config.teacher.arch)
        if not config.teacher.checkpoint:
            raise ValueError(
                f"method {config.method!r} needs a teacher: set --config.teacher.checkpoint to a "
                "vanilla run's workdir or an sld-import-teacher output directory."
            )
    compute_dtype(config.compute_dtype)
    n = mesh_lib.num_devices(config)
    if config.batch_size % n:
        raise ValueError(
            f"batch_size {config.batch_size} must be divisible by the number of devices ({n}); "
            f"use e.g. --config.batch_size={max(n, config.batch_size // n * n)}."
        )
    methods.objective_kwargs(method, config.loss)  # an unknown teacher transform fails here


def _check_dataset(config: ml_collections.ConfigDict) -> None:
    """The dataset's own constraints, each a :class:`ConfigError`: an unknown name; a batch larger
    than the training set (one padded batch per epoch, all but a few of its rows masked: compute
    and memory for nothing); a placement on the devices of a dataset streamed from the host."""
    spec = sources.get_spec(config.dataset.name)
    limit = config.dataset.get("limit_train") or 0
    num_train = min(limit, spec.train_size) if limit else spec.train_size
    if config.batch_size > num_train:
        raise ConfigError(
            f"batch_size={config.batch_size} is larger than the training set ({num_train} examples of "
            f"{spec.name}{' after dataset.limit_train' if limit else ''}): an epoch would be one batch "
            f"padded to {config.batch_size} rows; use --config.batch_size={min(num_train, 64)} or "
            "another value <= the number of training examples."
        )
    if config.get("data_placement", "auto") == "device" and not spec.in_memory:
        raise ConfigError(
            f"data_placement='device' needs an in-memory dataset; {spec.name} is streamed from the "
            "host: use --config.data_placement=host (or auto)."
        )


def seed_axis_mode(config: ml_collections.ConfigDict, backend: str | None = None) -> str:
    """``config.seed_axis`` with ``"auto"`` resolved for the backend; one seed is always
    ``"unroll"`` (the plain step, unbatched)."""
    mode = config.get("seed_axis", "auto")
    if config.get("num_seeds", 1) == 1:
        return "unroll"
    if mode != "auto":
        return mode
    return AUTO_SEED_AXIS.get(backend or jax.default_backend(), DEFAULT_SEED_AXIS)


def steps_per_dispatch(config: ml_collections.ConfigDict, backend: str | None = None) -> int:
    """``config.steps_per_dispatch``, or the backend's default when it is None."""
    spd = config.get("steps_per_dispatch")
    if spd is not None:
        return int(spd)
    return AUTO_STEPS_PER_DISPATCH.get(backend or jax.default_backend(), DEFAULT_STEPS_PER_DISPATCH)


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

    def feeds(self, *, epoch: int, start_step: int, stop_step: int):
        """``(feed, n)`` pairs covering steps ``[start_step, stop_step)`` of ``epoch``
        (:func:`sld_jax.train.data_io.train_feed`)."""
        return train_feed(
            self.data,
            self.mesh,
            seeds=self.data_seeds(),
            epoch=epoch,
            start_step=start_step,
            stop_step=stop_step,
            steps_per_dispatch=self.steps_per_dispatch,
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
        per device than the device has (from XLA's memory analysis, before the first step).

        Backends that report no memory limit (the CPU) are not checked.
        """
        limit = device_memory_limit(self.mesh)
        if limit is None:
            return
        analysis = dispatch.lower(*args).compile().memory_analysis()
        if analysis is None:
            return
        need = (
            analysis.argument_size_in_bytes
            + analysis.output_size_in_bytes
            + analysis.temp_size_in_bytes
            - analysis.alias_size_in_bytes
        )
        if need > limit:
            fits = max(1, int(self.num_seeds * limit / need))
            raise ConfigError(
                f"num_seeds={self.num_seeds} with batch_size={self.config.batch_size} needs about "
                f"{need / 2**30:.2f} GiB per device (XLA's memory analysis of the compiled step) but a "
                f"device has {limit / 2**30:.2f} GiB; use --config.num_seeds={fits} or a smaller "
                "batch_size, or more devices."
            )

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
    teacher = teacher_print = None
    if method.uses_teacher and train:
        if teacher_variables is None:
            teacher, teacher_variables = load_teacher(
                config.teacher, num_classes=spec.num_classes, dtype=dtype, image_size=spec.image_size
            )
        else:
            teacher = models.get_model(config.teacher.arch, num_classes=spec.num_classes, dtype=dtype)
        teacher_print = variables_fingerprint(teacher_variables)
        teacher_variables = jax.device_put(variables_in_compute_dtype(teacher_variables, dtype), replicated)
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
        return create_train_state(variables_in_compute_dtype(variables, dtype), tx)

    states = [init_state(run_seeds[0])]
    check_seeds_fit(len(run_seeds), tree_bytes(states[0]), mesh)  # before the other K - 1 exist
    states += [init_state(s) for s in run_seeds[1:]]
    state = jax.device_put(jax.tree.map(lambda *xs: jnp.stack(xs), *states), replicated)
    rngs = jax.device_put(jnp.stack([jax.random.PRNGKey(s) for s in run_seeds]), replicated)
    mode = seed_axis_mode(config)
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
        steps_per_dispatch=steps_per_dispatch(config),
        split=split,
        teacher_fingerprint=teacher_print,
    )


@functools.lru_cache(maxsize=16)
def optimizer(
    lr: float,
    stages: tuple[int, ...],
    steps_per_epoch: int,
    decay_rate: float,
    momentum: float,
    weight_decay: float,
) -> tuple[optax.Schedule, optax.GradientTransformation]:
    """The reference's learning-rate schedule and SGD, one pair of objects per distinct setting.

    Equal settings return the same objects, so two builds of one config give equal
    :class:`~sld_jax.train.step.StepConfig` values and share one traced and compiled step in a
    process (:func:`~sld_jax.train.dispatch.compile_dispatch`): a resumed or repeated run in the same
    process compiles nothing again.

    >>> optimizer(0.05, (150, 180, 210), 391, 0.1, 0.9, 5e-4) is optimizer(0.05, (150, 180, 210), 391, 0.1, 0.9, 5e-4)
    True
    """
    lr_fn = schedule.lr_schedule(lr, stages, steps_per_epoch, decay_rate)
    return lr_fn, pytorch_sgd(lr_fn, momentum=momentum, weight_decay=weight_decay)


# Copies of the K seeds' states a training step holds at once (the state, its gradients and the
# updated state); the bound of :func:`check_seeds_fit` counts these alone, before activations.
STATE_COPIES_PER_STEP = 3


def tree_bytes(tree: Any) -> int:
    """Bytes of the arrays of a pytree."""
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


def check_seeds_fit(num_seeds: int, state_bytes: int, mesh: Mesh) -> None:
    """Raises :class:`~sld_jax.errors.ConfigError` when ``num_seeds`` states of ``state_bytes``
    each cannot fit, before they are created.

    Every device of ``mesh`` holds all K states (replicated), ``STATE_COPIES_PER_STEP`` times during
    a step. The limit is a device's memory on an accelerator and the host's available memory on the
    CPU (where the devices of one process share it); the compiled step's own check
    (:meth:`Run.check_fits`) then adds the activations where the backend reports a limit.
    """
    limit = device_memory_limit(mesh)
    copies = STATE_COPIES_PER_STEP
    where = "a device has"
    if limit is None:
        limit = host_memory_available()
        if limit is None:
            return
        copies *= sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
        where = "the host has"
    need = num_seeds * state_bytes * copies
    if need > limit:
        fits = max(1, limit // (state_bytes * copies))
        raise ConfigError(
            f"num_seeds={num_seeds} needs about {need / 2**30:.1f} GiB for the seeds' parameters and "
            f"optimiser states alone ({state_bytes / 2**20:.2f} MiB per seed, {copies} copies during a "
            f"step) but {where} {limit / 2**30:.1f} GiB available; use --config.num_seeds={fits} or "
            "fewer (or a smaller model)."
        )


def host_memory_available() -> int | None:
    """Bytes of host memory available to new allocations (Linux: ``MemAvailable``; else None)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def device_memory_limit(mesh: Mesh) -> int | None:
    """Bytes of memory of one device of ``mesh`` (None when the backend does not say: the CPU)."""
    device = mesh.devices.flat[0]
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - a backend without memory statistics
        return None
    return None if not stats else stats.get("bytes_limit")


def _resident(config: ml_collections.ConfigDict, data: RunData) -> bool:
    """Whether the train split lives on the devices (``data_placement``; "auto": when it fits)."""
    placement = config.get("data_placement", "auto")
    if data.train_split is None or placement == "host":
        return False
    return placement == "device" or data.train_split.images.nbytes <= RESIDENT_SPLIT_MAX_BYTES
