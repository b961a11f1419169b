"""``where=`` on the per-example losses and the objectives: token masks and any leading shape."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sld_jax import losses

B, T, C = 2, 3, 5


@pytest.fixture(scope="module")
def tokens():
    rng = np.random.default_rng(0)
    s = jnp.asarray(2 * rng.standard_normal((B, T, C)), jnp.float32)
    t = jnp.asarray(3 * rng.standard_normal((B, T, C)), jnp.float32)
    labels = rng.integers(0, C, (B, T))
    where = np.array([[True, True, False], [True, False, True]])
    labels[~where] = -100  # an ignore index on masked tokens
    s = s.at[0, 2].set(jnp.nan)  # garbage on a masked token
    return s, t, jnp.asarray(labels, jnp.int32), jnp.asarray(where)


PER_EXAMPLE = {
    "sld_loss": lambda s, t, y, **kw: losses.sld_loss(s, t, y, student_swap=True, **kw),
    "kd_loss": lambda s, t, y, **kw: losses.kd_loss(s, t, temperature=4.0, **kw),
}


@pytest.mark.parametrize("name", sorted(PER_EXAMPLE))
def test_per_token_where_zeroes_masked_tokens_and_their_gradient(tokens, name):
    s, t, y, where = tokens
    fn = PER_EXAMPLE[name]
    out = fn(s, t, y, where=where)
    assert out.shape == (B, T)
    assert np.all(np.asarray(out)[~np.asarray(where)] == 0)
    # Valid tokens equal the unmasked loss on those tokens alone.
    want = fn(s[where], t[where], y[where])
    np.testing.assert_allclose(np.asarray(out[where]), np.asarray(want), rtol=1e-6)
    grad = jax.grad(lambda s: jnp.sum(fn(s, t, y, where=where)))(s)
    assert np.all(np.isfinite(grad)) and np.all(np.asarray(grad)[~np.asarray(where)] == 0)


OBJECTIVES = {
    "ce": lambda sw, ss, tw, ts, y, **kw: losses.ce_objective(sw, ss, None, None, y, **kw),
    "sld": lambda *a, **kw: losses.sld_objective(*a, student_swap=True, **kw),
    "kd": losses.kd_objective,
    "dkd": lambda *a, **kw: losses.dkd_objective(*a, epoch=30, **kw),
    "standardized_kd": losses.standardized_kd_objective,
}


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_objectives_take_token_shapes_and_normalise_by_valid_tokens(tokens, name):
    s, t, y, where = tokens
    fn = OBJECTIVES[name]
    loss, terms = fn(s, s + 1.0, t, t, y, where=where)
    # [B, T, C] with where == the valid tokens alone as a [N_valid, C] batch.
    want, want_terms = fn(s[where], s[where] + 1.0, t[where], t[where], y[where])
    np.testing.assert_allclose(float(loss), float(want), rtol=1e-6)
    for key in want_terms:
        np.testing.assert_allclose(float(terms[key]), float(want_terms[key]), rtol=1e-6, atol=1e-7)
    with pytest.raises(TypeError, match="mask"):  # where= is the one mask keyword (1.0)
        fn(s, s, t, t, y, mask=where)


def test_where_must_have_the_labels_shape(tokens):
    s, t, y, where = tokens
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        losses.sld_loss(s, t, y, student_swap=False, where=where[:, :2])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\)"):
        losses.sld_loss(s, t, y, student_swap=False)  # -100 is only allowed where masked


def test_rkd_objectives_mask_with_where():
    rng = np.random.default_rng(1)
    z = jnp.asarray(rng.standard_normal((4, C)), jnp.float32)
    f = jnp.asarray(rng.standard_normal((4, 3)), jnp.float32)
    y = jnp.array([0, 1, 2, 3])
    keep = jnp.array([True, True, True, False])
    kw = dict(student_embeddings=f, teacher_embeddings=2.0 * f)
    for fn in (losses.rkd_objective, functools.partial(losses.rkd_sld_objective, student_swap=True)):
        masked = float(fn(z, None, z, None, y, where=keep, **kw)[0])
        kept = dict(student_embeddings=f[:3], teacher_embeddings=2.0 * f[:3])
        np.testing.assert_allclose(masked, float(fn(z[:3], None, z[:3], None, y[:3], **kept)[0]), rtol=1e-6)
