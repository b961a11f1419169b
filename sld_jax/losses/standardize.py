"""Logit standardisation (Sun et al. 2024): z-score the logits per example before the softmax."""

from __future__ import annotations

import jax

from sld_jax.losses import _checks
from sld_jax.losses.divergences import LogitTransform, multi_temperature_kd, standardize_logits
from sld_jax.losses.kd import kd_objective

#: The authors' base temperature for CIFAR-100 (``--base-temp 2``), used with KD weight 9.
BASE_TEMPERATURE = 2.0


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
    return multi_temperature_kd(s, t, temperatures=temps)[..., 0]


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
    where: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """KD with logit standardisation, with the authors' CIFAR-100 defaults (T 2, CE 0.1, KD 9).

    :func:`~sld_jax.losses.kd_objective` with ``logit_standardization=True``: CE on the raw
    student logits, KD between the z-scored student and (processed) teacher logits. For DKD or
    MLKD with standardisation pass ``logit_standardization=True`` to their objectives. ``where``
    and any leading shape work as there.

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
        student_weak,
        student_strong,
        teacher_weak,
        teacher_strong,
        labels,
        temperature=temperature,
        ce_weight=ce_weight,
        kd_weight=kd_weight,
        teacher_transform=teacher_transform,
        logit_standardization=True,
        where=where,
    )
