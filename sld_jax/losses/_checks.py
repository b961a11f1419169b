"""Input validation shared by the losses, with one-sentence fix-it messages.

Checks run at trace time on static shapes and dtypes, so a mistake fails before compilation.
Label ranges are checked only when the labels are concrete (outside ``jit``): inside ``jit`` a
range check would need a host sync, which a loss must never do.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def check_logits(name: str, logits: jax.Array) -> None:
    """Raises if ``logits`` is not a floating array of rank >= 1 with at least one class."""
    if not hasattr(logits, "shape") or not hasattr(logits, "dtype"):
        raise TypeError(f"{name} must be an array of shape [..., num_classes], got {type(logits).__name__}.")
    if logits.ndim < 1 or logits.shape[-1] < 1:
        raise ValueError(
            f"{name} must have shape [..., num_classes] with num_classes >= 1, got shape {logits.shape}."
        )
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        raise TypeError(
            f"{name} must be floating point (float32 or bfloat16), got {logits.dtype}; cast it with .astype(jnp.float32)."
        )


def check_same_shape(a_name: str, a: jax.Array, b_name: str, b: jax.Array) -> None:
    """Raises unless two logit arrays have identical shapes."""
    if a.shape != b.shape:
        raise ValueError(
            f"{a_name} and {b_name} must have the same shape [..., num_classes], got {a.shape} and {b.shape}."
        )


def check_labels(
    labels: jax.Array, logits: jax.Array, logits_name: str = "logits", mask: jax.Array | None = None
) -> None:
    """Raises unless ``labels`` are integers of shape ``logits.shape[:-1]`` within [0, num_classes).

    The range is checked only when the labels are concrete (outside ``jit``), and only where
    ``mask`` (if given and concrete) is true, so padded examples may carry any label.
    """
    if not hasattr(labels, "shape") or not hasattr(labels, "dtype"):
        raise TypeError(f"labels must be an integer array, got {type(labels).__name__}.")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(
            f"labels must be integer class indices (not one-hot or float), got dtype {labels.dtype}; "
            "pass jnp.argmax(one_hot, -1) or .astype(jnp.int32)."
        )
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"labels must have shape {logits.shape[:-1]} ({logits_name}.shape[:-1]), got {labels.shape}."
        )
    if isinstance(labels, jax.core.Tracer) or not labels.size:
        return
    values = np.asarray(labels)
    num_classes = logits.shape[-1]
    out_of_range = (values < 0) | (values >= num_classes)
    if mask is not None and not isinstance(mask, jax.core.Tracer):
        out_of_range &= np.asarray(mask).astype(bool)
    bad = np.flatnonzero(out_of_range)
    if bad.size:
        raise ValueError(
            f"labels must lie in [0, {num_classes}); flat index {int(bad[0])} holds "
            f"{int(values.reshape(-1)[bad[0]])}. Check the dataset's class count."
        )


def check_temperatures(temperatures: Sequence[float]) -> tuple[float, ...]:
    """Returns the temperatures as a tuple of Python floats; raises if empty or non-positive."""
    try:
        temps = tuple(float(t) for t in temperatures)
    except TypeError:
        temps = (float(temperatures),)  # a single number
    if not temps:
        raise ValueError("temperatures must name at least one temperature, e.g. (1., 2., 3., 4., 5., 6.).")
    if any(not np.isfinite(t) or t <= 0 for t in temps):
        raise ValueError(f"temperatures must be positive and finite, got {temps}.")
    return temps


def check_mask(mask: jax.Array | None, batch_shape: tuple[int, ...]) -> None:
    """Raises unless ``mask`` is None or has the per-example shape ``batch_shape``."""
    if mask is not None and tuple(mask.shape) != tuple(batch_shape):
        raise ValueError(
            f"mask must be per example with shape {batch_shape} (labels.shape), got {tuple(mask.shape)}."
        )


def as_float32(x: jax.Array) -> jax.Array:
    """Upcasts bf16/fp16 to float32 for reductions; leaves float32/float64 unchanged."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def check_static_bool(name: str, value: object) -> bool:
    """Returns ``value`` if it is a Python bool (a static switch under jit); raises otherwise."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"{name} must be a Python bool (it is static under jit), got {type(value).__name__}; "
            f"pass {name}=True or {name}=False."
        )
    return bool(value)


def check_static_number(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Returns ``value`` as a Python float after checking it is a concrete number within bounds."""
    if isinstance(value, jax.core.Tracer):
        raise TypeError(
            f"{name} must be a concrete Python number (a static hyper-parameter), not a traced array."
        )
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}.") from None
    if not np.isfinite(number):
        raise ValueError(f"{name} must be finite, got {number}.")
    too_low = low is not None and (number < low if low_inclusive else number <= low)
    too_high = high is not None and (number > high if high_inclusive else number >= high)
    if too_low or too_high:
        left = "[" if low_inclusive else "("
        right = "]" if high_inclusive else ")"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ValueError(f"{name} must lie in {left}{lo}, {hi}{right}, got {number:g}.")
    return number


def check_num_classes(name: str, logits: jax.Array, minimum: int, why: str) -> None:
    """Raises unless the class axis of ``logits`` has at least ``minimum`` entries."""
    if logits.shape[-1] < minimum:
        raise ValueError(f"{name} must have at least {minimum} classes ({why}), got shape {logits.shape}.")


def check_mask_array(mask: jax.Array | None, batch_shape: tuple[int, ...]) -> None:
    """Like :func:`check_mask`, also requiring an array with a bool, integer or floating dtype."""
    if mask is None:
        return
    if not hasattr(mask, "shape") or not hasattr(mask, "dtype"):
        raise TypeError(
            f"mask must be an array of shape {batch_shape} (True for real examples), got {type(mask).__name__}."
        )
    check_mask(mask, batch_shape)


def check_batch_matrix(name: str, logits: jax.Array) -> None:
    """Raises unless ``logits`` is a ``[B, C]`` matrix (losses that couple examples need one batch axis)."""
    if logits.ndim != 2:
        raise ValueError(
            f"{name} must have shape [batch, num_classes] (rank 2) for batch- and class-level terms, "
            f"got shape {logits.shape}; reshape leading axes into one batch axis."
        )
