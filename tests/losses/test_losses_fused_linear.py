"""fused_linear_sld_loss and its teacher forms against materialised logits + the dense objective."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from sld_jax import losses

N, HS, HT, V = 14, 6, 5, 16  # N is not a multiple of the token chunk (5): the tail is padded


def _case(seed=0, dtype=jnp.float32):
    """Hidden states and kernels with tied columns, a teacher right on some tokens, ignored tokens."""
    rng = np.random.default_rng(seed)
    hs = rng.standard_normal((N, HS)).astype(np.float32)
    ws = rng.standard_normal((HS, V)).astype(np.float32)
    ht = rng.standard_normal((N, HT)).astype(np.float32)
    wt = (2 * rng.standard_normal((HT, V))).astype(np.float32)
    # Ties: columns 3 and 9 are identical (and large) in both kernels, so on many rows the maximum
    # is reached twice and the first argmax (3) must be the one swapped.
    ws[:, 9] = ws[:, 3] = 3 * np.abs(ws[:, 3])
    wt[:, 9] = wt[:, 3]
    hs[:, :] = np.abs(hs) * np.where(np.arange(N) % 3 == 0, 1, -1)[:, None]
    teacher_top = np.argmax(ht @ wt, -1)
    labels = rng.integers(0, V, N)
    labels[::2] = teacher_top[::2]  # teacher right on half the tokens, wrong (mostly) elsewhere
    labels[1] = 9  # the second of a tied pair
    where = np.ones(N, bool)
    where[[4, 11]] = False
    labels[4] = -100  # an ignore index on a masked token is allowed
    hs[11] = np.nan  # garbage on a masked token must not reach the loss or the gradients
    cast = lambda x: jnp.asarray(x, dtype)  # noqa: E731
    return dict(
        hs=cast(hs),
        ws=cast(ws),
        ht=cast(ht),
        wt=cast(wt),
        labels=jnp.asarray(labels, jnp.int32),
        where=jnp.asarray(where),
    )


def _dense(student_logits_fn, teacher_logits, labels, where, **kw):
    labels = jnp.where(where, labels, 0)

    def loss(*args):
        s = student_logits_fn(*args)
        s = jnp.where(where[:, None], s, 0.0)
        return losses.sld_objective(s, None, teacher_logits, None, labels, where=where, **kw)

    return loss


def _assert_grads_close(got, want):
    for g, w in zip(got, want):
        scale = float(jnp.max(jnp.abs(w)))
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-5 * scale)


LINEAR_CASES = [
    dict(student_swap=False, stop_gradient_pseudo_teacher=False, vocab_chunk=None),
    dict(student_swap=True, stop_gradient_pseudo_teacher=False, vocab_chunk=4, bias=True, cap=6.0),
    dict(student_swap=True, stop_gradient_pseudo_teacher=True, vocab_chunk=None, cap=6.0),
    dict(student_swap=True, stop_gradient_pseudo_teacher=False, vocab_chunk=8),
]


@pytest.mark.parametrize("case", LINEAR_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_fused_linear_sld_equals_dense_objective(case):
    x = _case()
    case = dict(case)
    cap = case.pop("cap", None)
    bias = case.pop("bias", False)
    vocab_chunk = case.pop("vocab_chunk")
    rng = np.random.default_rng(1)
    bs = jnp.asarray(rng.standard_normal(V), jnp.float32) if bias else jnp.zeros(V)
    bt = jnp.asarray(rng.standard_normal(V), jnp.float32) if bias else None
    softcap = (lambda z: z) if cap is None else (lambda z: cap * jnp.tanh(z / cap))
    teacher = softcap(x["ht"] @ x["wt"] + (0.0 if bt is None else bt))

    def fused(hs, ws, b):
        return losses.fused_linear_sld_loss(
            hs,
            ws,
            x["ht"],
            x["wt"],
            x["labels"],
            where=x["where"],
            token_chunk=5,
            vocab_chunk=vocab_chunk,
            logit_soft_cap=cap,
            student_bias=b if bias else None,
            teacher_bias=bt,
            **case,
        )

    dense = _dense(lambda hs, ws, b: softcap(hs @ ws + b), teacher, x["labels"], x["where"], **case)
    hs = jnp.where(x["where"][:, None], x["hs"], 0.0)  # the dense path cannot mask NaN inside a matmul
    (got, metrics), g_got = jax.jit(jax.value_and_grad(fused, (0, 1, 2), has_aux=True))(x["hs"], x["ws"], bs)
    (want, terms), g_want = jax.value_and_grad(dense, (0, 1, 2), has_aux=True)(hs, x["ws"], bs)
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["ce"]), float(terms["ce"]), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["teacher_swap_fraction"]), float(terms["teacher_swap_fraction"]))
    np.testing.assert_allclose(float(metrics["student_swap_fraction"]), float(terms["student_swap_fraction"]))
    assert float(metrics["valid_tokens"]) == N - 2
    assert 0 < float(metrics["teacher_swap_fraction"]) < 1
    _assert_grads_close(g_got[: 3 if bias else 2], g_want[: 3 if bias else 2])
    assert np.all(np.asarray(g_got[0])[[4, 11]] == 0)


def test_fused_linear_sld_teacher_gets_no_gradient_and_leading_axes_work():
    x = _case()

    def fused(hs, ht, wt):
        return losses.fused_linear_sld_loss(
            hs.reshape(2, 7, HS),
            x["ws"],
            ht.reshape(2, 7, HT),
            wt,
            x["labels"].reshape(2, 7),
            where=x["where"].reshape(2, 7),
            student_swap=True,
            token_chunk=4,
        )[0]

    flat = losses.fused_linear_sld_loss(
        x["hs"], x["ws"], x["ht"], x["wt"], x["labels"], where=x["where"], student_swap=True, token_chunk=4
    )[0]
    value, grads = jax.value_and_grad(fused, (1, 2))(x["hs"], x["ht"], x["wt"])
    np.testing.assert_allclose(float(value), float(flat), rtol=1e-6)
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in grads)


@pytest.mark.parametrize("form", ["logits", "topk_full", "topk_3"])
def test_fused_sld_teacher_logit_forms_equal_dense(form):
    x = _case()
    teacher = x["ht"] @ x["wt"]
    teacher = teacher.at[0, 5].set(-jnp.inf)  # a -inf teacher logit has probability 0
    labels = jnp.where(x["where"], x["labels"], 0)
    kw = dict(student_swap=True, token_chunk=5, vocab_chunk=4)
    if form == "logits":
        fused = lambda hs, ws: losses.fused_linear_sld_loss_from_teacher_logits(  # noqa: E731
            hs, ws, teacher, x["labels"], where=x["where"], **kw
        )
        target = teacher
    else:
        k = V if form == "topk_full" else 3
        values, indices, at_label = losses.sparse_teacher_logits(teacher, labels, k=k)
        fused = lambda hs, ws: losses.fused_linear_sld_loss_from_teacher_topk(  # noqa: E731
            hs, ws, values, indices, at_label, x["labels"], where=x["where"], **kw
        )
        # What the top-k form approximates: the teacher's logits outside top-k ∪ {label} are -inf.
        rows = jnp.arange(N)[:, None]
        keep = jnp.zeros((N, V), bool).at[rows, indices].set(True).at[rows[:, 0], labels].set(True)
        target = jnp.where(keep, teacher, -jnp.inf)
    dense = _dense(lambda hs, ws: hs @ ws, target, x["labels"], x["where"], student_swap=True)
    hs = jnp.where(x["where"][:, None], x["hs"], 0.0)
    (got, _), g_got = jax.jit(jax.value_and_grad(fused, (0, 1), has_aux=True))(x["hs"], x["ws"])
    (want, _), g_want = jax.value_and_grad(dense, (0, 1), has_aux=True)(hs, x["ws"])
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
    _assert_grads_close(g_got, g_want)


def _temp_bytes(n, vocab, hidden, token_chunk, vocab_chunk=None, dense=False):
    s = jax.ShapeDtypeStruct

    def fused(hs, ws, ht, wt, y):
        return losses.fused_linear_sld_loss(
            hs, ws, ht, wt, y, student_swap=True, token_chunk=token_chunk, vocab_chunk=vocab_chunk
        )[0]

    def materialised(hs, ws, ht, wt, y):
        return losses.sld_objective(hs @ ws, None, ht @ wt, None, y, student_swap=True)[0]

    fn = jax.value_and_grad(materialised if dense else fused, (0, 1))
    args = (s((n, hidden), jnp.float32), s((hidden, vocab), jnp.float32)) * 2 + (s((n,), jnp.int32),)
    return jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize("vocab_chunk", [None, 128])
def test_fused_linear_sld_temporary_memory_is_bounded_by_the_chunk(vocab_chunk):
    vocab, hidden, chunk = 512, 32, 64
    small, large = (_temp_bytes(n, vocab, hidden, chunk, vocab_chunk) for n in (256, 512))
    # Doubling N adds only the per-token statistics (~22 floats a token), nothing that scales with V.
    assert large - small <= 128 * 256
    # Stated bound: 16 chunk-sized float32 buffers (token_chunk × vocab_chunk), plus the float32
    # kernel gradient [H, V] and 128 bytes a token.
    block = chunk * (vocab_chunk or vocab) * 4
    assert large <= 16 * block + hidden * vocab * 4 + 128 * 512
    dense_small, dense_large = (_temp_bytes(n, vocab, hidden, chunk, dense=True) for n in (256, 512))
    assert dense_large - dense_small >= 256 * vocab * 4  # the dense path grows with N × V


@pytest.mark.cross_program
@pytest.mark.parametrize("form", ["linear", "topk"])
def test_fused_linear_sld_vocab_and_token_sharded_equals_unsharded(mesh, form):
    """Sharded over tokens and vocabulary vs one device: two programs that sum in another order, one
    float32 evaluation (no trajectory to amplify rounding): loss to 1e-5 relative, gradients to
    1e-5 of their scale (measured: <= 6e-8 and <= 2e-7 with the suite's and XLA's default settings,
    AVX and SSE4.2 code)."""
    x = _case(seed=3)
    n = 12  # tokens split over "data"
    hs, ht, labels, where = x["hs"][:n], x["ht"][:n], x["labels"][:n], x["where"][:n]
    hs = jnp.where(where[:, None], hs, 0.0)
    kw = dict(student_swap=True, token_chunk=4, vocab_chunk=4)
    if form == "linear":
        teacher = (ht, x["wt"])
        specs = (P("data"), P(None, "model"))

        def loss(hs, ws, teacher, labels, where, **axes):
            return losses.fused_linear_sld_loss(hs, ws, *teacher, labels, where=where, **kw, **axes)
    else:
        teacher = losses.sparse_teacher_logits(ht @ x["wt"], jnp.where(where, labels, 0), k=5)
        specs = (P("data"), P("data"), P("data"))

        def loss(hs, ws, teacher, labels, where, **axes):
            return losses.fused_linear_sld_loss_from_teacher_topk(
                hs, ws, *teacher, labels, where=where, **kw, **axes
            )

    in_specs = (P("data"), P(None, "model"), specs, P("data"), P("data"))
    sharded = jax.shard_map(
        lambda *a: loss(*a, vocab_axis_name="model", token_axis_name="data"),
        mesh=mesh,
        in_specs=in_specs,
        out_specs=(P(), P()),
    )
    args = (hs, x["ws"], teacher, labels, where)
    placed = jax.tree.map(
        lambda a, spec: jax.device_put(a, NamedSharding(mesh, spec)),
        args,
        in_specs,
        is_leaf=lambda a: isinstance(a, P),
    )

    def grads(fn, a):
        return jax.jit(jax.value_and_grad(lambda h, w: fn(h, w, *a[2:])[0], (0, 1)))(a[0], a[1])

    (want, g_want), (got, g_got) = grads(loss, args), grads(sharded, placed)
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
    _assert_grads_close(g_got, g_want)


@pytest.mark.cross_program
def test_fused_linear_sld_bf16_is_finite_and_close_to_float32():
    """Documented bf16 error: against float32 dense on the same (bf16-representable) values the
    loss is within 1e-5 relative (logits are accumulated in float32, never rounded to bf16), and the
    gradients within 1 % of their largest entry (the backward matmuls take dL/ds rounded to bf16)."""
    x = _case(dtype=jnp.bfloat16)
    f32 = {k: (v.astype(jnp.float32) if v.dtype == jnp.bfloat16 else v) for k, v in x.items()}

    def fused(hs, ws):
        return losses.fused_linear_sld_loss(
            hs, ws, x["ht"], x["wt"], x["labels"], where=x["where"], student_swap=True, token_chunk=5
        )[0]

    dense = _dense(lambda hs, ws: hs @ ws, f32["ht"] @ f32["wt"], x["labels"], x["where"], student_swap=True)
    got, g_got = jax.jit(jax.value_and_grad(fused, (0, 1)))(x["hs"], x["ws"])
    hs = jnp.where(x["where"][:, None], f32["hs"], 0.0)
    (want, _), g_want = jax.value_and_grad(dense, (0, 1), has_aux=True)(hs, f32["ws"])
    assert got.dtype == jnp.float32 and [g.dtype for g in g_got] == [jnp.bfloat16] * 2
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
    for g, w in zip(g_got, g_want):
        g = np.asarray(g.astype(jnp.float32))
        assert np.all(np.isfinite(g))
        assert np.max(np.abs(g - w)) <= 1e-2 * float(jnp.max(jnp.abs(w)))


def test_fused_linear_sld_rejects_bad_inputs(mesh):
    x = _case()
    x["labels"] = jnp.where(x["where"], x["labels"], 0)

    def call(**kw):
        arrays = [kw.pop(k, x[k]) for k in ("hs", "ws", "ht", "wt", "labels")]
        return losses.fused_linear_sld_loss(*arrays, student_swap=True, **kw)

    with pytest.raises(ValueError, match="last axis .* must equal student_kernel's first axis"):
        call(ws=x["ws"][:-1])
    with pytest.raises(ValueError, match="same vocabulary size"):
        call(wt=x["wt"][:, :-1])
    with pytest.raises(ValueError, match="same leading"):
        call(ht=x["ht"][:-1])
    # A kernel that is not [H, V] (a vector, a stacked kernel) is named with its shape, never an
    # IndexError; so is a teacher kernel whose hidden size differs from teacher_hidden's.
    for key, name in (("ws", "student_kernel"), ("wt", "teacher_kernel")):
        for bad in (x[key][:, 0], x[key][None]):
            shape = str(bad.shape).replace("(", r"\(").replace(")", r"\)")
            with pytest.raises(ValueError, match=rf"{name} must be a 2-D \[H, V\] .* got shape {shape}"):
                call(**{key: bad})
    with pytest.raises(ValueError, match="last axis .* must equal teacher_kernel's first axis"):
        call(wt=x["wt"][:-1])
    with pytest.raises(ValueError, match=r"student_kernel must be a 2-D \[H, V\]"):
        losses.fused_linear_sld_loss_from_teacher_logits(
            x["hs"], x["ws"][:, 0], x["hs"] @ x["ws"], x["labels"], student_swap=True
        )
    with pytest.raises(ValueError, match=r"student_kernel must be a 2-D \[H, V\]"):
        losses.fused_linear_sld_loss_from_teacher_topk(
            x["hs"],
            x["ws"][:, 0],
            *losses.sparse_teacher_logits(x["hs"] @ x["ws"], x["labels"], k=2),
            x["labels"],
            student_swap=True,
        )
    with pytest.raises(
        ValueError, match=r"vocab_chunk \(5\) must divide the vocabulary size \(16\); use e.g. vocab_chunk=4"
    ):
        call(vocab_chunk=5)
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="token_chunk must be a Python int >= 1"):
            call(token_chunk=bad)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 16\)"):
        call(labels=x["labels"].at[0].set(16))
    with pytest.raises(ValueError, match="names no mesh axis"):
        call(vocab_axis_name="model")
    # Under shard_map each shard's slice (16 / 2 = 8) must be divisible by vocab_chunk.
    sharded = jax.shard_map(
        lambda ws, wt: call(ws=ws, wt=wt, vocab_chunk=3, vocab_axis_name="model")[0],
        mesh=mesh,
        in_specs=P(None, "model"),
        out_specs=P(),
        check_vma=False,
    )
    with pytest.raises(
        ValueError, match=r"divide each shard's vocabulary slice \(8\); use e.g. vocab_chunk=2"
    ):
        sharded(*(jax.device_put(x[k], NamedSharding(mesh, P(None, "model"))) for k in ("ws", "wt")))
    # Inside jit label values are unknown: the checkify form turns a bad label into an error.

    def step(labels):
        labels = losses.checked_labels(labels, V)
        return call(labels=labels, where=x["where"])[0]

    err, _ = jax.jit(checkify.checkify(step))(x["labels"].at[2].set(V + 3))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 16\)"):
        err.throw()


def test_lm_benchmark_prints_its_table(capsys):
    from sld_jax.bench import lm

    argv = ["--sizes", "8x16", "--hidden", "4", "--token-chunk", "4", "--repeats", "1"]
    assert lm.main(argv + ["--divergences", "sld,jsd"]) == 0
    out = capsys.readouterr().out
    assert "machine:" in out and "load average" in out
    assert "| sld | 8 | 16 |" in out and "| jsd | 8 | 16 |" in out
    with pytest.raises(SystemExit):
        lm.main(argv + ["--divergences", "kl"])
    assert "divergences must be among sld, forward_kl" in capsys.readouterr().err
