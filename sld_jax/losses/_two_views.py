"""Shared plumbing of the two-view objectives: validation, padding masks, teacher targets, terms."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from sld_jax.losses import _checks
from sld_jax.losses.divergences import standardize_logits


def prepare(
    student_weak: jax.Array,
    student_strong: jax.Array | None,
    teacher_weak: jax.Array,
    teacher_strong: jax.Array | None,
    labels: jax.Array,
    mask: jax.Array | None,
) -> tuple[list[tuple[jax.Array, jax.Array]], jax.Array, jax.Array | None]:
    """Validates the views and returns ``([(student, teacher), ...], labels, mask)``.

    The strong view is optional: both ``student_strong`` and ``teacher_strong`` are None, or both
    are arrays. Where ``mask`` is False the logits and labels are replaced by zeros (a select, so
    the gradient into padded rows is exactly 0 and a NaN there cannot leak into the loss).
    """
    if (student_strong is None) != (teacher_strong is None):
        raise ValueError(
            "student_strong and teacher_strong must both be arrays (two views) or both be None (single view)."
        )
    named = [("student_weak", student_weak), ("teacher_weak", teacher_weak)]
    if student_strong is not None:
        named += [("student_strong", student_strong), ("teacher_strong", teacher_strong)]
    for name, x in named:
        _checks.check_logits(name, x)
        _checks.check_same_shape("student_weak", student_weak, name, x)
    _checks.check_mask_array(mask, student_weak.shape[:-1])
    _checks.check_labels(labels, student_weak, "student_weak", mask)
    labels = labels.astype(jnp.int32)
    if mask is not None:
        mask = mask.astype(bool)
        labels = jnp.where(mask, labels, 0)
        named = [(name, jnp.where(mask[..., None], x, jnp.zeros((), x.dtype))) for name, x in named]
    arrays = [x for _, x in named]
    views = [(arrays[0], arrays[1])]
    if len(arrays) == 4:
        views.append((arrays[2], arrays[3]))
    return views, labels, mask


def mask_rows(
    where: jax.Array | None, labels: jax.Array | None, *logits: jax.Array
) -> tuple[jax.Array | None, jax.Array | None, list[jax.Array]]:
    """Validates ``where`` (the per-example shape) and selects away masked rows of a per-example loss.

    Returns ``(where as bool, labels with 0 where masked, logits with zeros where masked)``; the
    caller then selects 0 into the masked outputs. Selecting (not multiplying) keeps a NaN in a
    masked row out of the result and out of the gradient, and lets masked rows carry any label.
    """
    if where is None:
        return None, labels, list(logits)
    _checks.check_mask_array(where, logits[0].shape[:-1])
    keep = where.astype(bool)
    if labels is not None:
        labels = jnp.where(keep, labels, 0)
    return keep, labels, [jnp.where(keep[..., None], x, jnp.zeros((), x.dtype)) for x in logits]


def check_transform(teacher_transform: object) -> None:
    """Raises unless ``teacher_transform`` is None or a callable ``(logits, labels) -> logits``."""
    if teacher_transform is not None and not callable(teacher_transform):
        raise TypeError(
            "teacher_transform must be None or a callable (logits, labels) -> logits, e.g. "
            f"losses.swap_logits or losses.get_teacher_transform(name); got {type(teacher_transform).__name__}."
        )


def teacher_target(
    teacher_logits: jax.Array,
    labels: jax.Array,
    teacher_transform: Callable[[jax.Array, jax.Array], jax.Array] | None,
) -> jax.Array:
    """The gradient-stopped teacher logits, passed through ``teacher_transform`` when given."""
    check_transform(teacher_transform)
    target = jax.lax.stop_gradient(teacher_logits)
    if teacher_transform is not None:
        target = teacher_transform(target, labels)
        if getattr(target, "shape", None) != teacher_logits.shape:
            raise ValueError(
                f"teacher_transform must return logits of shape {teacher_logits.shape}, got "
                f"{getattr(target, 'shape', type(target).__name__)}."
            )
    return target


def standardize_pair(student: jax.Array, teacher: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Z-scores both logit arrays per example (Sun et al. 2024)."""
    return standardize_logits(student), standardize_logits(teacher)


def finish(weighted: dict[str, jax.Array]) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Sums the weighted terms into the loss; the returned terms are gradient-stopped (for logging)."""
    loss = sum(weighted.values())
    terms = {name: jax.lax.stop_gradient(value) for name, value in weighted.items()}
    terms["loss"] = loss
    return loss, terms
