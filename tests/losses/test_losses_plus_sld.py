""" "+ SLD" objectives of the library equal the trainer's former composition, and every loss keeps
the teacher frozen.

Before 1.0 the trainer composed DKD + SLD and MLKD + SLD itself: the baseline objective on the
swapped teacher plus ``kd_weight`` x the batch mean of :func:`sld_jax.losses.pseudo_teacher_loss`
of every view once the γ gate opened. :func:`reference_composition` writes that composition out;
the library's ``dkd_sld_objective`` / ``mlkd_sld_objective`` must give its values and gradients.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sld_jax import losses

B, C = 6, 5
PSEUDO = dict(temperatures=losses.DEFAULT_TEMPERATURES, stop_gradient_pseudo_teacher=False)


@pytest.fixture
def batch():
    rng = np.random.default_rng(3)
    sw, ss, tw, ts = (jnp.asarray(3 * rng.standard_normal((B, C)), jnp.float32) for _ in range(4))
    y = jnp.asarray(rng.integers(0, C, B), jnp.int32)
    where = jnp.asarray(np.arange(B) < B - 1)  # the last row is padding (finite logits, as the trainer's)
    return sw, ss, tw, ts, y, where


def reference_composition(base, sw, ss, tw, ts, y, where, *, student_swap, **kwargs):
    """The trainer's former "+ SLD": base objective (swapped teacher) + 0.9 x pseudo-teacher means."""
    loss, _ = base(sw, ss, tw, ts, y, teacher_transform=losses.swap_logits, where=where, **kwargs)
    if student_swap:
        loss = loss + 0.9 * sum(
            losses.masked_mean(losses.pseudo_teacher_loss(s, y, **PSEUDO), where) for s in (sw, ss)
        )
    return loss


CASES = {
    "dkd+sld": (losses.dkd_sld_objective, losses.dkd_objective, dict(epoch=jnp.float32(7.0), warmup=20.0)),
    "mlkd+sld": (losses.mlkd_sld_objective, losses.mlkd_objective, {}),
    "ls_mlkd+sld": (
        losses.mlkd_sld_objective,
        losses.mlkd_objective,
        dict(logit_standardization=True, temperatures=(2.0, 3.0, 5.0, 2.0, 6.0), kd_weight=9.0),
    ),
}


@pytest.mark.parametrize("student_swap", [False, True])
@pytest.mark.parametrize("name", sorted(CASES))
def test_plus_sld_equals_the_former_trainer_composition(batch, name, student_swap):
    objective, base, kwargs = CASES[name]
    sw, ss, tw, ts, y, where = batch

    def library(sw, ss):
        return objective(sw, ss, tw, ts, y, student_swap=student_swap, where=where, **kwargs)[0]

    def composed(sw, ss):
        return reference_composition(base, sw, ss, tw, ts, y, where, student_swap=student_swap, **kwargs)

    got, got_grads = jax.value_and_grad(library, argnums=(0, 1))(sw, ss)
    want, want_grads = jax.value_and_grad(composed, argnums=(0, 1))(sw, ss)
    np.testing.assert_allclose(float(got), float(want), rtol=1e-6)
    for g, w in zip(got_grads, want_grads):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-7)
    terms = objective(sw, ss, tw, ts, y, student_swap=student_swap, where=where, **kwargs)[1]
    assert ("pseudo_teacher" in terms) is student_swap


def test_plus_sld_ignores_garbage_in_masked_rows(batch):
    sw, ss, tw, ts, y, where = batch
    bad = sw.at[-1].set(jnp.nan)
    loss = functools.partial(losses.dkd_sld_objective, student_swap=True, warmup_factor=1.0, where=where)
    got, grad = jax.value_and_grad(lambda s: loss(s, ss, tw, ts, y.at[-1].set(-100))[0])(bad)
    want = loss(sw, ss, tw, ts, y)[0]
    np.testing.assert_allclose(float(got), float(want), rtol=1e-6)
    assert np.all(np.isfinite(np.asarray(grad))) and np.all(np.asarray(grad)[-1] == 0)


def _teacher_grads(fn, *teachers):
    return jax.grad(lambda *t: jnp.sum(fn(*t)), argnums=tuple(range(len(teachers))))(*teachers)


def test_every_loss_stops_the_teachers_gradient(batch):
    """The teacher is frozen in every loss and objective (kd_loss included, since 1.0)."""
    sw, ss, tw, ts, y, where = batch
    per_example = {
        "kd_loss": lambda t: losses.kd_loss(sw, t, temperature=4.0),
        "sld_loss": lambda t: losses.sld_loss(sw, t, y, student_swap=True),
        "dkd_loss": lambda t: losses.dkd_loss(sw, t, y),
        "standardized_kd_loss": lambda t: losses.standardized_kd_loss(sw, t),
        "batch_alignment_loss": lambda t: losses.batch_alignment_loss(sw, t, temperature=4.0),
        "class_alignment_loss": lambda t: losses.class_alignment_loss(sw, t, temperature=4.0),
        "rkd_loss": lambda t: losses.rkd_loss(sw, t),
    }
    objectives = {
        "kd": lambda a, b: losses.kd_objective(sw, ss, a, b, y, where=where)[0],
        "sld": lambda a, b: losses.sld_objective(sw, ss, a, b, y, student_swap=True, where=where)[0],
        "dkd": lambda a, b: losses.dkd_objective(sw, ss, a, b, y, where=where)[0],
        "mlkd": lambda a, b: losses.mlkd_objective(sw, ss, a, b, y, where=where)[0],
        "standardized_kd": lambda a, b: losses.standardized_kd_objective(sw, ss, a, b, y, where=where)[0],
        "dkd+sld": lambda a, b: losses.dkd_sld_objective(sw, ss, a, b, y, student_swap=True, where=where)[0],
        "mlkd+sld": lambda a, b: losses.mlkd_sld_objective(sw, ss, a, b, y, student_swap=True, where=where)[
            0
        ],
    }
    for name, fn in per_example.items():
        (g,) = _teacher_grads(fn, tw)
        assert np.all(np.asarray(g) == 0), name
    for name, fn in objectives.items():
        for g in _teacher_grads(fn, tw, ts):
            assert np.all(np.asarray(g) == 0), name
