"""Hinton's knowledge distillation (per-example loss and objective) and the plain CE objective."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from sld_jax.losses import _checks, _two_views
from sld_jax.losses.divergences import LogitTransform, cross_entropy, masked_mean, multi_temperature_kd


def kd_loss(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    *,
    temperature: float = 4.0,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""Hinton's distillation loss per example: KL(softmax(t/T) ‖ softmax(s/T)) · T².

    Args:
      student_logits: ``[..., C]`` floating.
      teacher_logits: ``[..., C]`` floating, same shape; gradient-stopped (the teacher is frozen,
        as in every loss of this library).
      temperature: positive Python float.
      where: ``[...]`` bool (optax's convention) or None: False marks a padded or ignored example
        (token), whose loss is exactly 0 with zero gradient, whatever its logits.

    Returns:
      ``[...]`` float32 per-example losses.

    Examples:
      >>> import jax.numpy as jnp
      >>> s = jnp.array([[0., 1., 2.]]); t = jnp.array([[2., 1., 0.]])
      >>> kd_loss(s, s, temperature=4.0)
      Array([0.], dtype=float32)
      >>> kd_loss(s, t, temperature=1.0).round(4)
      Array([1.1504], dtype=float32)

    References:
      Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network", 2015.
    """
    _checks.check_logits("student_logits", student_logits)
    _checks.check_logits("teacher_logits", teacher_logits)
    _checks.check_same_shape("student_logits", student_logits, "teacher_logits", teacher_logits)
    (temperature,) = _checks.check_temperatures((temperature,))
    teacher_logits = jax.lax.stop_gradient(teacher_logits)
    where, _, (student_logits, teacher_logits) = _two_views.mask_rows(
        where, None, student_logits, teacher_logits
    )
    loss = multi_temperature_kd(student_logits, teacher_logits, temperatures=(temperature,))[..., 0]
    return loss if where is None else jnp.where(where, loss, 0.0)


def _ce_and_kd(
    views: list[tuple[jax.Array, jax.Array]],
    labels: jax.Array,
    mask: jax.Array | None,
    teacher_transform: LogitTransform | None,
    logit_standardization: bool,
    per_example_kd: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
) -> tuple[jax.Array, jax.Array]:
    """``(ce, kd)``: the batch-mean CE and KD of each view of :func:`_two_views.prepare`, summed.

    CE uses the raw student logits; ``per_example_kd(student, target, labels)`` gets the student
    logits and the gradient-stopped teacher target after ``teacher_transform``, both z-scored when
    ``logit_standardization`` (a static bool, validated here).
    """
    logit_standardization = _checks.check_static_bool("logit_standardization", logit_standardization)
    ce = jnp.float32(0.0)
    kd = jnp.float32(0.0)
    for s, t in views:
        ce = ce + masked_mean(cross_entropy(s, labels), mask)
        target = _two_views.teacher_target(t, labels, teacher_transform)
        if logit_standardization:
            s, target = _two_views.standardize_pair(s, target)
        kd = kd + masked_mean(per_example_kd(s, target, labels), mask)
    return ce, kd


def kd_objective(
    student_weak: jax.Array,
    student_strong: jax.Array | None,
    teacher_weak: jax.Array,
    teacher_strong: jax.Array | None,
    labels: jax.Array,
    *,
    temperature: float = 4.0,
    ce_weight: float = 0.1,
    kd_weight: float = 0.9,
    teacher_transform: LogitTransform | None = None,
    logit_standardization: bool = False,
    where: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    r"""Hinton's KD objective of one batch (mdistiller's ``KD``: T 4, CE 0.1, KD 0.9).

    .. math:: L = \sum_{v} w_{ce}\,\overline{\mathrm{CE}}(s_v, y)
                 + w_{kd}\,\overline{\mathrm{KL}(\sigma(g(t_v)/T) \,\|\, \sigma(s_v/T))}\,T^2

    summed over the views ``v`` given (weak, and strong unless it is None), with batch means over
    the real examples. ``g`` is ``teacher_transform`` (identity when None; ``swap_logits`` gives
    "KD + swap"). This is vanilla KD, not the SLD repository's ``KD.py`` (which hides both swaps).

    Args:
      student_weak, teacher_weak: ``[B, C]`` logits of the (weak) view.
      student_strong, teacher_strong: ``[B, C]`` logits of the strong view, or both None for the
        single-view recipe of mdistiller.
      labels: ``[B]`` integer labels.
      temperature: positive Python float.
      ce_weight, kd_weight: loss weights.
      teacher_transform: teacher-side logit processor (see :mod:`sld_jax.losses.processing`).
      logit_standardization: z-score student and teacher logits before the softmax
        (Sun et al. 2024; see :func:`standardized_kd_objective`). CE uses the raw logits.
      where: ``[B]`` bool (optax's name), False for padded examples. Any
        leading shape works (``[B, T, C]`` logits with ``[B, T]`` labels and mask, e.g. tokens):
        the means run over the valid entries.

    Returns:
      ``(loss, terms)`` with float32 scalars ``ce``, ``kd`` (both weighted) and ``loss``.

    Examples:
      >>> import jax.numpy as jnp
      >>> s = jnp.zeros((2, 3)); y = jnp.array([0, 1])
      >>> loss, terms = kd_objective(s, None, s, None, y)
      >>> {k: round(float(v), 4) for k, v in terms.items()}
      {'ce': 0.1099, 'kd': 0.0, 'loss': 0.1099}
    """
    temperature = _checks.check_temperatures((temperature,))
    views, labels, mask = _two_views.prepare(
        student_weak, student_strong, teacher_weak, teacher_strong, labels, where
    )

    def per_example_kd(s, target, labels):
        return multi_temperature_kd(s, target, temperatures=temperature)[..., 0]

    ce, kd = _ce_and_kd(views, labels, mask, teacher_transform, logit_standardization, per_example_kd)
    return _two_views.finish({"ce": ce_weight * ce, "kd": kd_weight * kd})


def ce_objective(
    student_weak: jax.Array,
    student_strong: jax.Array | None,
    teacher_weak: None,
    teacher_strong: None,
    labels: jax.Array,
    *,
    ce_weight: float = 1.0,
    where: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    r"""Plain cross-entropy training (no teacher): :math:`L = w_{ce} \sum_v \overline{\mathrm{CE}}(s_v, y)`.

    The objective of the ``vanilla`` method, in the two-view call style of the other objectives
    (the teacher arguments must be None).

    Args:
      student_weak: ``[B, C]`` logits; student_strong: ``[B, C]`` logits of a second view, or None.
      teacher_weak, teacher_strong: must be None.
      labels: ``[B]`` integer labels.
      ce_weight: the loss weight.
      where: ``[B]`` bool (optax's name), False for padded examples. Any
        leading shape works, as in :func:`kd_objective`.

    Returns:
      ``(loss, terms)`` with float32 scalars ``ce`` (weighted) and ``loss``.

    Examples:
      >>> import jax.numpy as jnp
      >>> loss, terms = ce_objective(jnp.zeros((2, 4)), None, None, None, jnp.array([0, 3]))
      >>> round(float(loss), 4), sorted(terms)
      (1.3863, ['ce', 'loss'])
    """
    if teacher_weak is not None or teacher_strong is not None:
        raise ValueError("ce_objective trains without a teacher: pass None for the teacher logits.")
    strong = student_strong
    mask = where
    views, labels, mask = _two_views.prepare(student_weak, strong, student_weak, strong, labels, mask)
    ce = jnp.float32(0.0)
    for s, _ in views:
        ce = ce + masked_mean(cross_entropy(s, labels), mask)
    return _two_views.finish({"ce": ce_weight * ce})
