"""sld_jax.losses against the reference implementation's golden vectors (tests/losses/golden)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sld_jax import losses

CASES = ["cifar", "imagenet", "teacher_correct", "teacher_wrong", "ties", "binary"]


def _case(golden, case):
    return (
        jnp.asarray(golden[f"{case}/student"]),
        jnp.asarray(golden[f"{case}/teacher"]),
        jnp.asarray(golden[f"{case}/labels"]),
    )


@pytest.mark.parametrize("case", CASES)
def test_swap_logits_exact(golden, case):
    s, t, y = _case(golden, case)
    np.testing.assert_array_equal(losses.swap_logits(t, y), golden[f"{case}/teacher_swapped"])
    np.testing.assert_array_equal(losses.swap_logits(s, y), golden[f"{case}/student_swapped"])


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("phase", ["before_gamma", "after_gamma"])
def test_sld_loss_values_and_gradients(golden, case, phase):
    s, t, y = _case(golden, case)
    student_swap = phase == "after_gamma"

    def per_temperature(s):
        return jnp.mean(
            losses.sld_loss_per_temperature(s, t, y, student_swap=student_swap), axis=0
        )

    def total(s):
        return jnp.mean(losses.sld_loss(s, t, y, student_swap=student_swap))

    np.testing.assert_allclose(
        per_temperature(s), golden[f"{case}/{phase}/per_temperature"], rtol=1e-5
    )
    np.testing.assert_allclose(jax.jit(total)(s), golden[f"{case}/{phase}/total"], rtol=1e-5)
    np.testing.assert_allclose(
        jax.grad(total)(s), golden[f"{case}/{phase}/grad_student"], atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("phase", ["before_gamma", "after_gamma"])
def test_objective_matches_reference(golden, phase):
    g = {k[len("objective/"):]: v for k, v in golden.items() if k.startswith("objective/")}
    epoch = 151 if phase == "after_gamma" else 150  # the reference gate is epoch > 150

    def objective(sw, ss):
        return losses.sld_objective(
            sw, ss, g["teacher_weak"], g["teacher_strong"], jnp.asarray(g["labels"]),
            epoch=epoch, gamma=150,
        )

    (loss, terms), grads = jax.value_and_grad(objective, argnums=(0, 1), has_aux=True)(
        jnp.asarray(g["student_weak"]), jnp.asarray(g["student_strong"])
    )
    for name in ("ce", "kd", "loss"):
        np.testing.assert_allclose(terms[name], g[f"{phase}/{name}"], rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(loss, g[f"{phase}/loss"], rtol=1e-5)
    np.testing.assert_allclose(grads[0], g[f"{phase}/grad_student_weak"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(grads[1], g[f"{phase}/grad_student_strong"], atol=1e-5, rtol=0)
