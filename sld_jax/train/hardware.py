"""The backend a run lands on: its compute dtypes, its measured defaults, its memory.

``seed_axis="auto"`` and ``steps_per_dispatch=None`` resolve here from the per-backend tables; the
memory bounds (:func:`check_seeds_fit` before the seeds' states exist, :func:`check_compiled_fits`
from XLA's analysis of the compiled step) turn an out-of-memory crash into a one-line error with
the fix.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh

from sld_jax.errors import ConfigError
from sld_jax.train.fields import COMPUTE_DTYPES

_DTYPES = {name: getattr(jnp, name) for name in COMPUTE_DTYPES}

# How the seed axis is computed on each backend when ``seed_axis = "auto"``, and how many optimiser
# steps one compiled call runs when ``steps_per_dispatch`` is None, from
# ``python -m sld_jax.bench step --num-seeds 1,2,4,8 [--steps-per-dispatch S]`` (docs/performance.md).
# On XLA:CPU ``vmap`` turns the seeds' weights into batched convolutions and runs K
# seeds at half the speed of K separate runs, while unrolled seeds run at the speed of separate
# runs; a ``lax.scan`` of 4 steps ran 1.7x slower per step than one step per call. A backend
# without an entry here is measured on the spot by sld_jax.train.autotune (recorded in the
# workdir); DEFAULT_* are what runs where tuning is skipped (several processes).
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


def check_compiled_fits(compiled: Any, args: tuple, mesh: Mesh, *, num_seeds: int, batch_size: int) -> None:
    """Raises :class:`~sld_jax.errors.ConfigError` when the jitted ``compiled`` called on ``args``
    needs more memory per device than a device of ``mesh`` has (from XLA's memory analysis, before
    the first step).

    Backends that report no memory limit (the CPU) are not checked.
    """
    limit = device_memory_limit(mesh)
    if limit is None:
        return
    analysis = compiled.lower(*args).compile().memory_analysis()
    if analysis is None:
        return
    need = (
        analysis.argument_size_in_bytes
        + analysis.output_size_in_bytes
        + analysis.temp_size_in_bytes
        - analysis.alias_size_in_bytes
    )
    if need > limit:
        fits = max(1, int(num_seeds * limit / need))
        raise ConfigError(
            f"num_seeds={num_seeds} with batch_size={batch_size} needs about "
            f"{need / 2**30:.2f} GiB per device (XLA's memory analysis of the compiled step) but a "
            f"device has {limit / 2**30:.2f} GiB; use --config.num_seeds={fits} or a smaller "
            "batch_size, or more devices."
        )
