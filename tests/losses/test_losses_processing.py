"""The swap and the ablation's logit processors: hand-computed cases and hypothesis properties."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sld_jax import losses
from sld_jax.losses import processing

B, C = 4, 6
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)

# Small integers make ties (also at the maximum) common; floats cover the generic case.
logit_values = st.one_of(
    st.integers(-3, 3).map(float),
    st.floats(-50.0, 50.0, allow_nan=False, allow_infinity=False, width=32),
)
logits_strategy = hnp.arrays(np.float32, (B, C), elements=logit_values)
labels_strategy = hnp.arrays(np.int32, (B,), elements=st.integers(0, C - 1))

swap = jax.jit(losses.swap_logits)
multi_swap = jax.jit(losses.multi_swap, static_argnames="k")


def _first_argmax(z):
    return np.argmax(z, axis=-1)  # numpy and jnp both take the first maximal index


# ---------------------------------------------------------------------------------------------
# The swap: properties required by the issue.


@SETTINGS
@given(logits_strategy, labels_strategy)
def test_swap_properties(z, y):
    out = np.asarray(swap(z, y))
    # A permutation of each row.
    np.testing.assert_array_equal(np.sort(out, -1), np.sort(z, -1))
    # The label becomes an argmax.
    np.testing.assert_array_equal(out[np.arange(B), y], out.max(-1))
    # Correct rows are unchanged; wrong rows differ at most in the two swapped entries.
    correct = _first_argmax(z) == y
    np.testing.assert_array_equal(out[correct], z[correct])
    assert np.all(np.sum(out != z, axis=-1) <= 2)
    # Idempotent.
    np.testing.assert_array_equal(np.asarray(swap(out, y)), out)
    np.testing.assert_array_equal(np.asarray(losses.swap_fired(z, y)), ~correct)


@SETTINGS
@given(logits_strategy, labels_strategy)
def test_multi_swap_properties(z, y):
    out = np.asarray(multi_swap(z, y, k=3))
    np.testing.assert_array_equal(np.sort(out, -1), np.sort(z, -1))
    np.testing.assert_array_equal(out[np.arange(B), y], out.max(-1))
    correct = _first_argmax(z) == y
    np.testing.assert_array_equal(out[correct], z[correct])
    # k = 2 is exactly the SLD swap.
    np.testing.assert_array_equal(np.asarray(multi_swap(z, y, k=2)), np.asarray(swap(z, y)))


@SETTINGS
@given(logits_strategy, labels_strategy, st.sampled_from(sorted(losses.TEACHER_TRANSFORMS)))
def test_every_processor_keeps_shape_dtype_and_correct_rows(z, y, name):
    out = jax.jit(losses.get_teacher_transform(name))(z, y)
    assert out.shape == z.shape and out.dtype == z.dtype
    correct = _first_argmax(z) == y
    np.testing.assert_array_equal(np.asarray(out)[correct], z[correct])


# ---------------------------------------------------------------------------------------------
# Hand-computed cases.


def test_swap_hand_computed_with_ties():
    z = jnp.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 5.0]])
    y = jnp.array([2, 0, 0])
    # Row 0: the first maximal index is 1, not the label 2 -> the equal values trade (no change).
    # Row 1: the label is the first maximal index -> unchanged. Row 2: 0 <-> 5.
    expected = [[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 1.0, 0.0], [5.0, 1.0, 2.0, 0.0]]
    np.testing.assert_array_equal(losses.swap_logits(z, y), expected)
    np.testing.assert_array_equal(losses.swap_fired(z, y), [True, False, True])


def test_multi_swap_hand_computed():
    z = jnp.array([[4.0, 3.0, 2.0, 1.0, 0.0]] * 3)
    y = jnp.array([3, 1, 4])
    out = losses.multi_swap(z, y, k=4)
    # Rank 4 (label 3): rotation of the top 4; rank 2: plain swap; rank 5 > k: single swap.
    expected = [[3.0, 2.0, 1.0, 4.0, 0.0], [3.0, 4.0, 2.0, 1.0, 0.0], [0.0, 3.0, 2.0, 1.0, 4.0]]
    np.testing.assert_array_equal(out, expected)


def test_additive_processors_hand_computed():
    z = jnp.array([[3.0, 1.0, 2.0], [3.0, 1.0, 2.0]])
    y = jnp.array([2, 0])  # row 0 misclassified, row 1 correct
    np.testing.assert_allclose(losses.ground_truth_addition(z, y, fraction=0.5), [[3, 1, 3], [3, 1, 2]])
    np.testing.assert_allclose(losses.extreme_addition(z, y), [[3, 1, 4], [3, 1, 2]])
    np.testing.assert_allclose(losses.target_reduction(z, y), [[3, 1, 1], [3, 1, 2]])
    np.testing.assert_allclose(losses.max_addition(z, y), [[3, 1, 5], [3, 1, 2]])
    np.testing.assert_allclose(
        losses.extreme_addition(z, y, only_misclassified=False), [[3, 1, 4], [6, 1, 2]]
    )


def test_label_smoothing_targets_are_the_smoothed_distribution():
    z = jnp.array([[3.0, 1.0, 2.0, 0.0], [3.0, 1.0, 2.0, 0.0]])
    y = jnp.array([2, 0])
    out = losses.label_smoothing_targets(z, y, epsilon=0.2)
    np.testing.assert_allclose(jax.nn.softmax(out[0]), [0.05, 0.05, 0.85, 0.05], rtol=1e-6)
    np.testing.assert_array_equal(out[1], z[1])  # correct row untouched


def test_conditional_swap_threshold():
    # Row 0: p = softmax([2, 1.9, -5]) -> gap ~0.05 < 0.5 -> swapped. Row 1: gap ~1 -> kept.
    z = jnp.array([[2.0, 1.9, -5.0], [9.0, 0.0, 0.0]])
    y = jnp.array([1, 1])
    out = losses.conditional_swap(z, y, alpha=0.5)
    np.testing.assert_array_equal(out, np.array([[1.9, 2.0, -5.0], [9.0, 0.0, 0.0]], np.float32))
    np.testing.assert_array_equal(losses.conditional_swap(z, y, alpha=1.0), losses.swap_logits(z, y))


def test_processors_plug_into_the_objectives():
    rng = np.random.default_rng(0)
    s, t = (jnp.asarray(rng.normal(size=(B, C)), jnp.float32) for _ in range(2))
    y = jnp.asarray(rng.integers(0, C, B), jnp.int32)
    transform = losses.get_teacher_transform("gt_addition", fraction=0.25)
    sld = jax.jit(functools.partial(losses.sld_loss, student_swap=False), static_argnames="teacher_transform")
    expected = sld(s, t, y, teacher_transform=None)
    processed = sld(s, transform(t, y), y, teacher_transform=None)
    got = sld(s, t, y, teacher_transform=transform)
    np.testing.assert_allclose(got, processed, rtol=1e-6)
    assert not np.allclose(got, expected)  # the processor made a difference


# ---------------------------------------------------------------------------------------------
# Errors, at call time, naming the argument.


def test_unknown_transform_name_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown teacher transform 'swapp'.*conditional_swap"):
        losses.get_teacher_transform("swapp")


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("conditional_swap", {"alpha": 1.5}, "alpha must lie in"),
        ("label_smoothing", {"epsilon": 0.0}, "epsilon must lie in"),
        ("multi_swap", {"k": 1}, "k must be a Python int >= 2"),
        ("gt_addition", {"fraction": -1.0}, "fraction must lie in"),
        ("swap", {"alpha": 0.5}, "takes no argument 'alpha'"),
        ("max_addition", {"only_misclassified": 1}, "only_misclassified must be a Python bool"),
    ],
)
def test_bad_hyper_parameters(name, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        losses.get_teacher_transform(name, **kwargs)


def test_float_labels_and_shape_mismatch_fail_at_trace_time():
    z = jnp.zeros((2, 3))
    with pytest.raises(TypeError, match="labels must be integer"):
        jax.jit(losses.swap_logits)(z, jnp.zeros((2,)))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        jax.jit(losses.multi_swap)(z, jnp.zeros((3,), jnp.int32))
    with pytest.raises(TypeError, match="logits must be floating"):
        losses.swap_logits(jnp.zeros((2, 3), jnp.int32), jnp.zeros((2,), jnp.int32))


def test_out_of_range_labels_raise_when_concrete():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        losses.swap_logits(jnp.zeros((2, 3)), jnp.array([0, 3]))
    assert processing.TEACHER_TRANSFORMS["identity"] is processing.identity
