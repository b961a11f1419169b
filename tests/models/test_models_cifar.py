"""The CIFAR model zoo: parameter table, structure, names, dtypes, and forward passes equal to PyTorch twins.

Structure checks trace the models abstractly (``jax.eval_shape``: nothing is computed), so all 24
architectures are covered at no cost. Numerical forward passes (train mode with a padded, masked row,
compared with a PyTorch twin of the reference definition: logits and running statistics) run for one model of every
block family; ``SLD_JAX_FULL_MODEL_TESTS=1`` runs the deeper variants of the families too.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sld_jax.models import MODEL_INFO, MODELS, count_params, get_model, summarize
from sld_jax.models.cifar import CIFAR_MODELS

# The reference definitions' trainable parameters at 100 classes (the issue's table).
PARAMS = {
    "resnet8": 83_892,
    "resnet14": 181_108,
    "resnet20": 278_324,
    "resnet32": 472_756,
    "resnet44": 667_188,
    "resnet56": 861_620,
    "resnet110": 1_736_564,
    "resnet8x4": 1_233_540,
    "resnet32x4": 7_433_860,
    "ResNet18": 11_220_132,
    "ResNet50": 23_705_252,
    "wrn_16_1": 180_916,
    "wrn_16_2": 703_284,
    "wrn_40_1": 569_780,
    "wrn_40_2": 2_255_156,
    "vgg8": 3_965_028,
    "vgg11": 9_277_284,
    "vgg13": 9_462_180,
    "vgg16": 14_774_436,
    "vgg19": 20_086_692,
    "MobileNetV2": 812_836,
    "ShuffleV1": 949_258,
    "ShuffleV2": 1_355_528,
}
# Forward multiply-adds per 32x32 image stated in the issue.
MACS_M = {"resnet8x4": 177.1, "resnet32x4": 1083.0}

# (number of stages after the stem, pre-activations exposed, pooled width)
LAYOUT = {
    **{f"resnet{d}": (3, True, 64) for d in (8, 14, 20, 32, 44, 56, 110)},
    "resnet8x4": (3, True, 256),
    "resnet32x4": (3, True, 256),
    "resnet_tiny": (3, True, 16),
    "ResNet18": (4, True, 512),
    "ResNet50": (4, True, 2048),
    "wrn_16_1": (3, True, 64),
    "wrn_40_1": (3, True, 64),
    "wrn_16_2": (3, True, 128),
    "wrn_40_2": (3, True, 128),
    **{f"vgg{d}": (4, True, 512) for d in (8, 11, 13, 16, 19)},
    "MobileNetV2": (4, False, 1280),
    "ShuffleV1": (3, True, 960),
    "ShuffleV2": (3, True, 1024),
}

CONTRACT_NAMES = set(PARAMS) | {"resnet_tiny"}


@pytest.fixture(scope="session")
def summaries():
    """Abstract summaries at [2, 32, 32, 3] and 100 classes, computed once per name."""
    cache: dict[str, object] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = summarize(get_model(name, num_classes=100), (2, 32, 32, 3))
        return cache[name]

    return get


def _leaves_with_paths(tree):
    return {
        "/".join(str(k.key) for k in path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }


def test_registry_holds_every_contract_name():
    assert CONTRACT_NAMES <= set(CIFAR_MODELS) <= set(MODELS)
    for name in CIFAR_MODELS:
        assert MODEL_INFO[name]["resolution"] == 32
    assert MODEL_INFO["resnet8x4"]["params"] == PARAMS["resnet8x4"]


def test_get_model_reports_the_nearest_name_and_bad_num_classes():
    with pytest.raises(ValueError, match="did you mean 'wrn_40_2'"):
        get_model("wrn40_2", num_classes=100)
    with pytest.raises(ValueError, match="did you mean 'ShuffleV2'"):
        get_model("shufflev2", num_classes=100)
    with pytest.raises(ValueError, match="num_classes"):
        get_model("resnet8", num_classes=0)
    model = get_model("resnet20", num_classes=7, dtype=jnp.bfloat16, axis_name="data")
    assert (model.num_classes, model.dtype, model.axis_name) == (7, jnp.bfloat16, "data")


@pytest.mark.parametrize("name", sorted(CONTRACT_NAMES))
def test_structure_parameter_count_and_macs(name, summaries):
    s = summaries(name)
    if name in PARAMS:
        assert s.params == PARAMS[name]
    assert s.params == MODEL_INFO[name]["params"]
    assert s.macs == MODEL_INFO[name]["macs"]
    if name in MACS_M:
        assert round(s.macs / 1e6, 1) == MACS_M[name]
    assert s.logits.shape == (2, 100) and s.logits.dtype == jnp.float32
    stages, preact, width = LAYOUT[name]
    expected = {"pooled"} | {f"stage{i}" for i in range(stages + 1)}
    if preact:
        expected |= {f"stage{i}_preact" for i in range(stages + 1)}
    assert set(s.features) == expected
    assert s.features["pooled"].shape == (2, width)
    for i in range(1, stages + 1):
        f = s.features[f"stage{i}"]
        assert f.ndim == 4 and f.shape[0] == 2 and f.dtype == jnp.float32
        if preact:
            assert s.features[f"stage{i}_preact"].shape == f.shape
    params, stats = _leaves_with_paths(s.variables["params"]), _leaves_with_paths(s.variables["batch_stats"])
    assert all(v.dtype == jnp.float32 for v in [*params.values(), *stats.values()])
    # every BatchNorm has scale/bias params and mean/var statistics, nothing else is in batch_stats
    bn_modules = {k.rsplit("/", 1)[0] for k in stats}
    assert {k.rsplit("/", 1)[1] for k in stats} == {"mean", "var"}
    assert all(f"{m}/scale" in params and f"{m}/bias" in params for m in bn_modules)


@pytest.mark.parametrize(
    "name, keys",
    [
        (
            "resnet8x4",
            {
                "conv1/kernel": (3, 3, 3, 32),
                "bn1/scale": (32,),
                "layer1_0/conv1/kernel": (3, 3, 32, 64),
                "layer1_0/downsample_0/kernel": (1, 1, 32, 64),
                "layer1_0/downsample_1/bias": (64,),
                "layer3_0/conv2/kernel": (3, 3, 256, 256),
                "fc/kernel": (256, 100),
                "fc/bias": (100,),
            },
        ),
        (
            "ResNet50",
            {
                "layer1_0/shortcut_0/kernel": (1, 1, 64, 256),
                "layer4_2/conv3/kernel": (1, 1, 512, 2048),
                "linear/kernel": (2048, 100),
            },
        ),
        (
            "wrn_40_2",
            {
                "block1/layer_0/convShortcut/kernel": (1, 1, 16, 32),
                "block1/layer_0/bn1/scale": (16,),
                "block3/layer_5/conv2/kernel": (3, 3, 128, 128),
                "bn1/scale": (128,),
                "fc/kernel": (128, 100),
            },
        ),
        (
            "vgg13",
            {
                "block0_0/kernel": (3, 3, 3, 64),
                "block0_0/bias": (64,),
                "block0_1/scale": (64,),
                "block0_3/kernel": (3, 3, 64, 64),
                "block4_4/scale": (512,),
                "classifier/kernel": (512, 100),
            },
        ),
        (
            "MobileNetV2",
            {
                "conv1_0/kernel": (3, 3, 3, 16),
                "conv1_1/scale": (16,),
                "blocks_0_0/conv_0/kernel": (1, 1, 16, 16),
                "blocks_1_0/conv_3/kernel": (3, 3, 1, 48),
                "blocks_6_0/conv_7/scale": (160,),
                "conv2_0/kernel": (1, 1, 160, 1280),
                "classifier_0/kernel": (1280, 100),
            },
        ),
        (
            "ShuffleV1",
            {
                "conv1/kernel": (1, 1, 3, 24),
                "layer1_0/conv1/kernel": (1, 1, 24, 54),
                "layer1_1/conv1/kernel": (1, 1, 80, 60),
                "layer1_1/conv3/kernel": (1, 1, 20, 240),
                "layer3_3/bn3/scale": (960,),
                "linear/kernel": (960, 100),
            },
        ),
        (
            "ShuffleV2",
            {
                "layer1_0/conv1/kernel": (3, 3, 1, 24),
                "layer1_0/conv5/kernel": (1, 1, 58, 58),
                "layer1_3/conv2/kernel": (3, 3, 1, 58),
                "layer2_7/bn3/scale": (116,),
                "conv2/kernel": (1, 1, 464, 1024),
                "linear/kernel": (1024, 100),
            },
        ),
    ],
)
def test_submodules_are_named_after_the_torch_attribute_paths(name, keys, summaries):
    params = _leaves_with_paths(summaries(name).variables["params"])
    assert {k: tuple(params[k].shape) for k in keys if k in params} == keys
    assert "wrn" not in name or "block1/layer_1/convShortcut/kernel" not in params


@pytest.mark.parametrize(
    "name", ["resnet8", "ResNet18", "wrn_16_2", "vgg8", "MobileNetV2", "ShuffleV1", "ShuffleV2"]
)
def test_bf16_compute_keeps_float32_params_and_logits(name):
    s = summarize(get_model(name, num_classes=10, dtype=jnp.bfloat16), (2, 32, 32, 3))
    assert s.logits.dtype == jnp.float32
    assert all(f.dtype == jnp.bfloat16 for f in s.features.values())
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(s.variables))


# ---------------------------------------------------------------------------------------------------
# Numerical forward passes against PyTorch twins of the reference definitions.

_FAST_COMPILE = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
    "xla_cpu_use_fusion_emitters": False,
}
_FAMILY = ["resnet_tiny", "ResNet18", "wrn_16_2", "vgg8", "MobileNetV2", "ShuffleV1", "ShuffleV2"]
_MORE = ["resnet8", "resnet20", "resnet8x4", "ResNet50", "wrn_16_1", "wrn_40_1", "vgg11", "vgg16", "vgg19"]
_NUMERIC = _FAMILY + (_MORE if os.environ.get("SLD_JAX_FULL_MODEL_TESTS") == "1" else [])


def _to_flax(state_dict) -> dict:
    """Map a torch state_dict onto flax variables by the naming rule of the model contract."""
    variables: dict = {"params": {}, "batch_stats": {}}
    for key, tensor in state_dict.items():
        parts = key.split(".")
        path: list[str] = []
        for part in parts[:-1]:
            if part.isdigit():
                path[-1] += f"_{part}"
            else:
                path.append(part)
        leaf, value = parts[-1], tensor.detach().numpy().copy()
        if leaf == "num_batches_tracked":
            continue
        if leaf in ("running_mean", "running_var"):
            collection, name = "batch_stats", leaf[len("running_") :]
        elif leaf == "weight" and value.ndim == 1:
            collection, name = "params", "scale"
        elif leaf == "weight":
            collection, name = "params", "kernel"
            value = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T
        else:
            collection, name = "params", leaf
        node = variables[collection]
        for p in path:
            node = node.setdefault(p, {})
        node[name] = value
    return variables


@pytest.mark.parametrize("name", _NUMERIC)
def test_forward_equals_torch_twin_in_train_mode_with_padding(name, rng):
    torch = pytest.importorskip("torch")

    from sld_jax.models import torch_twins as twins

    # 16x16 inputs, except where the last maps would be 1x1: BatchNorm over 2 values is ill-conditioned
    classes, size = 10, 32 if name == "MobileNetV2" else 16
    calib = rng.normal(size=(4, 3, size, size)).astype(np.float32)
    twin = twins.randomize_(twins.build_twin(name, classes), rng, calib)
    x = rng.normal(size=(2, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        variables = _to_flax(twin.state_dict())
        twin.train()
        train_logits = twin(torch.from_numpy(x)).numpy()
        stats_after = _to_flax(twin.state_dict())["batch_stats"]

    model = get_model(name, num_classes=classes)
    assert count_params(variables["params"]) == sum(p.numel() for p in twin.parameters())

    def run(v, images, mask):
        (logits, feats), upd = model.apply(v, images, train=True, mask=mask, mutable=["batch_stats"])
        return logits, feats["pooled"], upd["batch_stats"]

    # a third, padded example (garbage, masked out) must change nothing for the two real ones
    images = np.concatenate([x, 50.0 * rng.normal(size=(1, 3, size, size)).astype(np.float32)]).transpose(
        0, 2, 3, 1
    )
    mask = jnp.array([True, True, False])
    compiled = jax.jit(run).lower(variables, images, mask).compile(compiler_options=_FAST_COMPILE)
    logits, pooled, stats = compiled(variables, images, mask)

    assert logits.dtype == jnp.float32 and logits.shape == (3, classes)
    assert bool(jnp.all(jnp.isfinite(logits))) and pooled.shape[0] == 3
    scale = float(np.abs(train_logits).max()) + 1e-3
    np.testing.assert_allclose(np.asarray(logits)[:2], train_logits, rtol=1e-4, atol=1e-4 * scale)
    got, want = _leaves_with_paths(stats), _leaves_with_paths(stats_after)
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_allclose(np.asarray(got[k]), np.asarray(want[k]), rtol=1e-4, atol=1e-5, err_msg=k)


def test_bf16_forward_is_close_to_float32():
    model32 = get_model("resnet_tiny", num_classes=10)
    model16 = get_model("resnet_tiny", num_classes=10, dtype=jnp.bfloat16)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(4, 8, 8, 3)), jnp.float32)
    # seeded numpy weights (std sqrt(2 / fan_in)) instead of model.init: no RNG program to compile
    shapes = summarize(model32, (4, 8, 8, 3)).variables
    variables = {
        "params": jax.tree.map(
            lambda a: (
                rng.normal(0, np.sqrt(2 / np.prod(a.shape[:-1])), a.shape).astype(np.float32)
                if len(a.shape) > 1
                else np.ones(a.shape, np.float32)
            ),
            shapes["params"],
        ),
        "batch_stats": jax.tree.map(lambda a: np.ones(a.shape, np.float32), shapes["batch_stats"]),
    }

    def run(v, x):
        out32, _ = model32.apply(v, x, train=True, mutable=["batch_stats"])
        (out16, feats16), _ = model16.apply(v, x, train=True, mutable=["batch_stats"])
        return out32[0], out16, feats16["stage2"]

    compiled = jax.jit(run).lower(variables, x).compile(compiler_options=_FAST_COMPILE)
    logits32, logits16, stage2 = compiled(variables, x)
    assert logits16.dtype == jnp.float32 and stage2.dtype == jnp.bfloat16
    np.testing.assert_allclose(
        np.asarray(logits16), np.asarray(logits32), atol=0.1 * float(jnp.abs(logits32).max())
    )
