"""Every architecture of the zoo trains: one jitted gradient step per model of ``MODEL_INFO``.

Each model takes one SGD step in train mode on a batch of two images (CIFAR models at 32x32, the
ImageNet ones at 32x32 too: every stage still has a 1x1 map or larger), 10 classes, with a
``"dropout"`` rng for the models that have dropout. The step must compile (reverse mode exists for
every op under ``jit``), give a finite loss and finite gradients, change every parameter tensor and
update every BatchNorm running statistic. Weights come from a seeded numpy Generator (no
initialisation program to compile) and each step is compiled once, with XLA's backend optimisation
off: the programs run once. Every architecture runs (in CI too).
"""

from __future__ import annotations

import math

import jax
import numpy as np
import optax
import pytest

from sld_jax.models import MODEL_INFO, get_model, summarize

# The programs run once: XLA's backend optimisation is not worth its time, and the CPU fusion emitters
# roughly double the compile time of these graphs.
_FAST_COMPILE = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
    "xla_cpu_use_fusion_emitters": False,
}
_CLASSES, _BATCH, _SIDE = 10, 2, 32
_ARCHS = sorted(MODEL_INFO)


def _random_variables(shapes, rng):
    """Seeded weights for an abstract variable tree: kernels ~ N(0, 2 / fan_in), BN 1 / 0, biases small."""

    def fill(path, leaf):
        name = path[-1].key
        if name == "kernel":
            return rng.normal(0.0, math.sqrt(2.0 / math.prod(leaf.shape[:-1])), leaf.shape).astype(np.float32)
        if name in ("scale", "var"):
            return np.ones(leaf.shape, np.float32)
        if name == "mean":
            return np.zeros(leaf.shape, np.float32)
        return rng.normal(0.0, 0.01, leaf.shape).astype(np.float32)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def _sgd_step(model, variables, images, labels, key):
    """One train-mode step: ``(loss, grads, new params, new batch_stats)``; ``key`` feeds dropout."""

    def loss_fn(params):
        (logits, _), updated = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            images,
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": key},
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, updated["batch_stats"]

    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
    params = jax.tree.map(lambda p, g: p - 0.1 * g, variables["params"], grads)
    return loss, grads, params, stats


def _flat(tree) -> dict:
    """``{"['a']['b']": leaf}`` for every leaf of ``tree``."""
    return {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.mark.parametrize("name", _ARCHS)
def test_one_jitted_training_step(name, rng):
    model = get_model(name, num_classes=_CLASSES)
    shape = (_BATCH, _SIDE, _SIDE, 3)
    variables = _random_variables(summarize(model, shape).variables, rng)
    images = rng.normal(size=shape).astype(np.float32)
    labels = np.arange(_BATCH, dtype=np.int32) % _CLASSES

    key = jax.random.key(0)
    step = jax.jit(lambda v, x, y, k: _sgd_step(model, v, x, y, k))
    compiled = step.lower(variables, images, labels, key).compile(compiler_options=_FAST_COMPILE)
    loss, grads, params, stats = compiled(variables, images, labels, key)

    assert np.isfinite(float(loss)), f"{name}: loss {float(loss)}"
    grads, before, after = _flat(grads), _flat(variables["params"]), _flat(params)
    assert grads.keys() == before.keys() == after.keys()
    not_finite = [k for k, g in grads.items() if not np.all(np.isfinite(g))]
    assert not not_finite, f"{name}: non-finite gradients in {not_finite}"
    unchanged = [k for k in before if after[k].dtype != np.float32 or np.array_equal(after[k], before[k])]
    assert not unchanged, f"{name}: parameters not trained by the step: {unchanged}"
    stats_before, stats_after = _flat(variables["batch_stats"]), _flat(stats)
    assert stats_before.keys() == stats_after.keys() and stats_before
    stale = [
        k
        for k in stats_before
        if not np.all(np.isfinite(stats_after[k])) or np.array_equal(stats_after[k], stats_before[k])
    ]
    assert not stale, f"{name}: BatchNorm statistics not updated (or not finite): {stale}"
