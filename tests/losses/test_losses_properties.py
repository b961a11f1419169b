"""Shapes, dtypes, jit/vmap/grad behaviour, the compile budget, numerics and input validation."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jax.experimental import checkify

from sld_jax import losses

B, C = 4, 5
TEMPS = losses.DEFAULT_TEMPERATURES
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)


def _batch(rng, scale=3.0, batch=B, classes=C):
    s, t = (jnp.asarray(rng.standard_normal((batch, classes)) * scale, jnp.float32) for _ in range(2))
    return s, t, jnp.asarray(rng.integers(0, classes, batch), jnp.int32)


# ---------------------------------------------------------------------------------------------
# Shapes and dtypes, with and without jit.


class VariantsTest(chex.TestCase):
    def setUp(self):
        super().setUp()
        self.s, self.t, self.y = _batch(np.random.default_rng(0))

    @chex.variants(with_jit=True, without_jit=True)
    def test_per_example_losses_shapes_and_dtypes(self):
        s, t, y = self.s, self.t, self.y
        sld = self.variant(functools.partial(losses.sld_loss, student_swap=True))
        per_t = self.variant(functools.partial(losses.sld_loss_per_temperature, student_swap=False))
        kd = self.variant(functools.partial(losses.kd_loss, temperature=4.0))
        dkd = self.variant(losses.dkd_loss)
        ce = self.variant(losses.cross_entropy)
        for out, shape in (
            (sld(s, t, y), (B,)),
            (per_t(s, t, y), (B, len(TEMPS))),
            (kd(s, t), (B,)),
            (dkd(s, t, y), (B,)),
            (ce(s, y), (B,)),
        ):
            chex.assert_shape(out, shape)
            chex.assert_type(out, jnp.float32)
            chex.assert_tree_all_finite(out)

    @chex.variants(with_jit=True, without_jit=True)
    def test_objective_terms(self):
        s, t, y = self.s, self.t, self.y
        objective = self.variant(functools.partial(losses.sld_objective, student_swap=True))
        loss, terms = objective(s, s + 1.0, t, t * 0.5, y)
        chex.assert_shape(loss, ())
        assert set(terms) == {"ce", "kd", "loss", "teacher_swap_fraction", "student_swap_fraction"}
        np.testing.assert_allclose(terms["ce"] + terms["kd"], loss, rtol=1e-6)
        expected_fraction = np.mean(np.argmax(np.asarray(t), -1) != np.asarray(y))
        np.testing.assert_allclose(terms["teacher_swap_fraction"], expected_fraction, rtol=1e-6)


def test_any_leading_batch_shape_and_vmap_equal_the_flat_call(rng):
    s, t, y = _batch(rng, batch=6)
    s3, t3, y3 = s.reshape(2, 3, C), t.reshape(2, 3, C), y.reshape(2, 3)
    fn = jax.jit(functools.partial(losses.sld_loss, student_swap=True))
    flat = fn(s, t, y)
    np.testing.assert_allclose(fn(s3, t3, y3), flat.reshape(2, 3), rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(fn)(s3, t3, y3), flat.reshape(2, 3), rtol=1e-6)
    # Gradients under vmap too.
    grad = jax.grad(lambda s: jnp.sum(fn(s, t, y)))
    np.testing.assert_allclose(jax.jit(jax.vmap(grad))(s[None]), jax.jit(grad)(s)[None], atol=1e-6)


def test_bf16_inputs_are_reduced_in_float32(rng):
    s, t, y = _batch(rng)
    fn = jax.jit(functools.partial(losses.sld_loss, student_swap=True))
    out = fn(s.astype(jnp.bfloat16), t.astype(jnp.bfloat16), y)
    assert out.dtype == jnp.float32 and np.all(np.isfinite(out))
    ref = fn(s.astype(jnp.bfloat16).astype(jnp.float32), t.astype(jnp.bfloat16).astype(jnp.float32), y)
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    loss, _ = jax.jit(functools.partial(losses.sld_objective, student_swap=True))(
        s.astype(jnp.bfloat16), s.astype(jnp.bfloat16), t.astype(jnp.bfloat16), t.astype(jnp.bfloat16), y
    )
    assert loss.dtype == jnp.float32 and np.isfinite(loss)


# ---------------------------------------------------------------------------------------------
# The γ gate compiles exactly two variants and never retraces per epoch.


def test_gamma_gate_compiles_two_variants_and_never_retraces(rng):
    s, t, y = _batch(rng)
    chex.clear_trace_counter()

    @functools.partial(jax.jit, static_argnames="student_swap")
    @chex.assert_max_traces(n=2)
    def step(sw, ss, tw, ts, y, epoch, student_swap):
        loss, _ = losses.sld_objective(sw, ss, tw, ts, y, student_swap=student_swap)
        # A per-epoch value passed as an argument (DKD's warm-up epoch) must not retrace either.
        extra, _ = losses.dkd_objective(sw, None, tw, None, y, epoch=epoch, warmup=4)
        return loss + extra

    gamma = 3
    for epoch in range(1, 9):
        step(s, s, t, t, y, jnp.int32(epoch), student_swap=losses.student_swap_active(epoch, gamma=gamma))
    assert step._cache_size() == 2
    # The counter can fail: a third variant (another shape) exceeds the budget.
    with pytest.raises(AssertionError):
        step(s[:2], s[:2], t[:2], t[:2], y[:2], jnp.int32(1), student_swap=True)
    assert not losses.student_swap_active(150, gamma=150) and losses.student_swap_active(151, gamma=150)


# ---------------------------------------------------------------------------------------------
# Numerics: extreme logits, padding, KL properties.


def test_extreme_logits_give_finite_values_and_gradients():
    # Gaps of several hundred: most target probabilities underflow to exactly 0.
    s = jnp.array([[400.0, 0.0, -300.0, 10.0, 0.0], [0.0, -500.0, 250.0, 0.0, 1.0]])
    t = jnp.array([[-300.0, 500.0, 0.0, 0.0, 20.0], [700.0, 0.0, -400.0, 0.0, 0.0]])
    y = jnp.array([2, 1])

    def everything(s):
        outs = []
        for swap in (False, True):
            for detach in (False, True):
                outs.append(
                    losses.sld_objective(
                        s, s[::-1], t, t[::-1], y, student_swap=swap, stop_gradient_pseudo_teacher=detach
                    )[0]
                )
        outs.append(losses.kd_objective(s, s, t, t, y)[0])
        outs.append(losses.dkd_objective(s, None, t, None, y)[0])
        outs.append(losses.standardized_kd_objective(s, s, t, t, y)[0])
        outs.append(losses.mlkd_objective(s, s, t, t, y, temperatures=(4.0, 2.0))[0])
        outs.append(losses.mlkd_objective(s, s, t, t, y, temperatures=(4.0,), reference_quirks=False)[0])
        return jnp.stack(outs)

    # One backward pass over the sum: a NaN or inf in any gradient would show in the total.
    def total(s):
        values = everything(s)
        return jnp.sum(values), values

    (_, values), grads = jax.jit(jax.value_and_grad(total, has_aux=True))(s)
    assert np.all(np.isfinite(values)), values
    assert np.all(np.isfinite(grads))
    assert np.all(values > 0)


def test_minus_infinity_teacher_logits_are_masked_classes():
    s = jnp.array([[1.0, 2.0, 0.5, 0.0]])
    t = jnp.array([[3.0, -jnp.inf, 1.0, -jnp.inf]])
    y = jnp.array([0])
    value, grad = jax.jit(
        jax.value_and_grad(lambda s: jnp.sum(losses.multi_temperature_kd(s, t, temperatures=(1.0, 4.0))))
    )(s)
    p = np.exp([3.0, 1.0]) / np.sum(np.exp([3.0, 1.0]))
    log_q = np.asarray(jax.nn.log_softmax(s[0]))[[0, 2]]
    np.testing.assert_allclose(
        float(losses.multi_temperature_kd(s, t, temperatures=(1.0,))[0, 0]),
        np.sum(p * (np.log(p) - log_q)),
        rtol=1e-5,
    )
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    del y


def test_masked_mean_selects_instead_of_multiplying():
    values = jnp.array([1.0, 3.0, jnp.nan, jnp.inf])
    mask = jnp.array([True, True, False, False])
    assert float(losses.masked_mean(values, mask)) == 2.0
    assert float(losses.masked_mean(values, jnp.zeros(4, bool))) == 0.0
    assert float(losses.masked_mean(values[:2])) == 2.0
    grad = jax.grad(lambda v: losses.masked_mean(v, mask))(values)
    np.testing.assert_array_equal(grad, [0.5, 0.5, 0.0, 0.0])


def test_padded_examples_do_not_change_the_objective(rng):
    s, t, y = _batch(rng)
    pad = jnp.full((2, C), jnp.nan)
    mask = jnp.arange(B + 2) < B
    sp, tp = jnp.concatenate([s, pad]), jnp.concatenate([t, pad])
    yp = jnp.concatenate([y, jnp.array([-1, 99], jnp.int32)])

    @jax.jit
    def run(sw, tw, y, mask):
        def fn(sw):
            return losses.sld_objective(sw, sw, tw, tw, y, student_swap=True, where=mask)

        return jax.value_and_grad(fn, has_aux=True)(sw)

    (want, want_terms), want_grad = run(s, t, y, None)
    (got, got_terms), got_grad = run(sp, tp, yp, mask)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(got_terms["teacher_swap_fraction"], want_terms["teacher_swap_fraction"])
    np.testing.assert_allclose(got_grad[:B], want_grad, atol=1e-7)
    np.testing.assert_array_equal(got_grad[B:], 0.0)


logits_strategy = hnp.arrays(
    np.float32,
    (B, C),
    elements=st.one_of(
        st.integers(-4, 4).map(float), st.floats(-60.0, 60.0, allow_nan=False, allow_infinity=False, width=32)
    ),
)
labels_strategy = hnp.arrays(np.int32, (B,), elements=st.integers(0, C - 1))


@jax.jit
def _kl_terms(s, t, y):
    teacher = losses.multi_temperature_kd(s, t, temperatures=TEMPS)
    swapped_teacher = losses.swap_logits(t, y)
    with_swap = losses.sld_loss_per_temperature(s, t, y, student_swap=True)
    pseudo = with_swap - losses.sld_loss_per_temperature(s, t, y, student_swap=False)
    at_target = losses.sld_loss_per_temperature(swapped_teacher, t, y, student_swap=True)
    return teacher, pseudo, at_target


@SETTINGS
@given(logits_strategy, logits_strategy, labels_strategy)
def test_kl_terms_are_non_negative_and_vanish_at_the_swapped_teacher(s, t, y):
    teacher, pseudo, at_target = (np.asarray(x) for x in _kl_terms(s, t, y))
    scale = 1e-6 * (1.0 + np.abs(s).max() + np.abs(t).max())  # float32 rounding of the logits
    assert np.all(teacher >= -scale * np.square(TEMPS))
    assert np.all(pseudo >= -scale * np.square(TEMPS))
    # Student == swapped teacher: both the teacher term and the pseudo-teacher term are 0.
    np.testing.assert_allclose(at_target, 0.0, atol=float(np.max(scale * np.square(TEMPS))) + 1e-6)


# ---------------------------------------------------------------------------------------------
# Bad input fails at trace time with a message naming the argument.


def _jit_call(fn, *args, **kwargs):
    return jax.jit(functools.partial(fn, **kwargs))(*args)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda s, t, y: _jit_call(losses.sld_loss, s, t[:, :3], y, student_swap=False),
            ValueError,
            "student_logits and teacher_logits must have the same shape",
        ),
        (
            lambda s, t, y: _jit_call(losses.sld_loss, s, t, y[:, None], student_swap=False),
            ValueError,
            r"labels must have shape \(4,\)",
        ),
        (
            lambda s, t, y: _jit_call(losses.sld_loss, s, t, y.astype(jnp.float32), student_swap=False),
            TypeError,
            "labels must be integer",
        ),
        (
            lambda s, t, y: _jit_call(losses.sld_loss, s, t, y, student_swap=False, temperatures=()),
            ValueError,
            "temperatures must name at least one",
        ),
        (
            lambda s, t, y: _jit_call(losses.sld_loss, s, t, y, student_swap=False, temperatures=(1.0, -2.0)),
            ValueError,
            "temperatures must be positive",
        ),
        (
            lambda s, t, y: jax.jit(lambda s, f: losses.sld_loss(s, t, y, student_swap=f))(s, True),
            TypeError,
            "student_swap must be a Python bool",
        ),
        (
            lambda s, t, y: _jit_call(losses.sld_objective, s, s, t, t, y),  # the γ gate is required
            TypeError,
            "student_swap",
        ),
        (
            lambda s, t, y: _jit_call(losses.sld_objective, s, s, t, t, y, student_swap=True, epoch=3),
            TypeError,
            "unexpected keyword argument 'epoch'",  # one spelling of the gate: student_swap
        ),
        (
            lambda s, t, y: _jit_call(losses.sld_objective, s, s[:, :2], t, t, y, student_swap=True),
            ValueError,
            "student_weak and student_strong must have the same shape",
        ),
        (
            lambda s, t, y: _jit_call(losses.kd_objective, s, s, t, None, y),
            ValueError,
            "student_strong and teacher_strong must both be arrays",
        ),
        (
            lambda s, t, y: _jit_call(losses.kd_objective, s, None, t, None, y, where=jnp.ones(3, bool)),
            ValueError,
            r"mask must be per example with shape \(4,\)",
        ),
        (
            lambda s, t, y: _jit_call(losses.sld_loss, s, t, y, student_swap=False, teacher_transform="swap"),
            TypeError,
            "teacher_transform must be None or a callable",
        ),
        (
            lambda s, t, y: _jit_call(losses.dkd_loss, s[:, :1], t[:, :1], y * 0),
            ValueError,
            "student_logits must have at least 2 classes",
        ),
        (
            lambda s, t, y: _jit_call(losses.mlkd_objective, s[None], s[None], t[None], t[None], y[None]),
            ValueError,
            r"student_weak must have shape \[batch, num_classes\]",
        ),
        (
            lambda s, t, y: _jit_call(losses.mlkd_objective, s, s, t, t, y, reference_quirks="yes"),
            TypeError,
            "reference_quirks must be a Python bool",
        ),
        (
            lambda s, t, y: _jit_call(losses.kd_loss, s.astype(jnp.int32), t),
            TypeError,
            "student_logits must be floating point",
        ),
        (lambda s, t, y: losses.get_teacher_transform("extreme"), ValueError, "valid names: identity, swap"),
    ],
)
def test_bad_input_fails_at_trace_time_naming_the_argument(rng, call, error, match):
    s, t, y = _batch(rng)
    with pytest.raises(error, match=match):
        call(s, t, y)


def test_out_of_range_labels_with_checkify():
    s = jnp.zeros((2, 3))

    def step(s, y):
        y = losses.checked_labels(y, s.shape[-1])
        return jnp.mean(losses.sld_loss(s, s, y, student_swap=True))

    checked = jax.jit(checkify.checkify(step))
    err, value = checked(s, jnp.array([0, 2]))
    err.throw()  # in range: no error
    assert np.isfinite(value)
    err, _ = checked(s, jnp.array([0, 3]))
    with pytest.raises(checkify.JaxRuntimeError, match=r"labels must lie in \[0, 3\); got min 0 and max 3"):
        err.throw()
    # Without checkify, a check cannot raise inside jit: it fails at trace time instead...
    with pytest.raises(ValueError, match="checkify"):
        jax.jit(step)(s, jnp.array([0, 3]))
    # ...and the losses alone silently produce NaN for a label >= C (as documented).
    assert np.isnan(jax.jit(losses.cross_entropy)(s, jnp.array([0, 3]))[1])
    # Eager calls check concrete labels right away.
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        losses.cross_entropy(s, jnp.array([0, 3]))
