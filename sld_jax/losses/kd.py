"""Temperature-scaled KL divergence and integer-label cross-entropy, per example, in log space."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from sld_jax.losses import _checks


def kl_divergence_from_logits(
    student_logits: jax.Array, target_logits: jax.Array, temperature: float | jax.Array = 1.0
) -> jax.Array:
    r"""Per-example KL(softmax(target/T) ‖ softmax(student/T)), unscaled.

    .. math:: \sum_c p_c (\log p_c - \log q_c), \quad p = \mathrm{softmax}(t/T),\ q = \mathrm{softmax}(s/T)

    Targets are taken from ``log_softmax`` (never ``log(softmax)``), and entries whose target
    probability underflows to 0 contribute exactly 0 (as ``torch.nn.functional.kl_div``), so
    large logit gaps give finite values and finite gradients.

    Args:
      student_logits: ``[..., C]`` floating (bf16 accepted; computed in float32).
      target_logits: ``[..., C]`` floating, same shape.
      temperature: positive scalar (or an array broadcastable against ``[...]`` + ``[1]``).

    Returns:
      ``[...]`` float32 KL divergences (no T² factor).
    """
    s = _checks.as_float32(student_logits)
    t = _checks.as_float32(target_logits)
    log_q = jax.nn.log_softmax(s / temperature, axis=-1)
    log_p = jax.nn.log_softmax(t / temperature, axis=-1)
    p = jnp.exp(log_p)
    safe_log_p = jnp.where(p > 0, log_p, 0.0)
    return jnp.sum(p * (safe_log_p - log_q), axis=-1)


def kd_loss(
    student_logits: jax.Array, teacher_logits: jax.Array, temperature: float = 4.0
) -> jax.Array:
    r"""Hinton's distillation loss per example: KL(softmax(t/T) ‖ softmax(s/T)) · T².

    Args:
      student_logits: ``[..., C]`` floating.
      teacher_logits: ``[..., C]`` floating, same shape.
      temperature: positive Python float.

    Returns:
      ``[...]`` float32 per-example losses.

    Examples:
      >>> import jax.numpy as jnp
      >>> s = jnp.array([[0., 1., 2.]])
      >>> kd_loss(s, s, temperature=4.0)
      Array([0.], dtype=float32)

    References:
      Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network", 2015.
    """
    _checks.check_logits("student_logits", student_logits)
    _checks.check_logits("teacher_logits", teacher_logits)
    _checks.check_same_shape("student_logits", student_logits, "teacher_logits", teacher_logits)
    (temperature,) = _checks.check_temperatures((temperature,))
    return kl_divergence_from_logits(student_logits, teacher_logits, temperature) * temperature**2


def multi_temperature_kd(
    student_logits: jax.Array, target_logits: jax.Array, temperatures: Sequence[float]
) -> jax.Array:
    r"""Per-example, per-temperature KL · T², computed for all temperatures in one fused pass.

    Args:
      student_logits: ``[..., C]`` floating.
      target_logits: ``[..., C]`` floating, same shape.
      temperatures: K positive Python floats (static).

    Returns:
      ``[..., K]`` float32: entry k is KL(softmax(t/T_k) ‖ softmax(s/T_k)) · T_k².
    """
    temps = jnp.asarray(_checks.check_temperatures(temperatures), jnp.float32)
    s = _checks.as_float32(student_logits)[..., None, :]
    t = _checks.as_float32(target_logits)[..., None, :]
    kl = kl_divergence_from_logits(s, t, temps[:, None])
    return kl * temps**2


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy with integer labels, in float32.

    Args:
      logits: ``[..., C]`` floating.
      labels: ``[...]`` integer labels in ``[0, C)``.

    Returns:
      ``[...]`` float32 losses.

    Examples:
      >>> import jax.numpy as jnp
      >>> cross_entropy(jnp.zeros((1, 4)), jnp.array([2]))
      Array([1.3862944], dtype=float32)
    """
    _checks.check_logits("logits", logits)
    _checks.check_labels(labels, logits)
    z = _checks.as_float32(logits)
    log_p = jax.nn.log_softmax(z, axis=-1)
    return -jnp.take_along_axis(log_p, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]


def masked_mean(values: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean of ``values`` over the entries where ``mask`` is True (all entries when None).

    With an all-False mask the result is 0 (not NaN), so padded batches are safe.

    Args:
      values: ``[...]`` per-example values.
      mask: ``[...]`` bool or 0/1 weights, or None.

    Returns:
      float32 scalar.
    """
    values = _checks.as_float32(values)
    if mask is None:
        return jnp.mean(values)
    mask = mask.astype(values.dtype)
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)
