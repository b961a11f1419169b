"""The chunked kernel behind :mod:`sld_jax.losses.fused_linear`: per-token CE and distillation
terms from hidden states, for every divergence, without building the ``[N, V]`` logits.

The forward pass scans over token chunks and, inside a chunk, over vocabulary blocks, keeping per
token only

* the student's row maximum, first argmax and label logit;
* the teacher's row maximum, first argmax and label logit, and the student's logit at the
  teacher's argmax;
* per temperature ``T``: ``Z_s = sum exp((s - max s) / T)``, ``Z_t = sum exp((t - max t) / T)``,
  and, for the KL divergences, ``W = sum exp((t - max t) / T) (t - s)`` (forward) and
  ``W_s = sum exp((s - max s) / T) (s - t)`` (reverse), updated online (log-sum-exp rescaling)
  across blocks.

The teacher transforms (swap, conditional swap) only permute two entries of a row: ``Z`` is
unchanged, and with ``p0 = softmax(t / T)`` (untransformed), ``q = softmax(s / T)``, ``m`` the
teacher's argmax and ``y`` the label, the swapped ``p`` gives

    KL(p ‖ q) = [W / Z_t - (max t - max s)] / T - log Z_t + log Z_s - (p0_m - p0_y)(s_y - s_m) / T,
    KL(q ‖ p) = [W_s / Z_s - (max s - max t)] / T - log Z_s + log Z_t - (q_y - q_m)(t_m - t_y) / T.

The generalised Jensen–Shannon divergence and the total variation distance have no such closed
form: they take a **second pass** over the vocabulary once the log-sum-exps are known (the same
block when the whole local vocabulary is one block; recomputed logits with ``vocab_chunk``). The
pseudo-teacher term is ``T² · (q_y - q_m')(s_y - max s) / T`` with ``m'`` the student's argmax (see
:func:`sld_jax.losses.sld_loss`).

The backward pass (a ``custom_vjp``) recomputes each block's logits and forms ``dL/ds`` from these
statistics: for a divergence ``D(p, q)`` at temperature ``T`` with scale ``c`` (``T²`` or 1),
``dL/ds = a (softmax(s) - e_y) + b c/T · q ⊙ (g - Σ q g)`` with ``g = ∂D/∂q`` (``-p/q`` forward KL,
``log(q/p) + 1`` reverse, ``(1 - β) log(q/M)`` JSD, ``sign(q - p)/2`` TVD) and ``a``, ``b`` the
per-token cotangents of the CE and KD outputs; then ``dh = g Wᵀ``, ``dW += hᵀ g``. Under
``vocab_axis_name`` each device holds a slice of the vocabulary and the statistics are combined
with ``pmax`` / ``pmin`` / ``psum`` before they are used.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from sld_jax.shard_types import varying_axes

_F32 = jnp.float32
_NEG_INF = -np.inf

#: The divergences of the kernel (``"jsd"`` with 0 < β < 1; β = 0 and 1 are the two KLs).
DIVERGENCES = ("forward_kl", "reverse_kl", "symmetric_kl", "jsd", "tvd")
#: The teacher transforms of the kernel.
TRANSFORMS = (None, "swap", "conditional_swap")


@dataclasses.dataclass(frozen=True)
class Config:
    """Static settings of one kernel call (hashable: a ``custom_vjp`` non-differentiable arg)."""

    temps: tuple[float, ...]  # KD temperatures (empty: cross-entropy only)
    student_temps: tuple[float, ...]  # temps, plus 1.0 for the CE when it is missing
    teacher_temps: tuple[float, ...]  # temps, plus 1.0 for the conditional swap's gap when missing
    scales: tuple[float, ...]  # per temperature: T² or 1
    divergence: str
    beta: float  # JSD's β
    transform: str | None
    alpha: float | None  # the conditional swap's threshold
    student_swap: bool
    stop_gradient_pseudo_teacher: bool
    token_chunk: int
    vocab_chunk: int  # columns per block of the local vocabulary slice
    soft_cap: float | None
    teacher_kind: str  # "linear" | "logits" | "topk" | "none"
    vocab_axis_name: str | None

    @property
    def ce_index(self) -> int:
        return self.student_temps.index(1.0)

    @property
    def forward_stats(self) -> bool:  # W: forward KL
        return self.divergence in ("forward_kl", "symmetric_kl")

    @property
    def reverse_stats(self) -> bool:  # W_s: reverse KL
        return self.divergence in ("reverse_kl", "symmetric_kl")

    @property
    def second_pass(self) -> bool:
        return self.divergence in ("jsd", "tvd") and bool(self.temps)


def _softcap(z: jax.Array, cap: float | None) -> jax.Array:
    return z if cap is None else cap * jnp.tanh(z / cap)


def _linear_block(h, kernel, bias, off, size, cap):
    """``softcap(h @ kernel[:, off:off+size] + bias[off:off+size])`` in float32, and the kernel block."""
    w = jax.lax.dynamic_slice_in_dim(kernel, off, size, axis=1)
    z = jnp.dot(h, w, preferred_element_type=_F32)
    z = z + jax.lax.dynamic_slice_in_dim(bias, off, size).astype(_F32)
    return _softcap(z, cap), w


def _teacher_block(cfg, tok, const, off, size, base):
    """The teacher's float32 logits for columns ``[off, off + size)`` of the local slice (None
    without a teacher).

    ``base`` is the global vocabulary index of local column 0 (the shard's offset). For the sparse
    (top-k) teacher every column outside the stored top-k and the label is ``-inf``.
    """
    if cfg.teacher_kind == "none":
        return None
    if cfg.teacher_kind == "linear":
        (h,) = tok
        kernel, bias = const
        return _linear_block(h, kernel, bias, off, size, cfg.soft_cap)[0]
    if cfg.teacher_kind == "logits":
        (logits,) = tok
        return jax.lax.dynamic_slice_in_dim(logits, off, size, axis=1).astype(_F32)
    values, indices, label_logit, labels = tok
    n = values.shape[0]
    rows = jnp.arange(n)[:, None]
    start = base + off

    def local(index):  # out-of-block indices go to ``size`` (dropped), never wrap around
        inside = (index >= start) & (index < start + size)
        return jnp.where(inside, index - start, size)

    block = jnp.full((n, size), _NEG_INF, _F32)
    block = block.at[rows, local(indices)].set(values.astype(_F32), mode="drop")
    return block.at[rows[:, 0], local(labels)].set(label_logit.astype(_F32), mode="drop")


def _stats_init(n, cfg):
    ks, kt, k = len(cfg.student_temps), len(cfg.teacher_temps), len(cfg.temps)
    neg = jnp.full((n,), _NEG_INF, _F32)
    zero = jnp.zeros((n,), _F32)
    izero = jnp.zeros((n,), jnp.int32)
    return dict(
        s_max=neg,
        s_arg=izero,
        s_y=zero,
        t_max=neg if cfg.teacher_kind != "none" else zero,
        t_arg=izero,
        t_y=zero,
        s_at_t=zero,
        zs=jnp.zeros((n, ks), _F32),
        zt=jnp.zeros((n, kt), _F32),
        w=jnp.zeros((n, k if cfg.forward_stats else 0), _F32),
        ws=jnp.zeros((n, k if cfg.reverse_stats else 0), _F32),
    )


def _vary_like(tree, *refs):
    """Marks ``tree``'s arrays as varying over the mesh axes ``refs`` vary over (inside ``shard_map``).

    Loop carries must keep one type: a zero-initialised accumulator is device-invariant, but what
    the loop adds to it varies like the inputs. Outside ``shard_map`` this is the identity.
    """
    axes = set()
    for ref in jax.tree.leaves(refs):
        axes |= varying_axes(ref)

    def cast(x):
        missing = tuple(sorted(axes - varying_axes(x)))
        return jax.lax.pcast(x, missing, to="varying") if missing else x

    return jax.tree.map(cast, tree)


def _finite_or_zero(x):
    return jnp.where(jnp.isneginf(x), 0.0, x)


def _update(c, s, t, cols, labels, cfg):
    """Folds one ``[n, size]`` block of student and teacher logits into the running statistics."""
    c = dict(c)
    is_label = cols[None, :] == labels[:, None]
    c["s_y"] = c["s_y"] + jnp.sum(jnp.where(is_label, s, 0.0), axis=-1)
    # Student: max, first argmax (a strict > keeps the earlier block on ties), rescaled sums.
    b_max = jnp.max(s, axis=-1)
    b_arg = jnp.argmax(s, axis=-1).astype(jnp.int32)
    new_max = jnp.maximum(c["s_max"], b_max)
    c["s_arg"] = jnp.where(b_max > c["s_max"], cols[b_arg], c["s_arg"])
    shift_s = _finite_or_zero(new_max)
    zs, scale_s, e_s = [], {}, {}
    for k, temp in enumerate(cfg.student_temps):
        inv = 1.0 / temp
        scale_s[temp] = jnp.exp((c["s_max"] - shift_s) * inv)
        e_s[temp] = jnp.exp((s - shift_s[:, None]) * inv)
        zs.append(c["zs"][:, k] * scale_s[temp] + jnp.sum(e_s[temp], axis=-1))
    c["zs"] = jnp.stack(zs, axis=-1)
    c["s_max"] = new_max
    if t is None:
        return c
    c["t_y"] = c["t_y"] + jnp.sum(jnp.where(is_label, t, 0.0), axis=-1)
    # Teacher: the same, plus the student's logit at the teacher's argmax and W = sum e (t - s).
    b_max = jnp.max(t, axis=-1)
    b_arg = jnp.argmax(t, axis=-1).astype(jnp.int32)
    new_max = jnp.maximum(c["t_max"], b_max)
    later = b_max > c["t_max"]
    c["t_arg"] = jnp.where(later, cols[b_arg], c["t_arg"])
    c["s_at_t"] = jnp.where(later, jnp.take_along_axis(s, b_arg[:, None], axis=-1)[:, 0], c["s_at_t"])
    shift = _finite_or_zero(new_max)
    d = t - s
    zt, ws, wss = [], [], []
    for k, temp in enumerate(cfg.teacher_temps):
        inv = 1.0 / temp
        scale = jnp.exp((c["t_max"] - shift) * inv)
        e = jnp.exp((t - shift[:, None]) * inv)
        zt.append(c["zt"][:, k] * scale + jnp.sum(e, axis=-1))
        if k < len(cfg.temps) and cfg.forward_stats:
            # e == 0 where t == -inf (a sparse teacher's missing entries): select, never 0 * inf.
            ws.append(c["w"][:, k] * scale + jnp.sum(jnp.where(e > 0, e * d, 0.0), axis=-1))
        if k < len(cfg.temps) and cfg.reverse_stats:
            wss.append(c["ws"][:, k] * scale_s[temp] - jnp.sum(e_s[temp] * d, axis=-1))
    c["zt"] = jnp.stack(zt, axis=-1)
    if cfg.forward_stats:
        c["w"] = jnp.stack(ws, axis=-1)
    if cfg.reverse_stats:
        c["ws"] = jnp.stack(wss, axis=-1)
    c["t_max"] = new_max
    return c


def _combine_shards(c, cfg, num_columns):
    """Combines the statistics of the vocabulary shards (identity without ``vocab_axis_name``)."""
    axis = cfg.vocab_axis_name
    if axis is None:
        return c
    big = jnp.int32(num_columns)
    out = dict(c)
    s_max = jax.lax.pmax(c["s_max"], axis)
    out["s_arg"] = jax.lax.pmin(jnp.where(c["s_max"] == s_max, c["s_arg"], big), axis)
    inv_s = jnp.asarray([1.0 / x for x in cfg.student_temps], _F32)
    scale_s = jnp.exp((c["s_max"] - s_max)[:, None] * inv_s)
    out["zs"] = jax.lax.psum(c["zs"] * scale_s, axis)
    out["s_y"] = jax.lax.psum(c["s_y"], axis)
    out["s_max"] = s_max
    if cfg.teacher_kind == "none":
        return out
    t_max = jax.lax.pmax(c["t_max"], axis)
    t_arg = jax.lax.pmin(jnp.where(c["t_max"] == t_max, c["t_arg"], big), axis)
    inv_t = jnp.asarray([1.0 / x for x in cfg.teacher_temps], _F32)
    scale = jnp.exp((c["t_max"] - t_max)[:, None] * inv_t)
    out["zt"] = jax.lax.psum(c["zt"] * scale, axis)
    k = len(cfg.temps)
    if cfg.forward_stats:
        out["w"] = jax.lax.psum(jnp.where(scale[:, :k] > 0, c["w"] * scale[:, :k], 0.0), axis)
    if cfg.reverse_stats:
        columns = [cfg.student_temps.index(temp) for temp in cfg.temps]
        out["ws"] = jax.lax.psum(c["ws"] * scale_s[:, columns], axis)
    # Only the shard owning the global first argmax has it as its own local first argmax.
    out["s_at_t"] = jax.lax.psum(jnp.where(c["t_arg"] == t_arg, c["s_at_t"], 0.0), axis)
    out["t_y"] = jax.lax.psum(c["t_y"], axis)
    out.update(t_max=t_max, t_arg=t_arg)
    return out


def _swap_on(c, labels, lse_t, cfg):
    """Per token, 1.0 where the teacher transform swaps the label's and the argmax's entries."""
    if cfg.transform is None or cfg.teacher_kind == "none":
        return jnp.zeros(labels.shape, _F32)
    if cfg.transform == "swap":
        return jnp.ones(labels.shape, _F32)  # a right teacher's swap exchanges an entry with itself
    k1 = cfg.teacher_temps.index(1.0)  # the gap of the conditional swap is measured at T = 1
    gap = jnp.exp(-lse_t[:, k1]) - jnp.exp(c["t_y"] - c["t_max"] - lse_t[:, k1])
    return (gap < cfg.alpha).astype(_F32)


def _teacher_log_probs(t, cols, labels, res, k, temp, cfg):
    """log p of a ``[n, size]`` teacher block at temperature index ``k``, transformed (swapped where
    ``res["on"]``)."""
    lse_t = res["lse_t"][:, k : k + 1]
    lp = (t - res["t_max"][:, None]) * (1.0 / temp) - lse_t
    if cfg.transform is None:
        return lp
    lp_m = -lse_t  # the argmax's entry: t_m = max t
    lp_y = (res["t_y"] - res["t_max"])[:, None] * (1.0 / temp) - lse_t
    swapped = jnp.where(cols == labels[:, None], lp_m, jnp.where(cols == res["t_arg"][:, None], lp_y, lp))
    return jnp.where(res["on"][:, None] > 0, swapped, lp)


def _block_log_probs(s, t, cols, labels, res, cfg):
    """``(k, T, log q, log p)`` of a block for each KD temperature: the student's and the (transformed)
    teacher's log-probabilities ``[n, size]``, from the finished statistics in ``res``."""
    for k, temp in enumerate(cfg.temps):
        ks = cfg.student_temps.index(temp)
        lq = (s - res["s_max"][:, None]) * (1.0 / temp) - res["lse_s"][:, ks : ks + 1]
        yield k, temp, lq, _teacher_log_probs(t, cols, labels, res, k, temp, cfg)


def _log_mixture(lp, lq, beta):
    """``log M`` of JSD's mixture ``M = β p + (1 - β) q``, from the log-probabilities."""
    return jnp.logaddexp(np.log(beta) + lp, np.log1p(-beta) + lq)


def _second_pass_block(s, t, cols, labels, res, cfg):
    """Per token and temperature, the block's part of ``(D, Σ q ∂D/∂q)`` for JSD or TVD: two ``[n, K]``."""
    ds, rs = [], []
    for _, _, lq, lp in _block_log_probs(s, t, cols, labels, res, cfg):
        q, p = jnp.exp(lq), jnp.exp(lp)
        if cfg.divergence == "jsd":
            lm = _log_mixture(lp, lq, cfg.beta)
            kl_p = jnp.sum(jnp.where(p > 0, p * (lp - lm), 0.0), axis=-1)  # KL(p ‖ M)
            kl_q = jnp.sum(q * (lq - lm), axis=-1)  # KL(q ‖ M)
            ds.append(cfg.beta * kl_p + (1.0 - cfg.beta) * kl_q)
            rs.append((1.0 - cfg.beta) * kl_q)
        else:
            ds.append(0.5 * jnp.sum(jnp.abs(p - q), axis=-1))
            rs.append(0.5 * jnp.sum(q * jnp.sign(q - p), axis=-1))
    return jnp.stack(ds, axis=-1), jnp.stack(rs, axis=-1)


def _log_sum_exps(c):
    return jnp.log(c["zs"]), jnp.log(c["zt"])  # [n, Ks] relative to s_max, [n, Kt] to t_max


def _finish(c, labels, cfg, second):
    """Per-token ``(ce, kd, teacher_swapped, student_wrong)`` and the residuals of the backward
    pass; ``second`` is the second pass's ``(D, R)`` (None for the KL divergences)."""
    lse_s, lse_t = _log_sum_exps(c)
    ce = lse_s[:, cfg.ce_index] + c["s_max"] - c["s_y"]
    kd = jnp.zeros_like(ce)
    on = _swap_on(c, labels, lse_t, cfg)
    d_max = c["t_max"] - c["s_max"]
    gap_s = c["s_y"] - c["s_max"]  # s_y - s_m' <= 0
    reverse = []
    for k, temp in enumerate(cfg.temps):
        inv = 1.0 / temp
        ks = cfg.student_temps.index(temp)
        if cfg.forward_stats:
            p_m = jnp.exp(-lse_t[:, k])
            p_y = jnp.exp((c["t_y"] - c["t_max"]) * inv - lse_t[:, k])
            kl = (c["w"][:, k] / c["zt"][:, k] - d_max) * inv - lse_t[:, k] + lse_s[:, ks]
            kl = kl - on * (p_m - p_y) * (c["s_y"] - c["s_at_t"]) * inv
            kd = kd + cfg.scales[k] * kl
        if cfg.reverse_stats:
            q_y = jnp.exp(gap_s * inv - lse_s[:, ks])
            q_at_t = jnp.exp((c["s_at_t"] - c["s_max"]) * inv - lse_s[:, ks])
            kl = (c["ws"][:, k] / c["zs"][:, ks] + d_max) * inv - lse_s[:, ks] + lse_t[:, k]
            kl = kl - on * (q_y - q_at_t) * (c["t_max"] - c["t_y"]) * inv
            reverse.append(kl)
            kd = kd + cfg.scales[k] * kl
        if second is not None:
            kd = kd + cfg.scales[k] * second[0][:, k]
        if cfg.student_swap:
            q_m = jnp.exp(-lse_s[:, ks])
            q_y = jnp.exp(gap_s * inv - lse_s[:, ks])
            kd = kd + cfg.scales[k] * inv * (q_y - q_m) * gap_s
    swapped = on * (c["t_arg"] != labels).astype(_F32)
    fired = (swapped, (c["s_arg"] != labels).astype(_F32))
    residuals = dict(
        s_max=c["s_max"],
        s_arg=c["s_arg"],
        s_y=c["s_y"],
        t_max=c["t_max"],
        t_arg=c["t_arg"],
        t_y=c["t_y"],
        lse_s=lse_s,
        lse_t=lse_t,
        on=on,
    )
    if cfg.reverse_stats:
        residuals["kl_r"] = jnp.stack(reverse, axis=-1)
    if second is not None:
        residuals["r"] = second[1]
    return (ce, kd) + fired, residuals


def _shard_base(cfg, local_columns):
    if cfg.vocab_axis_name is None:
        return jnp.int32(0)
    return jax.lax.axis_index(cfg.vocab_axis_name).astype(jnp.int32) * local_columns


def _blocks(cfg, local_columns):
    return local_columns // cfg.vocab_chunk


def _loop(nb, body, carry):
    """``body(j, carry)`` over blocks ``j < nb`` (unrolled for one block)."""
    return body(0, carry) if nb == 1 else jax.lax.fori_loop(0, nb, body, carry)


def _chunk_forward(h, labels, valid, tok, kernel, bias, const, cfg):
    local_columns = kernel.shape[1]
    base = _shard_base(cfg, local_columns)
    size = cfg.vocab_chunk
    h = jnp.where(valid[:, None], h, jnp.zeros((), h.dtype))
    nb = _blocks(cfg, local_columns)

    def logits(j):
        off = j * size
        s, _ = _linear_block(h, kernel, bias, off, size, cfg.soft_cap)
        t = _teacher_block(cfg, tok, const, off, size, base)
        return s, t, base + off + jnp.arange(size, dtype=jnp.int32)

    blocks = {}

    def body(j, c):
        s, t, cols = logits(j)
        if nb == 1:
            blocks[0] = (s, t, cols)  # the second pass reuses the one block's logits
        return _update(c, s, t, cols, labels, cfg)

    c = _loop(nb, body, _vary_like(_stats_init(h.shape[0], cfg), h, labels, tok, kernel, bias, const))
    c = _combine_shards(c, cfg, local_columns * _num_shards(cfg))
    second = None
    if cfg.second_pass:
        lse_s, lse_t = _log_sum_exps(c)
        res = dict(c, lse_s=lse_s, lse_t=lse_t, on=_swap_on(c, labels, lse_t, cfg))

        def second_body(j, acc):
            s, t, cols = blocks[0] if nb == 1 else logits(j)
            d, r = _second_pass_block(s, t, cols, labels, res, cfg)
            return acc[0] + d, acc[1] + r

        zeros = jnp.zeros((h.shape[0], len(cfg.temps)), _F32)
        second = _loop(nb, second_body, _vary_like((zeros, zeros), h, labels, tok, kernel, bias, const))
        if cfg.vocab_axis_name is not None:
            second = jax.lax.psum(second, cfg.vocab_axis_name)
    return _finish(c, labels, cfg, second)


def _num_shards(cfg):
    return 1 if cfg.vocab_axis_name is None else jax.lax.axis_size(cfg.vocab_axis_name)


def _by_chunk(x, chunk):
    return x.reshape((x.shape[0] // chunk, chunk) + x.shape[1:])


def _forward(h, kernel, bias, tok, const, labels, valid, cfg):
    chunk = cfg.token_chunk
    xs = jax.tree.map(lambda x: _by_chunk(x, chunk), (h, labels, valid, tok))

    def step(carry, x):
        h_c, y_c, v_c, tok_c = x
        return carry, _chunk_forward(h_c, y_c, v_c, tok_c, kernel, bias, const, cfg)

    _, (outs, res) = jax.lax.scan(step, None, xs)
    flat = lambda a: a.reshape((a.shape[0] * a.shape[1],) + a.shape[2:])  # noqa: E731  (sizes may be 0)
    return tuple(flat(o) for o in outs), {k: flat(v) for k, v in res.items()}


def _coefficients(res, labels, g_ce, g_kd, cfg):
    """Per-token coefficients of the closed-form parts of ``dL/ds`` (CE, forward KL with its swap,
    the pseudo-teacher term), all ``[n]`` or ``[n, K]``; the other divergences' parts are formed
    element by element in :func:`_chunk_backward`."""
    n = labels.shape[0]
    c_q = [jnp.zeros((n,), _F32) for _ in cfg.student_temps]
    c_q[cfg.ce_index] = c_q[cfg.ce_index] + g_ce
    c_p = []
    coef_y = -g_ce
    coef_mt = jnp.zeros((n,), _F32)
    coef_ms = jnp.zeros((n,), _F32)
    gap_s = res["s_y"] - res["s_max"]
    for k, temp in enumerate(cfg.temps):
        inv = 1.0 / temp
        ks = cfg.student_temps.index(temp)
        bt = g_kd * (cfg.scales[k] * inv)
        if cfg.forward_stats:
            lse_t = res["lse_t"][:, k]
            p_m = jnp.exp(-lse_t)
            p_y = jnp.exp((res["t_y"] - res["t_max"]) * inv - lse_t)
            c_q[ks] = c_q[ks] + bt
            c_p.append(-bt)
            # -bT swap(p0) = -bT p0 - bT (p0_m - p0_y)(e_y - e_m)
            swap = res["on"] * (p_m - p_y)
            coef_y = coef_y - bt * swap
            coef_mt = coef_mt + bt * swap
        else:
            c_p.append(jnp.zeros((n,), _F32))
        if cfg.student_swap:
            lse_s = res["lse_s"][:, ks]
            q_m = jnp.exp(-lse_s)
            q_y = jnp.exp(gap_s * inv - lse_s)
            gap = q_y - q_m
            coef_y = coef_y + bt * gap
            coef_ms = coef_ms - bt * gap
            if not cfg.stop_gradient_pseudo_teacher:
                # d/ds of c/T (q_y - q_m)(s_y - s_m) through the q's: c/T² (s_y - s_m)(q_y e_y - q_m e_m - gap q)
                scaled = g_kd * (cfg.scales[k] * inv * inv)
                coef_y = coef_y + scaled * gap_s * q_y
                coef_ms = coef_ms - scaled * gap_s * q_m
                c_q[ks] = c_q[ks] - scaled * gap_s * gap
    return c_q, c_p, coef_y, coef_mt, coef_ms


def _elementwise_grad(s, t, cols, labels, res, g_kd, cfg):
    """The reverse-KL, JSD and TVD parts of ``dL/ds`` for one block: ``c/T · q ⊙ (g - Σ q g)``."""
    g = 0.0
    for k, temp, lq, lp in _block_log_probs(s, t, cols, labels, res, cfg):
        q = jnp.exp(lq)
        if cfg.reverse_stats:
            inner = lq - lp - res["kl_r"][:, k : k + 1]
        elif cfg.divergence == "jsd":
            inner = (1.0 - cfg.beta) * (lq - _log_mixture(lp, lq, cfg.beta)) - res["r"][:, k : k + 1]
        else:
            inner = 0.5 * jnp.sign(q - jnp.exp(lp)) - res["r"][:, k : k + 1]
        g = g + (g_kd * (cfg.scales[k] * (1.0 / temp)))[:, None] * q * inner
    return g


def _chunk_backward(h, labels, valid, tok, res, g_ce, g_kd, kernel, bias, const, cfg, dw, db):
    local_columns = kernel.shape[1]
    base = _shard_base(cfg, local_columns)
    size = cfg.vocab_chunk
    h = jnp.where(valid[:, None], h, jnp.zeros((), h.dtype))
    g_ce = jnp.where(valid, g_ce, 0.0)
    g_kd = jnp.where(valid, g_kd, 0.0)
    c_q, c_p, coef_y, coef_mt, coef_ms = _coefficients(res, labels, g_ce, g_kd, cfg)
    s_max = res["s_max"][:, None]
    t_max = res["t_max"][:, None]
    elementwise = cfg.reverse_stats or cfg.second_pass

    def body(j, carry):
        dh, dw, db = carry
        off = j * size
        s, w = _linear_block(h, kernel, bias, off, size, cfg.soft_cap)
        t = _teacher_block(cfg, tok, const, off, size, base)
        cols = (base + off + jnp.arange(size, dtype=jnp.int32))[None, :]
        g = (
            jnp.where(cols == labels[:, None], coef_y[:, None], 0.0)
            + jnp.where(cols == res["t_arg"][:, None], coef_mt[:, None], 0.0)
            + jnp.where(cols == res["s_arg"][:, None], coef_ms[:, None], 0.0)
        )
        for ks, temp in enumerate(cfg.student_temps):
            q = jnp.exp((s - s_max) * (1.0 / temp) - res["lse_s"][:, ks : ks + 1])
            g = g + c_q[ks][:, None] * q
        if cfg.forward_stats:
            for k, temp in enumerate(cfg.temps):
                p = jnp.exp((t - t_max) * (1.0 / temp) - res["lse_t"][:, k : k + 1])
                g = g + c_p[k][:, None] * p
        if elementwise:
            g = g + _elementwise_grad(s, t, cols, labels, res, g_kd, cfg)
        if cfg.soft_cap is not None:
            g = g * (1.0 - jnp.square(s / cfg.soft_cap))
        gc = g.astype(h.dtype)
        dh = dh + jnp.dot(gc, w.T, preferred_element_type=_F32)
        dw_block = jax.lax.dynamic_slice_in_dim(dw, off, size, axis=1)
        dw_block = dw_block + jnp.dot(h.T, gc, preferred_element_type=_F32)
        dw = jax.lax.dynamic_update_slice_in_dim(dw, dw_block, off, axis=1)
        db_block = jax.lax.dynamic_slice_in_dim(db, off, size) + jnp.sum(g, axis=0)
        db = jax.lax.dynamic_update_slice_in_dim(db, db_block, off, axis=0)
        return dh, dw, db

    carry = _vary_like((jnp.zeros(h.shape, _F32), dw, db), h, labels, tok, kernel, bias, const, g_ce, g_kd)
    return _loop(_blocks(cfg, local_columns), body, carry)


@functools.partial(jax.custom_vjp, nondiff_argnums=(7,))
def per_token(h, kernel, bias, tok, const, labels, valid, cfg):
    """Per-token ``(ce [N], kd [N], teacher_swapped [N], student_wrong [N])``, float32.

    ``h [N, H]`` and ``labels``/``valid [N]`` with ``N`` a multiple of ``cfg.token_chunk``;
    ``kernel [H, V_local]``, ``bias [V_local]``; ``tok`` are the teacher's per-token arrays and
    ``const`` its other arrays (see :func:`_teacher_block`). Rows where ``valid`` is False get
    exactly zero gradient. Only ``h``, ``kernel`` and ``bias`` are differentiated.
    """
    return _forward(h, kernel, bias, tok, const, labels, valid, cfg)[0]


def _per_token_fwd(h, kernel, bias, tok, const, labels, valid, cfg):
    outs, res = _forward(h, kernel, bias, tok, const, labels, valid, cfg)
    return outs, (h, kernel, bias, tok, const, labels, valid, res)


def _per_token_bwd(cfg, residuals, cotangents):
    h, kernel, bias, tok, const, labels, valid, res = residuals
    g_ce, g_kd = cotangents[0], cotangents[1]
    chunk = cfg.token_chunk
    per_token_arrays = (h, labels, valid, tok, res, g_ce.astype(_F32), g_kd.astype(_F32))
    xs = jax.tree.map(lambda x: _by_chunk(x, chunk), per_token_arrays)

    def step(carry, x):
        dw, db = carry
        h_c, y_c, v_c, tok_c, res_c, gce_c, gkd_c = x
        dh, dw, db = _chunk_backward(
            h_c, y_c, v_c, tok_c, res_c, gce_c, gkd_c, kernel, bias, const, cfg, dw, db
        )
        return (dw, db), dh

    init = _vary_like((jnp.zeros(kernel.shape, _F32), jnp.zeros(bias.shape, _F32)), xs, kernel, bias, const)
    (dw, db), dh = jax.lax.scan(step, init, xs)
    dh = dh.reshape(h.shape)
    if cfg.vocab_axis_name is not None:
        dh = jax.lax.psum(dh, cfg.vocab_axis_name)  # each shard holds a partial sum over its columns
    # An input invariant over a mesh axis (a kernel replicated over the token axis) gets the sum
    # of the per-device cotangents over that axis, as JAX's own transpose rules give it.
    dh, dw, db = (_sum_to_type(ct, x) for ct, x in ((dh, h), (dw, kernel), (db, bias)))
    zeros = lambda tree: jax.tree.map(lambda _: None, tree)  # noqa: E731  (symbolic zeros)
    return (
        dh.astype(h.dtype),
        dw.astype(kernel.dtype),
        db.astype(bias.dtype),
        zeros(tok),
        zeros(const),
        _zero_cotangent(labels),
        _zero_cotangent(valid),
    )


def _sum_to_type(cotangent, primal):
    extra = tuple(sorted(varying_axes(cotangent) - varying_axes(primal)))
    return jax.lax.psum(cotangent, extra) if extra else cotangent


def _zero_cotangent(x):
    if jnp.issubdtype(x.dtype, jnp.floating):
        return jnp.zeros_like(x)
    return np.zeros(x.shape, jax.dtypes.float0)


per_token.defvjp(_per_token_fwd, _per_token_bwd)
