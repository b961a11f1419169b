"""Swapped Logit Distillation: the per-example loss and the reference two-view objective."""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from sld_jax.losses import _checks
from sld_jax.losses.kd import cross_entropy, masked_mean, multi_temperature_kd
from sld_jax.losses.swap import swap_logits

#: The reference's "prediction augmentation" temperatures.
DEFAULT_TEMPERATURES = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)

#: A teacher-side logit processor: ``(logits [..., C], labels [...]) -> logits [..., C]``.
LogitTransform = Callable[[jax.Array, jax.Array], jax.Array]


def sld_loss_per_temperature(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    labels: jax.Array,
    *,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    student_swap: bool,
    stop_gradient_pseudo_teacher: bool = False,
    teacher_transform: LogitTransform | None = swap_logits,
) -> jax.Array:
    """Like :func:`sld_loss`, but keeps the temperature axis: returns ``[..., K]`` float32."""
    _checks.check_logits("student_logits", student_logits)
    _checks.check_logits("teacher_logits", teacher_logits)
    _checks.check_same_shape("student_logits", student_logits, "teacher_logits", teacher_logits)
    _checks.check_labels(labels, student_logits, "student_logits")
    if not isinstance(student_swap, bool):
        raise TypeError(
            "student_swap must be a Python bool (it is static under jit); pass e.g. "
            f"student_swap=bool(epoch > gamma), got {type(student_swap).__name__}."
        )
    temps = _checks.check_temperatures(temperatures)
    teacher_target = jax.lax.stop_gradient(teacher_logits)
    if teacher_transform is not None:
        teacher_target = teacher_transform(teacher_target, labels)
    terms = multi_temperature_kd(student_logits, teacher_target, temps)
    if student_swap:
        pseudo_teacher = swap_logits(student_logits, labels)
        if stop_gradient_pseudo_teacher:
            pseudo_teacher = jax.lax.stop_gradient(pseudo_teacher)
        terms = terms + multi_temperature_kd(student_logits, pseudo_teacher, temps)
    return terms


def sld_loss(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    labels: jax.Array,
    *,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    student_swap: bool,
    stop_gradient_pseudo_teacher: bool = False,
    teacher_transform: LogitTransform | None = swap_logits,
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

    Returns:
      ``[...]`` float32 per-example losses (shape ``labels.shape``).

    Examples:
      >>> import jax.numpy as jnp
      >>> s = jnp.array([[2., 0., 0.]]); t = jnp.array([[0., 3., 0.]])
      >>> sld_loss(s, t, jnp.array([0]), student_swap=False).shape
      (1,)

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
        ),
        axis=-1,
    )


def student_swap_active(epoch: int, gamma: int) -> bool:
    """The reference's loss schedule: the pseudo-teacher term is on when ``epoch > gamma``.

    Epochs are counted from 1, so with ``gamma=150`` epoch 151 is the first with the term.
    """
    if isinstance(epoch, jax.core.Tracer) or isinstance(gamma, jax.core.Tracer):
        raise TypeError(
            "epoch and gamma must be Python ints (the γ gate is static); decide on the host with "
            "student_swap_active(epoch, gamma) and pass student_swap= to the jitted function."
        )
    return bool(int(epoch) > int(gamma))


def sld_objective(
    student_weak: jax.Array,
    student_strong: jax.Array,
    teacher_weak: jax.Array,
    teacher_strong: jax.Array,
    labels: jax.Array,
    *,
    student_swap: bool | None = None,
    epoch: int | None = None,
    gamma: int = 150,
    ce_weight: float = 0.1,
    kd_weight: float = 0.9,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    mask: jax.Array | None = None,
    stop_gradient_pseudo_teacher: bool = False,
    teacher_transform: LogitTransform | None = swap_logits,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    r"""The reference SLD objective of one batch with a weak and a strong view.

    .. math::
        L = w_{ce}\,[\mathrm{CE}(s_w) + \mathrm{CE}(s_s)]
          + w_{kd}\,[\overline{\ell}(s_w, t_w) + \overline{\ell}(s_s, t_s)]

    where :math:`\overline{\ell}` is the batch mean of :func:`sld_loss`. Either pass
    ``student_swap`` directly, or ``epoch`` (counted from 1) and ``gamma``: the pseudo-teacher
    term is on when ``epoch > gamma``. Both must be static (Python values).

    Args:
      student_weak, student_strong: ``[B, C]`` student logits of the weak and strong views.
      teacher_weak, teacher_strong: ``[B, C]`` teacher logits of the same views.
      labels: ``[B]`` integer labels.
      student_swap: static bool; mutually exclusive with ``epoch``.
      epoch: static int, counted from 1.
      gamma: static int, the epoch after which the pseudo-teacher term switches on.
      ce_weight, kd_weight: loss weights (reference: 0.1 and 0.9).
      temperatures: static tuple of temperatures.
      mask: ``[B]`` bool (or 0/1), False for padded examples; means are over real examples.
      stop_gradient_pseudo_teacher: detach the pseudo-teacher.
      teacher_transform: the teacher-side logit processor (see :func:`sld_loss`).

    Returns:
      ``(loss, terms)``: the float32 scalar and a dict with ``ce`` (weighted), ``kd`` (weighted),
      ``loss``, ``teacher_swap_fraction`` and ``student_swap_fraction`` (fraction of real examples
      whose weak and strong rows were swapped, over both views).
    """
    if (student_swap is None) == (epoch is None):
        raise TypeError("pass exactly one of student_swap= or epoch= (with gamma=) to sld_objective.")
    if student_swap is None:
        student_swap = student_swap_active(epoch, gamma)
    for name, x in (("student_strong", student_strong), ("teacher_weak", teacher_weak),
                    ("teacher_strong", teacher_strong)):
        _checks.check_logits(name, x)
        _checks.check_same_shape("student_weak", student_weak, name, x)
    _checks.check_mask(mask, labels.shape)
    kwargs = dict(
        temperatures=temperatures,
        student_swap=student_swap,
        stop_gradient_pseudo_teacher=stop_gradient_pseudo_teacher,
        teacher_transform=teacher_transform,
    )
    ce = masked_mean(cross_entropy(student_weak, labels), mask) + masked_mean(
        cross_entropy(student_strong, labels), mask
    )
    kd = masked_mean(sld_loss(student_weak, teacher_weak, labels, **kwargs), mask) + masked_mean(
        sld_loss(student_strong, teacher_strong, labels, **kwargs), mask
    )
    ce = ce_weight * ce
    kd = kd_weight * kd
    loss = ce + kd

    def fired(logits):
        return (jnp.argmax(logits, -1) != labels).astype(jnp.float32)

    terms = {
        "ce": ce,
        "kd": kd,
        "loss": loss,
        "teacher_swap_fraction": 0.5 * (masked_mean(fired(teacher_weak), mask)
                                        + masked_mean(fired(teacher_strong), mask)),
        "student_swap_fraction": 0.5 * (masked_mean(fired(student_weak), mask)
                                        + masked_mean(fired(student_strong), mask)),
    }
    return loss, jax.tree.map(jax.lax.stop_gradient, terms) | {"loss": loss}
