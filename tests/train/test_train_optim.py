"""The optimiser equals torch.optim.SGD; the LR schedule and γ gate follow the reference."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sld_jax.train import schedule
from sld_jax.train.state import pytorch_sgd


def test_lr_for_epoch_reference_stages():
    stages = [150, 180, 210]
    assert schedule.lr_for_epoch(0.05, 1, stages) == 0.05
    assert schedule.lr_for_epoch(0.05, 150, stages) == 0.05
    np.testing.assert_allclose(schedule.lr_for_epoch(0.05, 151, stages), 0.005)
    np.testing.assert_allclose(schedule.lr_for_epoch(0.05, 181, stages), 0.0005)
    np.testing.assert_allclose(schedule.lr_for_epoch(0.05, 240, stages), 0.00005)


def test_lr_schedule_by_step_matches_epoch_rule():
    spe = 7
    fn = jax.jit(schedule.lr_schedule(0.1, [2, 3], spe))
    for step in range(0, 5 * spe):
        epoch = schedule.epoch_of_step(step, spe)
        np.testing.assert_allclose(fn(step), schedule.lr_for_epoch(0.1, epoch, [2, 3]), rtol=1e-6)


def test_steps_per_epoch_keeps_partial_batch():
    assert schedule.steps_per_epoch(50000, 64) == 782  # 781 full batches + one of 16
    assert schedule.steps_per_epoch(64, 64) == 1
    with pytest.raises(ValueError, match="batch_size > 0"):
        schedule.steps_per_epoch(10, 0)


def test_gamma_gate_counts_epochs_from_one():
    assert not schedule.student_swap_active(150, gamma=150)
    assert schedule.student_swap_active(151, gamma=150)


def test_sgd_equals_torch_sgd_over_steps(rng):
    torch = pytest.importorskip("torch")
    w0 = rng.standard_normal((5, 3)).astype(np.float32)
    b0 = rng.standard_normal((3,)).astype(np.float32)
    x = rng.standard_normal((8, 5)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    lrs = [0.1, 0.1, 0.01]  # an LR drop between steps, as at a stage boundary

    tw = torch.nn.Parameter(torch.tensor(w0))
    tb = torch.nn.Parameter(torch.tensor(b0))
    opt = torch.optim.SGD([tw, tb], lr=lrs[0], momentum=0.9, weight_decay=5e-4)
    for lr in lrs:
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(torch.tensor(x) @ tw + tb, torch.tensor(y))
        loss.backward()
        opt.step()

    params = {"w": jnp.asarray(w0), "b": jnp.asarray(b0)}
    tx = pytorch_sgd(lambda count: jnp.asarray(lrs)[count], momentum=0.9, weight_decay=5e-4)
    opt_state = tx.init(params)

    def loss_fn(p):
        logits = jnp.asarray(x) @ p["w"] + p["b"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(y)).mean()

    for _ in lrs:
        grads = jax.grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(params["w"], tw.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(params["b"], tb.detach().numpy(), rtol=1e-5, atol=1e-6)
