"""RKD: hand-computed numbers, a PyTorch transcription of mdistiller's distiller, properties, + SLD.

The PyTorch functions below are written for these tests from the reference's formulas
(mdistiller's ``RKD.py``: clamped expanded-square distances with a zero diagonal, each side over
its mean positive distance, cosines of unit difference vectors, smooth-L1 means over all B² pairs
and B³ triplets, weights 25 / 50, CE weight 1). sld_jax must match them in value and gradient.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sld_jax import losses

B, DS, DT, C = 8, 6, 5, 10

# The hand case (B = 3, D = 2). Student: a 3-4-5 right triangle, distances 3, 4, 5 with mean 4,
# so the normalised distances are 0.75, 1, 1.25. Teacher: three collinear points at 0, 1, 2,
# distances 1, 2, 1 with mean 4/3, normalised 0.75, 1.5, 0.75. Differences 0, -0.5, 0.5 give
# Huber 0, 0.125, 0.125; each pair counts twice among the 9 entries: distance = 0.5 / 9 = 1/18.
# Angles (the cosine at anchor i between the other two): student 0 (right angle), 9/15 = 0.6,
# 16/20 = 0.8; teacher 1, -1, 1. Differences -1, 1.6, -0.2 give Huber 0.5, 1.1, 0.02; each
# anchor's pair counts twice among the 27 triplets (the degenerate ones are 0 on both sides, and
# j == k gives cosine 1 on both): angle = 2 * 1.62 / 27 = 0.12.
HAND_S = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]], np.float32)
HAND_T = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]], np.float32)
HAND_DISTANCE, HAND_ANGLE = 1.0 / 18.0, 0.12


@functools.partial(jax.jit, static_argnames=("squared",))
def rkd_value_and_grad(s, t, where=None, squared=False):
    """Value and student gradient of ``rkd_loss``, compiled once per shape (fast on 2 cores)."""
    return jax.value_and_grad(lambda x: losses.rkd_loss(x, t, where=where, squared=squared))(s)


def test_hand_computed_terms_and_weights():
    distance, angle = jax.jit(losses.rkd_terms)(jnp.asarray(HAND_S), jnp.asarray(HAND_T))
    np.testing.assert_allclose(float(distance), HAND_DISTANCE, rtol=1e-6)
    np.testing.assert_allclose(float(angle), HAND_ANGLE, rtol=1e-6)
    total = losses.rkd_loss(jnp.asarray(HAND_S), jnp.asarray(HAND_T))
    np.testing.assert_allclose(float(total), 25.0 / 18.0 + 50.0 * 0.12, rtol=1e-6)
    only_d = losses.rkd_loss(jnp.asarray(HAND_S), jnp.asarray(HAND_T), distance_weight=1.0, angle_weight=0.0)
    np.testing.assert_allclose(float(only_d), HAND_DISTANCE, rtol=1e-6)
    # Swapping the roles changes only which side is differentiated: the Huber terms are symmetric.
    np.testing.assert_allclose(
        float(losses.rkd_loss(jnp.asarray(HAND_T), jnp.asarray(HAND_S))), float(total), rtol=1e-6
    )


# ---- PyTorch transcription ------------------------------------------------------------------

torch = None


def _torch():
    global torch
    torch = pytest.importorskip("torch")
    return torch


def torch_rkd(fs, ft, *, squared=False, eps=1e-12, wd=25.0, wa=50.0):
    F = torch.nn.functional

    def distances(e):
        n2 = (e * e).sum(1)
        sq = (n2[:, None] + n2[None, :] - 2.0 * (e @ e.t())).clamp(min=eps)
        d = sq if squared else sq.sqrt()
        return d * (1.0 - torch.eye(e.shape[0], dtype=e.dtype))

    def relative(e):
        d = distances(e)
        return d / d[d > 0].mean()

    def cosines(e):
        unit = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)
        return torch.einsum("ijd,ikd->ijk", unit, unit)

    with torch.no_grad():
        td, ta = relative(ft), cosines(ft)
    return wd * F.smooth_l1_loss(relative(fs), td) + wa * F.smooth_l1_loss(cosines(fs), ta)


@pytest.fixture
def feats(rng):
    return {
        "fs": rng.standard_normal((B, DS)).astype(np.float32),
        "ft": (3.0 * rng.standard_normal((B, DT))).astype(np.float32),
        "logits": (2.0 * rng.standard_normal((B, C))).astype(np.float32),
        "y": rng.integers(0, C, B).astype(np.int32),
    }


@pytest.mark.parametrize("squared", [False, True])
def test_matches_torch_transcription_value_and_gradient(feats, squared):
    _torch()
    fs = torch.tensor(feats["fs"], dtype=torch.float64, requires_grad=True)
    ref = torch_rkd(fs, torch.tensor(feats["ft"], dtype=torch.float64), squared=squared)
    ref.backward()
    value, grad = rkd_value_and_grad(jnp.asarray(feats["fs"]), jnp.asarray(feats["ft"]), squared=squared)
    np.testing.assert_allclose(float(value), ref.item(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(grad), fs.grad.numpy(), rtol=1e-5, atol=1e-5)


def test_hand_case_matches_torch_transcription():
    _torch()
    ref = torch_rkd(torch.tensor(HAND_S, dtype=torch.float64), torch.tensor(HAND_T, dtype=torch.float64))
    np.testing.assert_allclose(ref.item(), 25.0 / 18.0 + 6.0, rtol=1e-12)


def test_objective_matches_mdistiller_forward(feats):
    """CE (weight 1) on the student logits + RKD (weight 1) on the pooled features, one view."""
    _torch()
    F = torch.nn.functional
    logits = torch.tensor(feats["logits"], dtype=torch.float64, requires_grad=True)
    fs = torch.tensor(feats["fs"], dtype=torch.float64, requires_grad=True)
    ref = F.cross_entropy(logits, torch.tensor(feats["y"], dtype=torch.int64)) + torch_rkd(
        fs, torch.tensor(feats["ft"], dtype=torch.float64)
    )
    ref.backward()

    def fn(z, s):
        teacher = jnp.zeros_like(z)
        loss, _ = losses.rkd_objective(
            z,
            None,
            teacher,
            None,
            jnp.asarray(feats["y"]),
            student_embeddings=s,
            teacher_embeddings=jnp.asarray(feats["ft"]),
        )
        return loss

    value, (gz, gs) = jax.jit(jax.value_and_grad(fn, argnums=(0, 1)))(
        jnp.asarray(feats["logits"]), jnp.asarray(feats["fs"])
    )
    np.testing.assert_allclose(float(value), ref.item(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(gz), logits.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(gs), fs.grad.numpy(), rtol=1e-5, atol=1e-5)


# ---- properties -----------------------------------------------------------------------------


def test_mask_equals_slice_and_padding_gets_zero_gradient(feats):
    keep = np.array([True, False, True, True, False, True, True, False])
    fs = feats["fs"].copy()
    fs[~keep] = np.nan  # a NaN in a padded row must not leak
    masked, grad = rkd_value_and_grad(jnp.asarray(fs), jnp.asarray(feats["ft"]), jnp.asarray(keep))
    sliced, grad_slice = rkd_value_and_grad(jnp.asarray(feats["fs"][keep]), jnp.asarray(feats["ft"][keep]))
    np.testing.assert_allclose(float(masked), float(sliced), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(grad)[~keep], 0.0)
    np.testing.assert_allclose(np.asarray(grad)[keep], np.asarray(grad_slice), rtol=1e-5, atol=1e-7)


def test_gradients_finite_with_coincident_embeddings_and_tiny_masks(feats):
    fs = feats["fs"].copy()
    fs[3] = fs[1]  # coincident pair: clamped distance, zero difference vector
    _, grad = rkd_value_and_grad(jnp.asarray(fs), jnp.asarray(feats["ft"]))
    assert np.isfinite(np.asarray(grad)).all()
    for n in (0, 1, 2):  # no pairs, one example, one pair: finite, and 0 without pairs
        where = jnp.asarray(np.arange(B) < n)
        value, g = rkd_value_and_grad(jnp.asarray(feats["fs"]), jnp.asarray(feats["ft"]), where)
        assert np.isfinite(float(value)) and np.isfinite(np.asarray(g)).all()
        if n < 2:
            assert float(value) == 0.0


def test_invariances_teacher_gradient_stop_and_jit(feats):
    s, t = jnp.asarray(feats["fs"]), jnp.asarray(feats["ft"])
    base = losses.rkd_loss(s, t)
    np.testing.assert_allclose(float(losses.rkd_loss(3.0 * s - 2.0, t)), float(base), rtol=1e-5)
    np.testing.assert_allclose(float(losses.rkd_loss(s, 0.5 * t + 1.0)), float(base), rtol=1e-5)
    np.testing.assert_allclose(float(losses.rkd_loss(t @ jnp.eye(DT, DS), t)), 0.0, atol=1e-6)
    g_teacher = jax.grad(lambda x: losses.rkd_loss(s, x))(t)
    np.testing.assert_array_equal(np.asarray(g_teacher), 0.0)
    np.testing.assert_allclose(float(jax.jit(losses.rkd_loss)(s, t)), float(base), rtol=1e-6)


def test_input_errors_name_the_fix(feats):
    s, t = jnp.asarray(feats["fs"]), jnp.asarray(feats["ft"])
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        losses.rkd_loss(s[None], t)
    with pytest.raises(ValueError, match="same batch size"):
        losses.rkd_loss(s[:4], t)
    with pytest.raises(TypeError, match="floating"):
        losses.rkd_loss(s.astype(jnp.int32), t)
    z, y = jnp.asarray(feats["logits"]), jnp.asarray(feats["y"])
    with pytest.raises(ValueError, match="one \\[B, D\\] array per view"):
        losses.rkd_objective(z, None, z, None, y, student_embeddings=(s, s), teacher_embeddings=(t, t))


# ---- composition with SLD -------------------------------------------------------------------


@pytest.mark.parametrize("student_swap", [False, True])
def test_rkd_sld_is_sld_plus_rkd_per_view(rng, student_swap):
    views = [(2.0 * rng.standard_normal((B, C))).astype(np.float32) for _ in range(4)]
    sw, ss, tw, ts = map(jnp.asarray, views)
    y = jnp.asarray(rng.integers(0, C, B).astype(np.int32))
    fsw, fss = (jnp.asarray(rng.standard_normal((B, DS)).astype(np.float32)) for _ in range(2))
    ftw, fts = (jnp.asarray(rng.standard_normal((B, DT)).astype(np.float32)) for _ in range(2))
    mask = jnp.asarray(np.arange(B) < B - 2)

    def combined(logits, feats_):
        return losses.rkd_sld_objective(
            logits[0],
            logits[1],
            tw,
            ts,
            y,
            student_embeddings=feats_,
            teacher_embeddings=(ftw, fts),
            student_swap=student_swap,
            where=mask,
            rkd_weight=0.5,
        )

    loss, terms = combined((sw, ss), (fsw, fss))
    g_logits, g_feats = jax.jit(jax.grad(lambda a, b: combined(a, b)[0], argnums=(0, 1)))(
        (sw, ss), (fsw, fss)
    )
    sld_fn = lambda a, b: losses.sld_objective(a, b, tw, ts, y, student_swap=student_swap, where=mask)[0]  # noqa: E731
    rkd_fn = lambda a, b: 0.5 * (losses.rkd_loss(a, ftw, where=mask) + losses.rkd_loss(b, fts, where=mask))  # noqa: E731
    np.testing.assert_allclose(float(loss), float(sld_fn(sw, ss) + rkd_fn(fsw, fss)), rtol=1e-6)
    np.testing.assert_allclose(float(terms["rkd"]), float(rkd_fn(fsw, fss)), rtol=1e-6)
    for got, want in zip(g_logits, jax.grad(sld_fn, argnums=(0, 1))(sw, ss)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-7)
    for got, want in zip(g_feats, jax.grad(rkd_fn, argnums=(0, 1))(fsw, fss)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-7)
    assert {"ce", "kd", "rkd", "loss", "teacher_swap_fraction"} <= set(terms)


def test_rkd_sld_under_jit_with_a_static_swap(rng):
    z = jnp.asarray(rng.standard_normal((B, C)).astype(np.float32))
    f = jnp.asarray(rng.standard_normal((B, DS)).astype(np.float32))
    y = jnp.asarray(rng.integers(0, C, B).astype(np.int32))

    @jax.jit
    def step(z, f):
        return losses.rkd_sld_objective(
            z,
            z,
            z,
            z,
            y,
            student_embeddings=(f, f),
            teacher_embeddings=(f, f),
            student_swap=True,
        )[0]

    eager = losses.sld_objective(z, z, z, z, y, student_swap=True)[0]
    np.testing.assert_allclose(float(step(z, f)), float(eager), rtol=1e-6)
