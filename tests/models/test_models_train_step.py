"""Every architecture of the zoo trains: one jitted gradient step per model of ``MODEL_INFO``.

Each model takes one SGD step in train mode on a batch of two images (CIFAR models at 32x32, the
ImageNet ones at 32x32 too: every stage still has a 1x1 map or larger), 10 classes, with a
``"dropout"`` rng for the models that have dropout. The step must compile (reverse mode exists for
every op under ``jit``), give a finite loss and finite gradients, change every parameter tensor and
update every BatchNorm running statistic. Weights come from a seeded numpy Generator (no
initialisation program to compile) and each step is compiled once, with XLA's backend optimisation
off: the programs run once.

The deeper members of a family repeat the blocks of a shallower one (resnet20 ... resnet110 are
resnet14's class with more basic blocks per stage, imagenet_resnet101 is imagenet_resnet50's with more
bottlenecks, ...). For these (``_REDUCED``), the compiled step runs on the same module class cut to
two blocks per stage (each stage's first block, with its shortcut, and one repeated block: every
block configuration of the full model; a ``DownBlock`` and one ``SplitBlock`` for ShuffleNetV2), which
is often a registered model itself (the step is then compiled once for both). The full-depth model
is checked to be exactly that: the same class, its forward pass traced abstractly, every variable of
the reduced model one of its own, and each of its blocks the same variables and shapes as the first
or the repeated block of the same stage in the reduced model (gradients and statistics of repeated
blocks run through the same code, so they are not compiled once per repeat).
resnet8, resnet14, resnet8x4, resnet_tiny, wrn_16_*, vgg8 ... vgg13, ResNet18, imagenet_resnet18 and
the MobileNets take their compiled step at full depth.
"""

from __future__ import annotations

import functools
import math
import re

import jax
import numpy as np
import optax
import pytest

from sld_jax.models import MODEL_INFO, get_model, summarize
from sld_jax.models.cifar import VGG_CONFIGS

# The programs run once: XLA's backend optimisation is not worth its time, and the CPU fusion emitters
# roughly double the compile time of these graphs.
_FAST_COMPILE = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
    "xla_cpu_use_fusion_emitters": False,
}
_CLASSES, _BATCH, _SIDE = 10, 2, 32
_ARCHS = sorted(MODEL_INFO)
_TWO_PER_STAGE = {"stage_sizes": (2, 2, 2, 2)}
# Registered name -> field overrides that cut each stage to its first block and one repeated block.
_REDUCED = {
    **{n: {"depth": 14} for n in ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet32x4")},
    "wrn_40_1": {"depth": 16},
    "wrn_40_2": {"depth": 16},
    "vgg16": {"cfg": VGG_CONFIGS["B"]},
    "vgg19": {"cfg": VGG_CONFIGS["B"]},
    "ResNet50": _TWO_PER_STAGE,
    "imagenet_resnet34": _TWO_PER_STAGE,
    "imagenet_resnet50": _TWO_PER_STAGE,
    "imagenet_resnet101": _TWO_PER_STAGE,
    "ShuffleV1": {"num_blocks": (2, 2, 2)},
    "ShuffleV2": {"num_blocks": (1, 1, 1)},
}


def _step_model(name):
    """The module whose step is compiled for the registered model ``name`` (itself unless reduced)."""
    return get_model(name, num_classes=_CLASSES).clone(**_REDUCED.get(name, {}))


def _group_by_step_model() -> dict[str, list[str]]:
    """``{test id: registered names}``, one entry per distinct compiled module (equal modules share one)."""
    groups: list[tuple[object, list[str]]] = []
    for name in _ARCHS:
        model = _step_model(name)
        same = [names for other, names in groups if other == model]
        if same:
            same[0].append(name)
        else:
            groups.append((model, [name]))
    by_id = {}
    for _, names in groups:
        full = [n for n in names if n not in _REDUCED]
        smallest = min(names, key=lambda n: MODEL_INFO[n]["params"])
        by_id[full[0] if full else f"{smallest}-two-blocks-per-stage"] = names
    return by_id


_STEPS = _group_by_step_model()


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


@pytest.mark.parametrize("step_id", list(_STEPS))
def test_one_jitted_training_step(step_id, rng):
    names = _STEPS[step_id]
    model = _step_model(names[0])
    shape = (_BATCH, _SIDE, _SIDE, 3)
    variables = _random_variables(summarize(model, shape).variables, rng)
    images = rng.normal(size=shape).astype(np.float32)
    labels = np.arange(_BATCH, dtype=np.int32) % _CLASSES

    key = jax.random.key(0)
    step = jax.jit(functools.partial(_sgd_step, model))
    compiled = step.lower(variables, images, labels, key).compile(compiler_options=_FAST_COMPILE)
    loss, grads, params, stats = compiled(variables, images, labels, key)

    assert np.isfinite(float(loss)), f"{names}: loss {float(loss)}"
    grads, before, after = _flat(grads), _flat(variables["params"]), _flat(params)
    assert grads.keys() == before.keys() == after.keys()
    not_finite = [k for k, g in grads.items() if not np.all(np.isfinite(g))]
    assert not not_finite, f"{names}: non-finite gradients in {not_finite}"
    unchanged = [k for k in before if after[k].dtype != np.float32 or np.array_equal(after[k], before[k])]
    assert not unchanged, f"{names}: parameters not trained by the step: {unchanged}"
    stats_before, stats_after = _flat(variables["batch_stats"]), _flat(stats)
    assert stats_before.keys() == stats_after.keys() and stats_before
    stale = [
        k
        for k in stats_before
        if not np.all(np.isfinite(stats_after[k])) or np.array_equal(stats_after[k], stats_before[k])
    ]
    assert not stale, f"{names}: BatchNorm statistics not updated (or not finite): {stale}"


_BLOCK = re.compile(r"^(layer\d*|block\d+)_(\d+)$")  # resnet, shufflenet: layer{s}_{i}; wrn: layer_{i}; vgg


def _block_signature(variables) -> set:
    """``{(path, shape, dtype)}`` with each repeated block's index >= 1 written as 1 (a stage's first block
    keeps index 0): two models whose stages hold the same blocks, in any number, have the same set."""

    def part(key):
        match = _BLOCK.match(key.key)
        return f"{match[1]}_{min(int(match[2]), 1)}" if match else key.key

    return {
        ("/".join(part(k) for k in path), tuple(leaf.shape), leaf.dtype)
        for path, leaf in jax.tree_util.tree_leaves_with_path(variables)
    }


@pytest.mark.parametrize("name", sorted(_REDUCED))
def test_full_depth_model_repeats_the_blocks_of_its_reduced_step(name):
    model, reduced = get_model(name, num_classes=_CLASSES), _step_model(name)
    shape = (_BATCH, _SIDE, _SIDE, 3)
    # The forward pass at full depth traces (abstractly), and the full model is the reduced one with
    # more repeats of the same blocks: the same class, every reduced variable one of the full model's,
    # and every full-model block the same variables and shapes as the first or the repeated block of
    # its stage in the reduced model, whose step test_one_jitted_training_step compiles and runs.
    full_vars, reduced_vars = summarize(model, shape).variables, summarize(reduced, shape).variables
    assert type(reduced) is type(model) and reduced != model
    full_flat, reduced_flat = _flat(full_vars), _flat(reduced_vars)
    assert len(reduced_flat) < len(full_flat)
    other = [k for k, v in reduced_flat.items() if k not in full_flat or full_flat[k].shape != v.shape]
    assert not other, f"{name}: the reduced model has variables the full one lacks: {other}"
    assert _block_signature(full_vars) == _block_signature(reduced_vars), f"{name}: blocks differ"
