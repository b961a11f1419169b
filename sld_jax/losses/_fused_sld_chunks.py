"""The chunked kernel behind :mod:`sld_jax.losses.fused_linear`: per-token SLD from hidden states.

Nothing here builds the ``[N, V]`` logits. The forward pass scans over token chunks and, inside a
chunk, over vocabulary blocks, keeping per token only

* the student's row maximum, first argmax and label logit;
* the teacher's row maximum, first argmax and label logit, and the student's logit at the
  teacher's argmax;
* per temperature ``T``: ``Z_s = sum exp((s - max s) / T)``, ``Z_t = sum exp((t - max t) / T)`` and
  ``W = sum exp((t - max t) / T) (t - s)``, updated online (log-sum-exp rescaling) across blocks.

That is enough because the swap only permutes two entries of a row: ``Z`` is unchanged, and with
``p0 = softmax(t / T)`` (unswapped), ``m`` the teacher's argmax and ``y`` the label,

    KL(swap(p0) ‖ q) = [W / Z_t - (max t - max s)] / T - log Z_t + log Z_s
                       - (p0_m - p0_y)(s_y - s_m) / T,

and the pseudo-teacher term is ``T (q_y - q_m')(s_y - max s)`` with ``m'`` the student's argmax
(see :func:`sld_jax.losses.sld_loss`). The backward pass (a ``custom_vjp``) recomputes each block's
logits and forms ``dL/ds`` from these statistics in closed form:

    dL/ds = a (softmax(s) - e_y) + b sum_T T (q_T - swap(p0_T)) + b [pseudo-teacher part],

with ``a``, ``b`` the per-token cotangents of the CE and KD outputs; then ``dh = g Wᵀ``,
``dW += hᵀ g``. Under ``vocab_axis_name`` each device holds a slice of the vocabulary and the
statistics are combined with ``pmax`` / ``pmin`` / ``psum`` before they are used.
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


@dataclasses.dataclass(frozen=True)
class Config:
    """Static settings of one kernel call (hashable: a ``custom_vjp`` non-differentiable arg)."""

    temps: tuple[float, ...]  # KD temperatures
    student_temps: tuple[float, ...]  # temps, plus 1.0 for the CE when it is missing
    student_swap: bool
    stop_gradient_pseudo_teacher: bool
    token_chunk: int
    vocab_chunk: int  # columns per block of the local vocabulary slice
    soft_cap: float | None
    teacher_kind: str  # "linear" | "logits" | "topk"
    vocab_axis_name: str | None

    @property
    def ce_index(self) -> int:
        return self.student_temps.index(1.0)


def _softcap(z: jax.Array, cap: float | None) -> jax.Array:
    return z if cap is None else cap * jnp.tanh(z / cap)


def _linear_block(h, kernel, bias, off, size, cap):
    """``softcap(h @ kernel[:, off:off+size] + bias[off:off+size])`` in float32, and the kernel block."""
    w = jax.lax.dynamic_slice_in_dim(kernel, off, size, axis=1)
    z = jnp.dot(h, w, preferred_element_type=_F32)
    z = z + jax.lax.dynamic_slice_in_dim(bias, off, size).astype(_F32)
    return _softcap(z, cap), w


def _teacher_block(cfg, tok, const, off, size, base):
    """The teacher's float32 logits for columns ``[off, off + size)`` of the local slice.

    ``base`` is the global vocabulary index of local column 0 (the shard's offset). For the sparse
    (top-k) teacher every column outside the stored top-k and the label is ``-inf``.
    """
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
    ks, k = len(cfg.student_temps), len(cfg.temps)
    neg = jnp.full((n,), _NEG_INF, _F32)
    zero = jnp.zeros((n,), _F32)
    izero = jnp.zeros((n,), jnp.int32)
    return dict(
        s_max=neg,
        s_arg=izero,
        s_y=zero,
        t_max=neg,
        t_arg=izero,
        t_y=zero,
        s_at_t=zero,
        zs=jnp.zeros((n, ks), _F32),
        zt=jnp.zeros((n, k), _F32),
        w=jnp.zeros((n, k), _F32),
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
    c["t_y"] = c["t_y"] + jnp.sum(jnp.where(is_label, t, 0.0), axis=-1)
    # Student: max, first argmax (a strict > keeps the earlier block on ties), rescaled sums.
    b_max = jnp.max(s, axis=-1)
    b_arg = jnp.argmax(s, axis=-1).astype(jnp.int32)
    new_max = jnp.maximum(c["s_max"], b_max)
    c["s_arg"] = jnp.where(b_max > c["s_max"], cols[b_arg], c["s_arg"])
    shift = _finite_or_zero(new_max)
    zs = []
    for k, temp in enumerate(cfg.student_temps):
        inv = 1.0 / temp
        scale = jnp.exp((c["s_max"] - shift) * inv)
        zs.append(c["zs"][:, k] * scale + jnp.sum(jnp.exp((s - shift[:, None]) * inv), axis=-1))
    c["zs"] = jnp.stack(zs, axis=-1)
    c["s_max"] = new_max
    # Teacher: the same, plus the student's logit at the teacher's argmax and W = sum e (t - s).
    b_max = jnp.max(t, axis=-1)
    b_arg = jnp.argmax(t, axis=-1).astype(jnp.int32)
    new_max = jnp.maximum(c["t_max"], b_max)
    later = b_max > c["t_max"]
    c["t_arg"] = jnp.where(later, cols[b_arg], c["t_arg"])
    c["s_at_t"] = jnp.where(later, jnp.take_along_axis(s, b_arg[:, None], axis=-1)[:, 0], c["s_at_t"])
    shift = _finite_or_zero(new_max)
    d = t - s
    zt, ws = [], []
    for k, temp in enumerate(cfg.temps):
        inv = 1.0 / temp
        scale = jnp.exp((c["t_max"] - shift) * inv)
        e = jnp.exp((t - shift[:, None]) * inv)
        zt.append(c["zt"][:, k] * scale + jnp.sum(e, axis=-1))
        # e == 0 where t == -inf (a sparse teacher's missing entries): select, never 0 * inf.
        ws.append(c["w"][:, k] * scale + jnp.sum(jnp.where(e > 0, e * d, 0.0), axis=-1))
    c["zt"] = jnp.stack(zt, axis=-1)
    c["w"] = jnp.stack(ws, axis=-1)
    c["t_max"] = new_max
    return c


def _combine_shards(c, cfg, num_columns):
    """Combines the statistics of the vocabulary shards (identity without ``vocab_axis_name``)."""
    axis = cfg.vocab_axis_name
    if axis is None:
        return c
    big = jnp.int32(num_columns)
    out = {}
    s_max = jax.lax.pmax(c["s_max"], axis)
    out["s_arg"] = jax.lax.pmin(jnp.where(c["s_max"] == s_max, c["s_arg"], big), axis)
    inv_s = jnp.asarray([1.0 / x for x in cfg.student_temps], _F32)
    out["zs"] = jax.lax.psum(c["zs"] * jnp.exp((c["s_max"] - s_max)[:, None] * inv_s), axis)
    t_max = jax.lax.pmax(c["t_max"], axis)
    t_arg = jax.lax.pmin(jnp.where(c["t_max"] == t_max, c["t_arg"], big), axis)
    inv_t = jnp.asarray([1.0 / x for x in cfg.temps], _F32)
    scale = jnp.exp((c["t_max"] - t_max)[:, None] * inv_t)
    out["zt"] = jax.lax.psum(c["zt"] * scale, axis)
    out["w"] = jax.lax.psum(jnp.where(scale > 0, c["w"] * scale, 0.0), axis)
    # Only the shard owning the global first argmax has it as its own local first argmax.
    out["s_at_t"] = jax.lax.psum(jnp.where(c["t_arg"] == t_arg, c["s_at_t"], 0.0), axis)
    out["s_y"] = jax.lax.psum(c["s_y"], axis)
    out["t_y"] = jax.lax.psum(c["t_y"], axis)
    out.update(s_max=s_max, t_max=t_max, t_arg=t_arg)
    return out


def _finish(c, labels, cfg):
    """Per-token ``(ce, kd, teacher_fired, student_fired)`` and the residuals of the backward pass."""
    lse_s = jnp.log(c["zs"])  # [n, Ks], relative to s_max
    lse_t = jnp.log(c["zt"])  # [n, K], relative to t_max
    ce = lse_s[:, cfg.ce_index] + c["s_max"] - c["s_y"]
    kd = jnp.zeros_like(ce)
    d_max = c["t_max"] - c["s_max"]
    gap_s = c["s_y"] - c["s_max"]  # s_y - s_m' <= 0
    for k, temp in enumerate(cfg.temps):
        inv = 1.0 / temp
        ks = cfg.student_temps.index(temp)
        p_m = jnp.exp(-lse_t[:, k])
        p_y = jnp.exp((c["t_y"] - c["t_max"]) * inv - lse_t[:, k])
        kl = (c["w"][:, k] / c["zt"][:, k] - d_max) * inv - lse_t[:, k] + lse_s[:, ks]
        kl = kl - (p_m - p_y) * (c["s_y"] - c["s_at_t"]) * inv
        kd = kd + temp * temp * kl
        if cfg.student_swap:
            q_m = jnp.exp(-lse_s[:, ks])
            q_y = jnp.exp(gap_s * inv - lse_s[:, ks])
            kd = kd + temp * (q_y - q_m) * gap_s
    fired = ((c["t_arg"] != labels).astype(_F32), (c["s_arg"] != labels).astype(_F32))
    residuals = dict(
        s_max=c["s_max"],
        s_arg=c["s_arg"],
        s_y=c["s_y"],
        t_max=c["t_max"],
        t_arg=c["t_arg"],
        t_y=c["t_y"],
        lse_s=lse_s,
        lse_t=lse_t,
    )
    return (ce, kd) + fired, residuals


def _shard_base(cfg, local_columns):
    if cfg.vocab_axis_name is None:
        return jnp.int32(0)
    return jax.lax.axis_index(cfg.vocab_axis_name).astype(jnp.int32) * local_columns


def _blocks(cfg, local_columns):
    return local_columns // cfg.vocab_chunk


def _chunk_forward(h, labels, valid, tok, kernel, bias, const, cfg):
    local_columns = kernel.shape[1]
    base = _shard_base(cfg, local_columns)
    size = cfg.vocab_chunk
    h = jnp.where(valid[:, None], h, jnp.zeros((), h.dtype))

    def body(j, c):
        off = j * size
        s, _ = _linear_block(h, kernel, bias, off, size, cfg.soft_cap)
        t = _teacher_block(cfg, tok, const, off, size, base)
        cols = base + off + jnp.arange(size, dtype=jnp.int32)
        return _update(c, s, t, cols, labels, cfg)

    c = _vary_like(_stats_init(h.shape[0], cfg), h, labels, tok, kernel, bias, const)
    nb = _blocks(cfg, local_columns)
    c = body(0, c) if nb == 1 else jax.lax.fori_loop(0, nb, body, c)
    c = _combine_shards(c, cfg, local_columns * _num_shards(cfg))
    return _finish(c, labels, cfg)


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
    flat = lambda a: a.reshape((-1,) + a.shape[2:])  # noqa: E731
    return tuple(flat(o) for o in outs), {k: flat(v) for k, v in res.items()}


def _coefficients(res, labels, g_ce, g_kd, cfg):
    """Per-token coefficients of ``dL/ds`` (see the module docstring), all ``[n]`` or ``[n, K]``."""
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
        lse_t = res["lse_t"][:, k]
        p_m = jnp.exp(-lse_t)
        p_y = jnp.exp((res["t_y"] - res["t_max"]) * inv - lse_t)
        bt = g_kd * temp
        c_q[ks] = c_q[ks] + bt
        c_p.append(-bt)
        # -bT swap(p0) = -bT p0 - bT (p0_m - p0_y)(e_y - e_m)
        coef_y = coef_y - bt * (p_m - p_y)
        coef_mt = coef_mt + bt * (p_m - p_y)
        if cfg.student_swap:
            lse_s = res["lse_s"][:, ks]
            q_m = jnp.exp(-lse_s)
            q_y = jnp.exp(gap_s * inv - lse_s)
            gap = q_y - q_m
            coef_y = coef_y + bt * gap
            coef_ms = coef_ms - bt * gap
            if not cfg.stop_gradient_pseudo_teacher:
                # d/ds of T (q_y - q_m)(s_y - s_m) through the q's: (s_y - s_m)(q_y e_y - q_m e_m - gap q)
                coef_y = coef_y + g_kd * gap_s * q_y
                coef_ms = coef_ms - g_kd * gap_s * q_m
                c_q[ks] = c_q[ks] - g_kd * gap_s * gap
    return c_q, c_p, coef_y, coef_mt, coef_ms


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
        for k, temp in enumerate(cfg.temps):
            p = jnp.exp((t - t_max) * (1.0 / temp) - res["lse_t"][:, k : k + 1])
            g = g + c_p[k][:, None] * p
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
    nb = _blocks(cfg, local_columns)
    return body(0, carry) if nb == 1 else jax.lax.fori_loop(0, nb, body, carry)


@functools.partial(jax.custom_vjp, nondiff_argnums=(7,))
def per_token(h, kernel, bias, tok, const, labels, valid, cfg):
    """Per-token ``(ce [N], kd [N], teacher_fired [N], student_fired [N])``, float32.

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
