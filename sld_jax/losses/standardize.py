"""Logit standardisation (Sun et al. 2024): z-score the logits per example before the softmax."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sld_jax.losses import _checks
from sld_jax.losses.kd import LogitTransform, kd_objective, multi_temperature_kd

#: The authors' base temperature for CIFAR-100 (``--base-temp 2``), used with KD weight 9.
BASE_TEMPERATURE = 2.0


def standardize_logits(logits: jax.Array, *, epsilon: float = 1e-7) -> jax.Array:
    r"""Z-scores each row of logits: :math:`(z - \bar z) / (\epsilon + \operatorname{std}(z))`.

    As the authors' ``normalize``, the standard deviation is the unbiased one (``ddof=1``, as
    ``torch.Tensor.std``) and ``epsilon`` is added to it (not under a square root). Every row then
    has mean 0 and unbiased standard deviation (almost) 1, so the KD temperature acts on the
    logits' *relations* rather than their range. Swaps and other permutations commute with it.

    Args:
      logits: ``[..., C]`` floating with C >= 2 (bf16 accepted; computed in float32).
      epsilon: small positive Python float.

    Returns:
      ``[..., C]`` float32 standardised logits.

    Examples:
      >>> import jax.numpy as jnp
      >>> standardize_logits(jnp.array([[1., 2., 3.]])).round(4)
      Array([[-1.,  0.,  1.]], dtype=float32)

    References:
      Sun et al., "Logit Standardization in Knowledge Distillation", CVPR 2024.
    """
    _checks.check_logits("logits", logits)
    _checks.check_num_classes("logits", logits, 2, "a standard deviation needs two entries")
    epsilon = _checks.check_static_number("epsilon", epsilon, low=0.0)
    z = _checks.as_float32(logits)
    centred = z - jnp.mean(z, axis=-1, keepdims=True)
    var = jnp.sum(jnp.square(centred), axis=-1, keepdims=True) / (z.shape[-1] - 1)
    # Double where: a constant row has std 0 and must get a finite (zero) gradient, not 0 * inf.
    std = jnp.where(var > 0, jnp.sqrt(jnp.where(var > 0, var, 1.0)), 0.0)
    return centred / (epsilon + std)


def standardized_kd_loss(
    student_logits: jax.Array, teacher_logits: jax.Array, *, temperature: float = BASE_TEMPERATURE
) -> jax.Array:
    r"""Per-example KD on z-scored logits: KL(σ(Z(t)/T) ‖ σ(Z(s)/T)) · T².

    Args:
      student_logits: ``[..., C]`` floating, C >= 2.
      teacher_logits: ``[..., C]`` floating, same shape (the teacher is gradient-stopped).
      temperature: the base temperature (authors: 2 on CIFAR-100).

    Returns:
      ``[...]`` float32 per-example losses.

    Examples:
      >>> import jax.numpy as jnp
      >>> s = jnp.array([[0., 1., 2.]])
      >>> standardized_kd_loss(s, 10. * s + 3.)  # same relations, different scale
      Array([0.], dtype=float32)
    """
    _checks.check_logits("student_logits", student_logits)
    _checks.check_logits("teacher_logits", teacher_logits)
    _checks.check_same_shape("student_logits", student_logits, "teacher_logits", teacher_logits)
    temps = _checks.check_temperatures((temperature,))
    s = standardize_logits(student_logits)
    t = standardize_logits(jax.lax.stop_gradient(teacher_logits))
    return multi_temperature_kd(s, t, temps)[..., 0]


def standardized_kd_objective(
    student_weak: jax.Array,
    student_strong: jax.Array | None,
    teacher_weak: jax.Array,
    teacher_strong: jax.Array | None,
    labels: jax.Array,
    *,
    temperature: float = BASE_TEMPERATURE,
    ce_weight: float = 0.1,
    kd_weight: float = 9.0,
    teacher_transform: LogitTransform | None = None,
    mask: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """KD with logit standardisation, with the authors' CIFAR-100 defaults (T 2, CE 0.1, KD 9).

    :func:`~sld_jax.losses.kd_objective` with ``logit_standardization=True``: CE on the raw
    student logits, KD between the z-scored student and (processed) teacher logits. For DKD or
    MLKD with standardisation pass ``logit_standardization=True`` to their objectives.

    Returns:
      ``(loss, terms)`` with ``ce``, ``kd`` (weighted) and ``loss``.

    Examples:
      >>> import jax.numpy as jnp
      >>> s = jnp.array([[0., 1., 2.]]); y = jnp.array([2])
      >>> loss, terms = standardized_kd_objective(s, None, 5. * s, None, y)
      >>> round(float(terms["kd"]), 6)
      0.0
    """
    return kd_objective(
        student_weak, student_strong, teacher_weak, teacher_strong, labels,
        temperature=temperature, ce_weight=ce_weight, kd_weight=kd_weight,
        teacher_transform=teacher_transform, logit_standardization=True, mask=mask,
    )
