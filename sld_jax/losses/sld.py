"""Swapped Logit Distillation: the per-example loss and the reference two-view objective."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sld_jax.losses import _checks, _two_views
from sld_jax.losses.divergences import LogitTransform, cross_entropy, masked_mean, tempered_kl_and_lse
from sld_jax.losses.swap import swap_logits

#: The reference's "prediction augmentation" temperatures.
DEFAULT_TEMPERATURES = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)


def _sld_terms(
    student_logits: jax.Array,
    target_logits: jax.Array,
    labels: jax.Array,
    temps: tuple[float, ...],
    student_swap: bool,
    stop_gradient_pseudo_teacher: bool,
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Per-temperature SLD terms ``[..., K]``, the student's CE ``[...]`` and its argmax.

    The argmax ``[...]`` (first maximal index) is returned when ``student_swap`` computed it,
    else None.

    The pseudo-teacher term needs no second softmax: ``softmax(swap(s)/T)`` is ``q`` with the
    entries of the label ``y`` and the argmax ``m`` exchanged, so every other entry of the KL
    cancels and

        KL(q∘swap ‖ q) = (q_y - q_m)(log q_y - log q_m) = (q_y - q_m)(s_y - s_m) / T,

    which is 0 where ``m == y``. It is an identity in ``s`` (for the locally fixed ``m``), so its
    gradient is the reference's gradient through the swap; with ``stop_gradient_pseudo_teacher``
    the factor ``q_y - q_m`` (the target's side) is detached, which gives the detached gradient
    ``(q - q∘swap) / T``. The CE is ``-log q_y`` at T = 1 when 1 is among the temperatures.
    """
    s = _checks.as_float32(student_logits)
    t = _checks.as_float32(target_logits)
    temp_arr = jnp.asarray(temps, jnp.float32)
    picks = labels[..., None]
    top = None
    if student_swap:
        # First maximal index (as jnp.argmax), from the row maximum: an integer min-reduction.
        row_max = jnp.max(s, axis=-1, keepdims=True)
        classes = jnp.arange(s.shape[-1], dtype=jnp.int32)
        top = jax.lax.stop_gradient(jnp.min(jnp.where(s == row_max, classes, s.shape[-1]), axis=-1))
        picks = jnp.concatenate([picks, top[..., None]], axis=-1)
    kl, lse, row_max, picked = tempered_kl_and_lse(s, t, temps, picks)
    terms = kl * jnp.square(temp_arr)
    s_label = picked[..., :1]
    if student_swap:
        s_top = picked[..., 1:]  # == row_max, with the gradient routed to the first argmax
        inv = jnp.asarray(1.0 / np.asarray(temps, np.float64), jnp.float32)
        log_q_label = (s_label - row_max) * inv - lse  # [..., K]
        log_q_top = (s_top - row_max) * inv - lse
        gap = jnp.exp(log_q_label) - jnp.exp(log_q_top)
        if stop_gradient_pseudo_teacher:
            gap = jax.lax.stop_gradient(gap)
        terms = terms + gap * (s_label - s_top) * temp_arr  # T^2 * (s_y - s_m) / T
    if 1.0 in temps:
        k = temps.index(1.0)
        ce = lse[..., k] - (s_label - row_max)[..., 0]
    else:
        ce = cross_entropy(s, labels)
    return terms, ce, top


def _teacher_and_swap_args(
    teacher_logits, labels, teacher_transform, student_swap, stop_gradient_pseudo_teacher
):
    """Validates the static switches; returns ``(teacher target, student_swap, detach)``."""
    if not isinstance(student_swap, (bool, np.bool_)):
        raise TypeError(
            "student_swap must be a Python bool (it is static under jit); pass e.g. "
            f"student_swap=bool(epoch > gamma), got {type(student_swap).__name__}."
        )
    sg = _checks.check_static_bool("stop_gradient_pseudo_teacher", stop_gradient_pseudo_teacher)
    target = _two_views.teacher_target(teacher_logits, labels, teacher_transform)
    return target, bool(student_swap), sg


def sld_loss_per_temperature(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    labels: jax.Array,
    *,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    student_swap: bool,
    stop_gradient_pseudo_teacher: bool = False,
    teacher_transform: LogitTransform | None = swap_logits,
    where: jax.Array | None = None,
) -> jax.Array:
    """Like :func:`sld_loss`, but keeps the temperature axis: returns ``[..., K]`` float32.

    Where ``where`` is False the row is ``0`` (see :func:`sld_loss`).

    Examples:
      >>> import jax.numpy as jnp
      >>> s = jnp.array([[2., 0., 0.]]); t = jnp.array([[0., 3., 0.]])
      >>> sld_loss_per_temperature(s, t, jnp.array([0]), student_swap=True,
      ...                          temperatures=(1., 2.)).shape
      (1, 2)
    """
    _checks.check_logits("student_logits", student_logits)
    _checks.check_logits("teacher_logits", teacher_logits)
    _checks.check_same_shape("student_logits", student_logits, "teacher_logits", teacher_logits)
    _checks.check_mask_array(where, student_logits.shape[:-1])
    _checks.check_labels(labels, student_logits, "student_logits", where)
    temps = _checks.check_temperatures(temperatures)
    where, labels, (student_logits, teacher_logits) = _two_views.mask_rows(
        where, labels.astype(jnp.int32), student_logits, teacher_logits
    )
    target, student_swap, sg = _teacher_and_swap_args(
        teacher_logits, labels, teacher_transform, student_swap, stop_gradient_pseudo_teacher
    )
    terms, _, _ = _sld_terms(student_logits, target, labels, temps, student_swap, sg)
    return terms if where is None else jnp.where(where[..., None], terms, 0.0)


def sld_loss(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    labels: jax.Array,
    *,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    student_swap: bool,
    stop_gradient_pseudo_teacher: bool = False,
    teacher_transform: LogitTransform | None = swap_logits,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""Per-example Swapped Logit Distillation loss (no CE, no loss weight, no batch mean).

    .. math::
        \ell = \sum_{T} T^2 \Big[\mathrm{KL}\big(\sigma(\mathrm{swap}(t)/T) \,\|\, \sigma(s/T)\big)
               + [\text{student\_swap}]\, \mathrm{KL}\big(\sigma(\mathrm{swap}(s)/T) \,\|\, \sigma(s/T)\big)\Big]

    The teacher is never differentiated. The pseudo-teacher ``swap(s)`` is *not* detached by
    default, exactly as the reference: its gradient flows too. ``stop_gradient_pseudo_teacher``
    gives the detached variant.

    Args:
      student_logits: ``[..., C]`` floating (bf16 accepted; reduced in float32).
      teacher_logits: ``[..., C]`` floating, same shape.
      labels: ``[...]`` integer labels in ``[0, C)``.
      temperatures: K positive Python floats (static); default ``(1, ..., 6)``.
      student_swap: Python bool (static): add the pseudo-teacher term (after epoch γ).
      stop_gradient_pseudo_teacher: detach ``swap(s)`` in the pseudo-teacher term.
      teacher_transform: the teacher-side logit processor, ``swap_logits`` by default; any of the
        ablation variants in :mod:`sld_jax.losses.processing`, or None for plain multi-T KD.
      where: ``[...]`` bool (shape ``labels.shape``; optax's convention) or None: False marks a
        padded or ignored example (token), whose loss is exactly 0 with zero gradient, whatever
        its logits (NaN included) and label (e.g. an ignore index of -100).

    Returns:
      ``[...]`` float32 per-example losses (shape ``labels.shape``).

    Examples:
      >>> import jax.numpy as jnp
      >>> s = jnp.array([[2., 0., 0.]]); t = jnp.array([[0., 3., 0.]])
      >>> y = jnp.array([1])  # the teacher is right, the student is not
      >>> sld_loss(s, t, y, student_swap=False).round(4), sld_loss(s, t, y, student_swap=True).round(4)
      (Array([13.1795], dtype=float32), Array([21.6665], dtype=float32))

    References:
      Limantoro et al., "Swapped Logit Distillation", 2025 (arXiv:2504.20108).
    """
    return jnp.sum(
        sld_loss_per_temperature(
            student_logits,
            teacher_logits,
            labels,
            temperatures=temperatures,
            student_swap=student_swap,
            stop_gradient_pseudo_teacher=stop_gradient_pseudo_teacher,
            teacher_transform=teacher_transform,
            where=where,
        ),
        axis=-1,
    )


def pseudo_teacher_loss(
    student_logits: jax.Array,
    labels: jax.Array,
    *,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    stop_gradient_pseudo_teacher: bool = False,
) -> jax.Array:
    r"""Per-example pseudo-teacher term of SLD alone: :math:`\sum_T T^2\,\mathrm{KL}(\sigma(\mathrm{swap}(s)/T) \| \sigma(s/T))`.

    This is what "+ SLD" adds to another objective (DKD + SLD, MLKD + SLD) once ``epoch > γ``.
    It is :func:`sld_loss` with the student as its own (gradient-stopped) teacher and no teacher
    transform: that teacher term is KL(sg(s) ‖ s) = 0 with a zero gradient, so only the
    pseudo-teacher term remains, computed by the same fused kernel.

    Args:
      student_logits: ``[..., C]`` floating.
      labels: ``[...]`` integer labels in ``[0, C)``.
      temperatures: K positive Python floats (static).
      stop_gradient_pseudo_teacher: detach ``swap(s)``.

    Returns:
      ``[...]`` float32 per-example values.

    Examples:
      >>> import jax.numpy as jnp
      >>> pseudo_teacher_loss(jnp.array([[0., 2.]]), jnp.array([1]))  # argmax == label: no swap
      Array([0.], dtype=float32)
    """
    return sld_loss(
        student_logits,
        student_logits,
        labels,
        temperatures=temperatures,
        student_swap=True,
        stop_gradient_pseudo_teacher=stop_gradient_pseudo_teacher,
        teacher_transform=None,
    )


def student_swap_active(epoch: int, *, gamma: int) -> bool:
    """The γ gate of the reference's loss schedule: the pseudo-teacher term is on when ``epoch > gamma``.

    The one helper for the gate: every loss takes its result as ``student_swap=`` (a static bool).
    Epochs are counted from 1, so with ``gamma=150`` epoch 151 is the first with the term.

    >>> student_swap_active(150, gamma=150), student_swap_active(151, gamma=150)
    (False, True)
    """
    if isinstance(epoch, jax.core.Tracer) or isinstance(gamma, jax.core.Tracer):
        raise TypeError(
            "epoch and gamma must be Python ints (the γ gate is static); decide on the host with "
            "student_swap_active(epoch, gamma=gamma) and pass student_swap= to the jitted function."
        )
    return bool(int(epoch) > int(gamma))


def sld_objective(
    student_weak: jax.Array,
    student_strong: jax.Array,
    teacher_weak: jax.Array,
    teacher_strong: jax.Array,
    labels: jax.Array,
    *,
    student_swap: bool,
    ce_weight: float = 0.1,
    kd_weight: float = 0.9,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    where: jax.Array | None = None,
    stop_gradient_pseudo_teacher: bool = False,
    teacher_transform: LogitTransform | None = swap_logits,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    r"""The reference SLD objective of one batch with a weak and a strong view.

    .. math::
        L = w_{ce}\,[\mathrm{CE}(s_w) + \mathrm{CE}(s_s)]
          + w_{kd}\,[\overline{\ell}(s_w, t_w) + \overline{\ell}(s_s, t_s)]

    where :math:`\overline{\ell}` is the batch mean of :func:`sld_loss`. ``student_swap`` is the
    γ gate, a static Python bool decided on the host: ``student_swap_active(epoch, gamma=γ)`` (the
    pseudo-teacher term is on when ``epoch > γ``, epochs counted from 1). The teacher's logits are
    gradient-stopped; the pseudo-teacher ``swap(s)`` keeps its gradient unless
    ``stop_gradient_pseudo_teacher``.

    Args:
      student_weak, student_strong: ``[B, C]`` student logits of the weak and strong views.
      teacher_weak, teacher_strong: ``[B, C]`` teacher logits of the same views. The strong
        pair may be None (both) for a single-view objective.
      labels: ``[B]`` integer labels.
      student_swap: static bool, the γ gate (see above).
      ce_weight, kd_weight: loss weights (reference: 0.1 and 0.9).
      temperatures: static tuple of temperatures.
      where: ``[B]`` bool (optax's name), False for padded examples. Any
        leading shape works (``[B, T, C]`` logits with ``[B, T]`` labels and mask, e.g. tokens):
        the means run over the valid entries.
      stop_gradient_pseudo_teacher: detach the pseudo-teacher.
      teacher_transform: the teacher-side logit processor (see :func:`sld_loss`).

    Returns:
      ``(loss, terms)``: the float32 scalar and a dict with ``ce`` (weighted), ``kd`` (weighted),
      ``loss``, ``teacher_swap_fraction`` and ``student_swap_fraction`` (fraction of real examples
      whose weak and strong rows were swapped, over both views).

    Examples:
      >>> import jax.numpy as jnp
      >>> s = jnp.array([[2., 0., 0.], [0., 1., 0.]]); t = jnp.array([[0., 3., 0.], [0., 2., 0.]])
      >>> swap = student_swap_active(151, gamma=150)
      >>> loss, terms = sld_objective(s, s, t, t, jnp.array([0, 1]), student_swap=swap)
      >>> round(float(loss), 4), float(terms["teacher_swap_fraction"])
      (1.3146, 0.5)
    """
    views, labels, mask = _two_views.prepare(
        student_weak, student_strong, teacher_weak, teacher_strong, labels, where
    )
    temps = _checks.check_temperatures(temperatures)
    ce = jnp.float32(0.0)
    kd = jnp.float32(0.0)
    teacher_fired = jnp.float32(0.0)
    student_fired = jnp.float32(0.0)
    for student, teacher in views:
        target, swap_on, sg = _teacher_and_swap_args(
            teacher, labels, teacher_transform, student_swap, stop_gradient_pseudo_teacher
        )
        terms, ce_view, student_top = _sld_terms(student, target, labels, temps, swap_on, sg)
        ce = ce + masked_mean(ce_view, mask)
        kd = kd + masked_mean(jnp.sum(terms, axis=-1), mask)
        if student_top is None:
            student_top = jnp.argmax(student, -1)
        teacher_fired = teacher_fired + masked_mean(jnp.argmax(teacher, -1) != labels, mask)
        student_fired = student_fired + masked_mean(student_top != labels, mask)
    loss, terms = _two_views.finish({"ce": ce_weight * ce, "kd": kd_weight * kd})
    terms["teacher_swap_fraction"] = jax.lax.stop_gradient(teacher_fired / len(views))
    terms["student_swap_fraction"] = jax.lax.stop_gradient(student_fired / len(views))
    return loss, terms
