"""fused_linear_distill_loss (every divergence × teacher transform), its teacher forms and the fused
cross-entropy, against a dense reference on materialised logits written in plain jnp here."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from sld_jax import losses

N, HS, HT, V = 14, 6, 5, 16  # N is not a multiple of the token chunk (5): the tail is padded
DIVERGENCES = ("forward_kl", "reverse_kl", "symmetric_kl", "jsd", "tvd")
TRANSFORMS = (None, "swap", "conditional_swap")


def _case(seed=0):
    """Hidden states and kernels with a teacher right on half the tokens, two masked tokens (one
    with NaN hidden states and one with an ignore index)."""
    rng = np.random.default_rng(seed)
    hs = rng.standard_normal((N, HS)).astype(np.float32)
    ws = rng.standard_normal((HS, V)).astype(np.float32)
    ht = rng.standard_normal((N, HT)).astype(np.float32)
    wt = (2 * rng.standard_normal((HT, V))).astype(np.float32)
    labels = rng.integers(0, V, N)
    labels[::2] = np.argmax(ht @ wt, -1)[::2]
    where = np.ones(N, bool)
    where[[4, 11]] = False
    labels[4] = -100
    hs[11] = np.nan
    return dict(
        hs=jnp.asarray(hs),
        ws=jnp.asarray(ws),
        bs=jnp.asarray(rng.standard_normal(V), jnp.float32),
        ht=jnp.asarray(ht),
        wt=jnp.asarray(wt),
        labels=jnp.asarray(labels, jnp.int32),
        where=jnp.asarray(where),
    )


def _divergence(lp, lq, name, beta):
    """D(p, q) per row from log-probabilities ``[n, V]`` (p the teacher, q the student)."""
    p, q = jnp.exp(lp), jnp.exp(lq)
    forward = jnp.sum(jnp.where(p > 0, p * (lp - lq), 0.0), -1)
    reverse = jnp.sum(q * (lq - lp), -1)
    if name == "forward_kl" or (name == "jsd" and beta == 0):
        return forward
    if name == "reverse_kl" or (name == "jsd" and beta == 1):
        return reverse
    if name == "symmetric_kl":
        return forward + reverse
    if name == "jsd":
        lm = jnp.log(beta * p + (1 - beta) * q)
        return beta * jnp.sum(jnp.where(p > 0, p * (lp - lm), 0.0), -1) + (1 - beta) * jnp.sum(
            q * (lq - lm), -1
        )
    return 0.5 * jnp.sum(jnp.abs(p - q), -1)


def dense_distill(s, t, labels, where, *, divergence="forward_kl", beta=0.5, temperatures=(1.0,),
                  temperature_scaling=True, teacher_transform=None, conditional_swap_alpha=0.5,
                  student_swap=False, stop_gradient_pseudo_teacher=False, ce_weight=0.0, kd_weight=1.0):  # fmt: skip
    """The loss on materialised logits ``[N, V]``: the definition the fused forms must equal."""
    labels = jnp.where(where, labels, 0)
    s = jnp.where(where[:, None], s, 0.0)
    t = jnp.where(where[:, None], jax.lax.stop_gradient(t), 0.0)
    if teacher_transform == "swap":
        t = losses.swap_logits(t, labels)
    elif teacher_transform == "conditional_swap":
        t = losses.conditional_swap(t, labels, alpha=conditional_swap_alpha)
    ce = jax.nn.logsumexp(s, -1) - jnp.take_along_axis(s, labels[:, None], -1)[:, 0]
    kd = jnp.zeros(s.shape[0])
    for temp in temperatures:
        scale = temp * temp if temperature_scaling else 1.0
        lq = jax.nn.log_softmax(s / temp)
        kd = kd + scale * _divergence(jax.nn.log_softmax(t / temp), lq, divergence, beta)
        if student_swap:  # SLD's pseudo-teacher: KL(softmax(swap(s) / T) ‖ q)
            swapped = losses.swap_logits(s, labels)
            if stop_gradient_pseudo_teacher:
                swapped = jax.lax.stop_gradient(swapped)
            lps = jax.nn.log_softmax(swapped / temp)
            kd = kd + scale * jnp.sum(jnp.exp(lps) * (lps - lq), -1)
    count = jnp.sum(where)
    return (
        ce_weight * jnp.sum(jnp.where(where, ce, 0)) + kd_weight * jnp.sum(jnp.where(where, kd, 0))
    ) / count


def _softcap(z, cap):
    return z if cap is None else cap * jnp.tanh(z / cap)


def _assert_close(got, want, g_got, g_want):
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
    for g, w in zip(g_got, g_want):
        scale = float(jnp.max(jnp.abs(w)))
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-5 * scale)


# Every divergence × transform, each with a different mix of the other options (temperatures with
# and without 1, T² or not, vocabulary blocks, soft cap, pseudo-teacher, JSD's β).
_OPTIONS = [
    dict(temperatures=(1.0, 2.0)),
    dict(temperatures=(2.0,), vocab_chunk=4, logit_soft_cap=6.0, temperature_scaling=False),
    dict(temperatures=(1.0, 3.0), vocab_chunk=8, ce_weight=0.2),
]
CASES = [
    dict(divergence=d, teacher_transform=tr, **_OPTIONS[i % 3])
    for i, (d, tr) in enumerate(itertools.product(DIVERGENCES, TRANSFORMS))
]
for case in CASES:
    if case["divergence"] == "jsd":
        case["beta"] = 0.3 if case["teacher_transform"] != "swap" else 0.7
    if case["teacher_transform"] is not None and case["divergence"] in ("forward_kl", "reverse_kl", "jsd"):
        case["student_swap"] = True
        case["stop_gradient_pseudo_teacher"] = case["divergence"] == "reverse_kl"
    if case["teacher_transform"] == "conditional_swap":
        case["conditional_swap_alpha"] = 0.6


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['divergence']}-{c['teacher_transform']}")
def test_fused_distill_equals_the_dense_definition(case):
    x = _case()
    case = dict(case)
    vocab_chunk = case.pop("vocab_chunk", None)
    cap = case.get("logit_soft_cap")

    def fused(hs, ws, bs):
        return losses.fused_linear_distill_loss(
            hs, ws, x["ht"], x["wt"], x["labels"], where=x["where"], student_bias=bs, token_chunk=5,
            vocab_chunk=vocab_chunk, **case,
        )  # fmt: skip

    dense_kw = {k: v for k, v in case.items() if k != "logit_soft_cap"}

    def dense(hs, ws, bs):
        s = _softcap(hs @ ws + bs, cap)
        return dense_distill(s, _softcap(x["ht"] @ x["wt"], cap), x["labels"], x["where"], **dense_kw)

    hs0 = jnp.where(x["where"][:, None], x["hs"], 0.0)
    (got, metrics), g_got = jax.jit(jax.value_and_grad(fused, (0, 1, 2), has_aux=True))(
        x["hs"], x["ws"], x["bs"]
    )
    want, g_want = jax.value_and_grad(dense, (0, 1, 2))(hs0, x["ws"], x["bs"])
    _assert_close(got, want, g_got, g_want)
    assert np.isfinite(np.asarray(g_got[0])).all()  # the NaN of a masked token reaches nothing
    assert int(metrics["valid_tokens"]) == N - 2


def test_jsd_endpoints_are_the_two_kl_divergences_and_transforms_change_only_what_they_say():
    x = _case(seed=1)
    args = (x["hs"], x["ws"], x["ht"], x["wt"], x["labels"])

    def loss(**kw):
        return float(losses.fused_linear_distill_loss(*args, where=x["where"], **kw)[0])

    assert loss(divergence="jsd", beta=0.0) == loss(divergence="forward_kl")
    assert loss(divergence="jsd", beta=1.0) == loss(divergence="reverse_kl")
    np.testing.assert_allclose(
        loss(divergence="symmetric_kl"),
        loss(divergence="forward_kl") + loss(divergence="reverse_kl"),
        rtol=1e-6,
    )
    # alpha = 1 swaps every wrong row whose top probability is below 1: the plain swap here.
    np.testing.assert_allclose(
        loss(teacher_transform="conditional_swap", conditional_swap_alpha=1.0),
        loss(teacher_transform="swap"),
        rtol=1e-6,
    )
    # The SLD form is this loss with SLD's settings.
    sld = losses.fused_linear_sld_loss(*args, where=x["where"], student_swap=True)[0]
    kw = dict(temperatures=(1.0, 2.0, 3.0, 4.0, 5.0, 6.0), teacher_transform="swap", student_swap=True)
    assert float(sld) == loss(ce_weight=0.1, kd_weight=0.9, **kw)


@pytest.mark.parametrize("divergence", ["jsd", "tvd", "reverse_kl"])
def test_teacher_logit_and_topk_forms_equal_the_dense_definition(divergence):
    """Precomputed logits (with a -inf entry) and the sparse top-k teacher, exact against the dense
    definition on the sparsified logits (where the divergence is defined for a sparse teacher)."""
    x = _case(seed=2)
    teacher = (x["ht"] @ x["wt"]).at[0, 5].set(-jnp.inf)
    labels = jnp.where(x["where"], x["labels"], 0)
    kw = dict(divergence=divergence, teacher_transform="swap", temperatures=(1.0, 2.0))
    if divergence == "jsd":
        kw["beta"] = 0.4
    hs0 = jnp.where(x["where"][:, None], x["hs"], 0.0)
    forms = {"logits": teacher}
    if divergence != "reverse_kl":
        values, indices, at_label = losses.sparse_teacher_logits(teacher, labels, k=3)
        rows = jnp.arange(N)[:, None]
        keep = jnp.zeros((N, V), bool).at[rows, indices].set(True).at[rows[:, 0], labels].set(True)
        forms["topk"] = ((values, indices, at_label), jnp.where(keep, teacher, -jnp.inf))
    for form, spec in forms.items():
        if form == "logits":
            fused = lambda hs, ws: losses.fused_linear_distill_loss_from_teacher_logits(  # noqa: E731
                hs, ws, teacher, x["labels"], where=x["where"], token_chunk=5, vocab_chunk=4, **kw
            )
            target = teacher if divergence != "reverse_kl" else jnp.where(jnp.isinf(teacher), -30.0, teacher)
            if divergence == "reverse_kl":  # a -inf teacher entry makes the reverse KL infinite
                fused = lambda hs, ws: losses.fused_linear_distill_loss_from_teacher_logits(  # noqa: E731
                    hs, ws, target, x["labels"], where=x["where"], token_chunk=5, vocab_chunk=4, **kw
                )
        else:
            sparse, target = spec
            fused = lambda hs, ws: losses.fused_linear_distill_loss_from_teacher_topk(  # noqa: E731
                hs, ws, *sparse, x["labels"], where=x["where"], token_chunk=5, vocab_chunk=4, **kw
            )
        dense = lambda hs, ws: dense_distill(hs @ ws, target, x["labels"], x["where"], **kw)  # noqa: E731
        (got, _), g_got = jax.jit(jax.value_and_grad(fused, (0, 1), has_aux=True))(x["hs"], x["ws"])
        want, g_want = jax.value_and_grad(dense, (0, 1))(hs0, x["ws"])
        _assert_close(got, want, g_got, g_want)


def test_fused_cross_entropy_equals_the_dense_mean_and_its_gradient():
    x = _case(seed=4)

    def fused(hs, ws, bs):
        return losses.fused_linear_cross_entropy(
            hs, ws, x["labels"], where=x["where"], bias=bs, token_chunk=5, vocab_chunk=8, logit_soft_cap=5.0
        )

    def dense(hs, ws, bs):
        s = _softcap(hs @ ws + bs, 5.0)
        return dense_distill(s, s, x["labels"], x["where"], ce_weight=1.0, kd_weight=0.0)

    hs0 = jnp.where(x["where"][:, None], x["hs"], 0.0)
    (got, m), g_got = jax.jit(jax.value_and_grad(fused, (0, 1, 2), has_aux=True))(x["hs"], x["ws"], x["bs"])
    want, g_want = jax.value_and_grad(dense, (0, 1, 2))(hs0, x["ws"], x["bs"])
    _assert_close(got, want, g_got, g_want)
    s = _softcap(hs0 @ x["ws"] + x["bs"], 5.0)
    right = (jnp.argmax(s, -1) == x["labels"]) & x["where"]
    assert float(m["top1"]) == pytest.approx(float(jnp.sum(right) / jnp.sum(x["where"])))


def test_bad_settings_are_one_sentence_errors():
    x = _case()
    args = (x["hs"], x["ws"], x["ht"], x["wt"], x["labels"])
    with pytest.raises(ValueError, match="divergence must be one of forward_kl, reverse_kl"):
        losses.fused_linear_distill_loss(*args, divergence="kl")
    with pytest.raises(ValueError, match="beta"):
        losses.fused_linear_distill_loss(*args, divergence="jsd", beta=1.5)
    with pytest.raises(ValueError, match="student_swap=True adds SLD's pseudo-teacher term"):
        losses.fused_linear_distill_loss(*args, student_swap=True)
    with pytest.raises(ValueError, match="teacher_transform must be None, 'swap' or 'conditional_swap'"):
        losses.fused_linear_distill_loss(*args, teacher_transform="flip")
    with pytest.raises(ValueError, match="conditional_swap_alpha"):
        losses.fused_linear_distill_loss(
            *args, teacher_transform="conditional_swap", conditional_swap_alpha=0.0
        )
    sparse = losses.sparse_teacher_logits(x["ht"] @ x["wt"], jnp.where(x["where"], x["labels"], 0), k=3)
    for divergence, beta in (("reverse_kl", None), ("symmetric_kl", None), ("jsd", 1.0)):
        with pytest.raises(ValueError, match="needs the teacher's probability of every token"):
            losses.fused_linear_distill_loss_from_teacher_topk(
                x["hs"], x["ws"], *sparse, x["labels"], divergence=divergence, beta=beta
            )


def _temp_bytes(divergence, n, vocab=512, hidden=32, token_chunk=64, vocab_chunk=128):
    s = jax.ShapeDtypeStruct

    def fused(hs, ws, ht, wt, y):
        return losses.fused_linear_distill_loss(
            hs, ws, ht, wt, y, divergence=divergence, token_chunk=token_chunk, vocab_chunk=vocab_chunk
        )[0]

    args = (s((n, hidden), jnp.float32), s((hidden, vocab), jnp.float32)) * 2 + (s((n,), jnp.int32),)
    fn = jax.jit(jax.value_and_grad(fused, (0, 1)))
    return fn.lower(*args).compile().memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize("divergence", ["reverse_kl", "jsd"])
def test_temporary_memory_is_bounded_by_the_chunk_for_one_and_two_pass_divergences(divergence):
    small, large = _temp_bytes(divergence, 256), _temp_bytes(divergence, 512)
    assert large - small <= 160 * 256  # per-token statistics only, nothing that scales with V
    assert large <= 16 * 64 * 128 * 4 + 32 * 512 * 4 + 160 * 512


@pytest.mark.cross_program
@pytest.mark.parametrize("divergence", ["symmetric_kl", "jsd"])  # one-pass and two-pass (TVD: as JSD)
def test_vocab_and_token_sharded_equals_unsharded(mesh, divergence):
    """Sharded over tokens and vocabulary vs one device: the same sums in another order, one float32
    evaluation: loss to 1e-5 relative, gradients to 1e-5 of their scale."""
    x = _case(seed=3)
    n = 12
    hs, ht, labels, where = x["hs"][:n], x["ht"][:n], x["labels"][:n], x["where"][:n]
    hs = jnp.where(where[:, None], hs, 0.0)
    kw = dict(
        divergence=divergence,
        teacher_transform="conditional_swap",
        temperatures=(2.0,),
        token_chunk=4,
        vocab_chunk=4,
    )

    def loss(hs, ws, ht, wt, labels, where, **axes):
        return losses.fused_linear_distill_loss(hs, ws, ht, wt, labels, where=where, **kw, **axes)

    in_specs = (P("data"), P(None, "model"), P("data"), P(None, "model"), P("data"), P("data"))
    sharded = jax.shard_map(
        lambda *a: loss(*a, vocab_axis_name="model", token_axis_name="data"),
        mesh=mesh,
        in_specs=in_specs,
        out_specs=(P(), P()),
    )
    args = (hs, x["ws"], ht, x["wt"], labels, where)
    placed = [jax.device_put(a, NamedSharding(mesh, spec)) for a, spec in zip(args, in_specs)]

    def grads(fn, a):
        return jax.jit(jax.value_and_grad(lambda h, w: fn(h, w, *a[2:])[0], (0, 1)))(a[0], a[1])

    (want, g_want), (got, g_got) = grads(loss, args), grads(sharded, placed)
    _assert_close(got, want, g_got, g_want)
