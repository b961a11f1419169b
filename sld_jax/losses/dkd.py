"""Decoupled Knowledge Distillation (Zhao et al. 2022), per example, composable with the swap."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sld_jax.losses import _checks, _two_views
from sld_jax.losses.divergences import LogitTransform
from sld_jax.losses.kd import _ce_and_kd


def _binary_log_probs(z: jax.Array, is_label: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(log p_label, log p_other, log_softmax over non-target classes)`` of logits ``z``, in log space."""
    lse_all = jax.nn.logsumexp(z, axis=-1)
    # Exclude the target with -inf (not a where= mask): its exp must not overflow, even unused,
    # or the backward pass would multiply inf by a zero cotangent.
    lse_other = jax.nn.logsumexp(jnp.where(is_label, -jnp.inf, z), axis=-1)
    z_label = jnp.sum(jnp.where(is_label, z, 0.0), axis=-1)
    log_non_target = z - lse_other[..., None]  # meaningful off the label only
    return z_label - lse_all, lse_other - lse_all, log_non_target


def _xlogy_kl(p: jax.Array, log_p: jax.Array, log_q: jax.Array, keep: jax.Array | bool = True) -> jax.Array:
    """Sum over the last axis of ``p (log p - log q)`` with 0 where ``p == 0`` or ``keep`` is False."""
    return jnp.sum(jnp.where(keep & (p > 0), p * (log_p - log_q), 0.0), axis=-1)


def dkd_loss(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    labels: jax.Array,
    *,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 4.0,
    teacher_transform: LogitTransform | None = None,
) -> jax.Array:
    r"""Per-example DKD: :math:`\alpha\,\mathrm{TCKD} + \beta\,\mathrm{NCKD}`, each times T².

    With :math:`p = \sigma(t/T)`, :math:`q = \sigma(s/T)` and the label :math:`y`:

    .. math::
        \mathrm{TCKD} &= \mathrm{KL}\big([p_y, 1 - p_y] \,\|\, [q_y, 1 - q_y]\big) \\
        \mathrm{NCKD} &= \mathrm{KL}\big(\hat p \,\|\, \hat q\big), \quad
            \hat p_c = \frac{p_c}{1 - p_y} \ (c \ne y)

    The reference forms ``log`` of the binary probabilities and removes the target class by
    subtracting 1000 from its logit; here both are computed in log space with the target excluded
    exactly, which agrees with the reference to float32 precision on ordinary logits and stays
    finite on extreme ones. The batch mean of this value is mdistiller's ``dkd_loss``.

    Args:
      student_logits: ``[..., C]`` floating, C >= 2.
      teacher_logits: ``[..., C]`` floating, same shape (gradient-stopped).
      labels: ``[...]`` integer labels.
      alpha, beta: weights of TCKD and NCKD (CIFAR-100: α 1, β 8; 2 or 6 for some pairs).
      temperature: positive Python float (4).
      teacher_transform: teacher-side processor applied before the split ("DKD + swap").

    Returns:
      ``[...]`` float32 per-example losses.

    Examples:
      >>> import jax.numpy as jnp
      >>> z = jnp.array([[3., 1., 0.]])
      >>> dkd_loss(z, z, jnp.array([0]))
      Array([0.], dtype=float32)

    References:
      Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022.
    """
    _checks.check_logits("student_logits", student_logits)
    _checks.check_logits("teacher_logits", teacher_logits)
    _checks.check_same_shape("student_logits", student_logits, "teacher_logits", teacher_logits)
    _checks.check_labels(labels, student_logits, "student_logits")
    _checks.check_num_classes("student_logits", student_logits, 2, "DKD splits off the target class")
    alpha = _checks.check_static_number("alpha", alpha)
    beta = _checks.check_static_number("beta", beta)
    (temperature,) = _checks.check_temperatures((temperature,))
    labels = labels.astype(jnp.int32)
    target = _two_views.teacher_target(teacher_logits, labels, teacher_transform)
    s = _checks.as_float32(student_logits) / temperature
    t = _checks.as_float32(target) / temperature
    is_label = jnp.arange(s.shape[-1], dtype=jnp.int32) == labels[..., None]
    s_gt, s_other, s_nt = _binary_log_probs(s, is_label)
    t_gt, t_other, t_nt = _binary_log_probs(t, is_label)
    t_binary = jnp.stack([t_gt, t_other], axis=-1)
    s_binary = jnp.stack([s_gt, s_other], axis=-1)
    tckd = _xlogy_kl(jnp.exp(t_binary), t_binary, s_binary)
    nckd = _xlogy_kl(jnp.where(is_label, 0.0, jnp.exp(t_nt)), t_nt, s_nt, ~is_label)
    return (alpha * tckd + beta * nckd) * temperature**2


def dkd_warmup_factor(epoch: int | float, *, warmup: int | float = 20) -> float:
    """mdistiller's DKD warm-up on the host: ``min(epoch / warmup, 1)`` (epochs counted from 1).

    Pass the result to :func:`dkd_objective` as an argument of the jitted step (an array or a
    traced scalar), so that changing it each epoch does not retrace.

    Examples:
      >>> dkd_warmup_factor(5, warmup=20), dkd_warmup_factor(40, warmup=20)
      (0.25, 1.0)
    """
    warmup = _checks.check_static_number("warmup", warmup, low=0.0, low_inclusive=False)
    return min(float(epoch) / warmup, 1.0)


def dkd_objective(
    student_weak: jax.Array,
    student_strong: jax.Array | None,
    teacher_weak: jax.Array,
    teacher_strong: jax.Array | None,
    labels: jax.Array,
    *,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 4.0,
    warmup_factor: float | jax.Array | None = None,
    epoch: int | jax.Array | None = None,
    warmup: float = 20.0,
    ce_weight: float = 1.0,
    teacher_transform: LogitTransform | None = None,
    logit_standardization: bool = False,
    where: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    r"""mdistiller's DKD objective: :math:`w_{ce}\,\mathrm{CE} + \text{warmup}\cdot\overline{\mathrm{DKD}}`.

    Summed over the views given (the reference DKD uses one view: pass both strong arrays as None;
    passing the weak view twice would count it twice). The warm-up factor is either given as
    ``warmup_factor``, or computed as ``min(epoch / warmup, 1)`` from ``epoch`` (counted from 1;
    a Python int or a traced scalar), or 1 when neither is given.

    Args:
      student_weak, teacher_weak: ``[B, C]`` logits.
      student_strong, teacher_strong: ``[B, C]`` logits of a second view, or both None.
      labels: ``[B]`` integer labels.
      alpha, beta, temperature: see :func:`dkd_loss`.
      warmup_factor: ``min(epoch / warmup, 1)`` (see :func:`dkd_warmup_factor`); a float or a
        float32 scalar array (traced: no retrace when it changes). Exclusive with ``epoch``.
      epoch: the epoch (from 1), to compute the factor here; pass it as a jit argument (an
        array) so that it does not retrace each epoch.
      warmup: warm-up length in epochs (mdistiller: 20), used with ``epoch``.
      ce_weight: CE weight (mdistiller: 1.0).
      teacher_transform: teacher-side processor ("DKD + swap" with ``swap_logits``).
      logit_standardization: z-score both logits before DKD (Sun et al. 2024).
      where: ``[B]`` bool (optax's name), False for padded examples. Any
        leading shape works (``[B, T, C]`` logits with ``[B, T]`` labels and mask, e.g. tokens):
        the means run over the valid entries.

    Returns:
      ``(loss, terms)`` with ``ce``, ``kd`` (weighted, warm-up included) and ``loss``.

    Examples:
      >>> import jax.numpy as jnp
      >>> z = jnp.array([[3., 1., 0.]]); y = jnp.array([0])
      >>> loss, terms = dkd_objective(z, None, z, None, y, epoch=5, warmup=20)
      >>> float(terms["kd"])
      0.0
    """
    if warmup_factor is not None and epoch is not None:
        raise TypeError("pass at most one of warmup_factor= or epoch= (with warmup=) to dkd_objective.")
    warmup = _checks.check_static_number("warmup", warmup, low=0.0, low_inclusive=False)
    if epoch is not None:
        warmup_factor = jnp.minimum(jnp.asarray(epoch, jnp.float32) / warmup, 1.0)
    elif warmup_factor is None:
        warmup_factor = 1.0
    views, labels, mask = _two_views.prepare(
        student_weak, student_strong, teacher_weak, teacher_strong, labels, where
    )

    def per_example_kd(s, target, labels):
        return dkd_loss(s, target, labels, alpha=alpha, beta=beta, temperature=temperature)

    ce, kd = _ce_and_kd(views, labels, mask, teacher_transform, logit_standardization, per_example_kd)
    factor = jnp.asarray(warmup_factor, jnp.float32)
    return _two_views.finish({"ce": ce_weight * ce, "kd": factor * kd})
