"""The loss kernels every objective builds on: tempered KL, integer-label CE, masked means, z-scores.

This module imports no objective: :mod:`~sld_jax.losses.kd`, :mod:`~sld_jax.losses.sld`,
:mod:`~sld_jax.losses.dkd`, :mod:`~sld_jax.losses.mlkd` and :mod:`~sld_jax.losses.standardize`
are built on top of it.

The multi-temperature KL has a fused kernel with a hand-written backward pass: the row maximum is
taken once (the max of ``x / T`` is ``max(x) / T`` for ``T > 0``), each temperature is one pass
over ``[..., C]``, and the backward pass recomputes the two softmaxes rather than storing them.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sld_jax.losses import _checks

#: A teacher-side logit processor: ``(logits [..., C], labels [...]) -> logits [..., C]``.
LogitTransform = Callable[[jax.Array, jax.Array], jax.Array]


def kl_divergence_from_logits(
    student_logits: jax.Array, target_logits: jax.Array, *, temperature: float | jax.Array = 1.0
) -> jax.Array:
    r"""Per-example KL(softmax(target/T) ‖ softmax(student/T)), unscaled.

    .. math:: \sum_c p_c (\log p_c - \log q_c), \quad p = \mathrm{softmax}(t/T),\ q = \mathrm{softmax}(s/T)

    Targets are taken from ``log_softmax`` (never ``log(softmax)``), and entries whose target
    probability is exactly 0 contribute exactly 0 (as ``torch.nn.functional.kl_div``), so large
    logit gaps give finite values and finite gradients.

    Args:
      student_logits: ``[..., C]`` floating (bf16 accepted; computed in float32).
      target_logits: ``[..., C]`` floating, same shape.
      temperature: positive scalar (or an array broadcastable against ``[...]`` + ``[1]``).

    Returns:
      ``[...]`` float32 KL divergences (no T² factor).

    Examples:
      >>> import jax.numpy as jnp
      >>> kl_divergence_from_logits(jnp.array([[0., 0.]]), jnp.array([[0., 0.]]))
      Array([0.], dtype=float32)
    """
    s = _checks.as_float32(student_logits)
    t = _checks.as_float32(target_logits)
    log_q = jax.nn.log_softmax(s / temperature, axis=-1)
    log_p = jax.nn.log_softmax(t / temperature, axis=-1)
    p = jnp.exp(log_p)
    return jnp.sum(jnp.where(p > 0, p * (log_p - log_q), 0.0), axis=-1)


def _teacher_floor(target: jax.Array, row_max: jax.Array, temps: tuple[float, ...]) -> jax.Array:
    """Raises target logits more than ``200 * max(T)`` below the row maximum up to that floor.

    Such entries have probability exactly 0 in float32 at every temperature (``exp(-200)``
    underflows), before and after, so values are unchanged; the floor only keeps ``-inf`` logits
    from producing ``0 * inf = NaN`` in ``p (log p - log q)`` (PyTorch's ``kl_div`` gives 0 there).
    """
    return jnp.maximum(target, row_max - 200.0 * max(temps))


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _fused_tempered_kl(s, t, s_max, picks, temps):
    return _fused_tempered_kl_fwd(s, t, s_max, picks, temps)[0]


def _fused_tempered_kl_fwd(s, t, s_max, picks, temps):
    t_max = jnp.max(t, axis=-1, keepdims=True)
    t = _teacher_floor(t, t_max, temps)
    # KL(p || q) = sum_c p_c (log p_c - log q_c) = E_p[d] / T - lse_t + lse_s, with
    # d = (t - t_max) - (s - s_max) computed once for all temperatures: per temperature that is
    # two exponentials per entry and row sums XLA fuses well. Each temperature is its own
    # [..., C] pass: XLA's CPU backend handles that far better than a broadcast [..., K, C].
    d = (t - t_max) - (s - s_max)
    kls, lse_ss, lse_ts = [], [], []
    for temp in temps:
        inv = 1.0 / temp
        e_t = jnp.exp((t - t_max) * inv)
        sum_t = jnp.sum(e_t, axis=-1)
        lse_t = jnp.log(sum_t)
        lse_s = jnp.log(jnp.sum(jnp.exp((s - s_max) * inv), axis=-1))
        kls.append(inv * (jnp.sum(e_t * d, axis=-1) / sum_t) - lse_t + lse_s)
        lse_ss.append(lse_s)
        lse_ts.append(lse_t)
    kl = jnp.stack(kls, axis=-1)
    lse_s = jnp.stack(lse_ss, axis=-1)
    lse_t = jnp.stack(lse_ts, axis=-1)
    picked = jnp.take_along_axis(s, picks, axis=-1)
    return (kl, lse_s, picked), (s, t, s_max, t_max, picks, lse_s, lse_t, kl)


def _fused_tempered_kl_bwd(temps, residuals, cotangents):
    s, t, s_max, t_max, picks, lse_s, lse_t, kl = residuals
    g_kl, g_lse, g_picked = cotangents
    # The picked entries' cotangents, as one-hot selects fused into the same loop (no scatter).
    classes = jnp.arange(s.shape[-1], dtype=picks.dtype)
    grad_s = jnp.zeros_like(s)
    for j in range(picks.shape[-1]):
        grad_s = grad_s + jnp.where(classes == picks[..., j : j + 1], g_picked[..., j : j + 1], 0.0)
    grad_t = jnp.zeros_like(t)
    for k, temp in enumerate(temps):
        inv = 1.0 / temp
        log_q = (s - s_max) * inv - lse_s[..., k : k + 1]
        log_p = (t - t_max) * inv - lse_t[..., k : k + 1]
        q = jnp.exp(log_q)
        p = jnp.exp(log_p)
        gk = g_kl[..., k : k + 1] * inv
        grad_s = grad_s + gk * (q - p) + (g_lse[..., k : k + 1] * inv) * q
        grad_t = grad_t + gk * p * (log_p - log_q - kl[..., k : k + 1])
    zero_picks = np.zeros(picks.shape, jax.dtypes.float0)
    return grad_s, grad_t, jnp.zeros_like(s_max), zero_picks


_fused_tempered_kl.defvjp(_fused_tempered_kl_fwd, _fused_tempered_kl_bwd)


def tempered_kl_and_lse(
    student_logits: jax.Array,
    target_logits: jax.Array,
    temperatures: Sequence[float],
    picks: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Fused per-temperature KL and the student's shifted log-sum-exp, with a hand-written VJP.

    For each temperature ``T`` (static), ``q = softmax(s / T)`` and ``p = softmax(t / T)``:

    * ``kl[..., k] = KL(p ‖ q)`` (unscaled), gradient ``(q - p) / T`` w.r.t. ``s`` and
      ``p (log p - log q - KL) / T`` w.r.t. ``t``;
    * ``lse[..., k] = logsumexp((s - row_max) / T)``, gradient ``q / T`` w.r.t. ``s``, so that
      ``log q = (s - row_max) / T - lse`` (the gradient-stopped ``row_max`` cancels there);
    * ``picked = take_along_axis(s, picks, -1)``: entries of ``s`` the caller needs (the label's
      logit, the argmax's), whose gradient is added in the same fused backward loop.

    The backward pass recomputes the softmaxes instead of storing ``[..., K, C]`` residuals.
    Forward-mode differentiation (``jax.jvp``, ``jacfwd``) is not defined for it.

    Args:
      student_logits: ``[..., C]`` float32.
      target_logits: ``[..., C]`` float32.
      temperatures: K positive Python floats (already validated).
      picks: ``[..., P]`` int32 class indices in ``[0, C)``, or None (P = 0).

    Returns:
      ``(kl [..., K], lse [..., K], row_max [..., 1], picked [..., P])``, float32.
    """
    temps = tuple(float(x) for x in temperatures)
    if picks is None:
        picks = jnp.zeros(student_logits.shape[:-1] + (0,), jnp.int32)
    row_max = jax.lax.stop_gradient(jnp.max(student_logits, axis=-1, keepdims=True))
    kl, lse, picked = _fused_tempered_kl(student_logits, target_logits, row_max, picks, temps)
    return kl, lse, row_max, picked


def multi_temperature_kd(
    student_logits: jax.Array, target_logits: jax.Array, *, temperatures: Sequence[float]
) -> jax.Array:
    r"""Per-example, per-temperature KL · T², computed for all temperatures in one fused pass.

    Args:
      student_logits: ``[..., C]`` floating.
      target_logits: ``[..., C]`` floating, same shape.
      temperatures: K positive Python floats (static).

    Returns:
      ``[..., K]`` float32: entry k is KL(softmax(t/T_k) ‖ softmax(s/T_k)) · T_k².

    Examples:
      >>> import jax.numpy as jnp
      >>> s, t = jnp.array([[0., 1., 2.]]), jnp.array([[2., 1., 0.]])
      >>> [round(float(v), 4) for v in multi_temperature_kd(s, t, temperatures=(1., 4.))[0]]  # KL x T^2
      [1.1504, 1.3196]
      >>> multi_temperature_kd(jnp.zeros((2, 3)), jnp.zeros((2, 3)), temperatures=(1., 4.)).shape
      (2, 2)
    """
    temps = _checks.check_temperatures(temperatures)
    s = _checks.as_float32(student_logits)
    t = _checks.as_float32(target_logits)
    kl, _, _, _ = tempered_kl_and_lse(s, t, temps)
    return kl * jnp.asarray(np.square(temps), jnp.float32)


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


def masked_mean(values: jax.Array, where: jax.Array | None = None) -> jax.Array:
    """Mean of ``values`` over the entries where ``where`` is true (all entries when None).

    Masked-out entries are *selected away* (``jnp.where``), not multiplied by 0, so a NaN or inf
    in a padded example cannot poison the mean. With an all-False mask the result is 0 (not NaN).

    Args:
      values: ``[...]`` per-example values.
      where: ``[...]`` bool (or numbers: nonzero means a real example), or None.

    Returns:
      float32 scalar.

    Examples:
      >>> import jax.numpy as jnp
      >>> masked_mean(jnp.array([1., 3., jnp.nan]), jnp.array([True, True, False]))
      Array(2., dtype=float32)
    """
    values = _checks.as_float32(values)
    if where is None:
        return jnp.mean(values)
    _checks.check_mask(where, values.shape)
    keep = where.astype(bool)
    total = jnp.sum(jnp.where(keep, values, 0.0))
    return total / jnp.maximum(jnp.sum(keep, dtype=jnp.float32), 1.0)


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
