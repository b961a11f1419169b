"""ImageNet zoo: parameter counts, multiply-adds, features, dtype, masking and initialisation."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sld_jax.models import MODEL_INFO, get_model
from sld_jax.models.imagenet import IMAGENET_MODEL_INFO, IMAGENET_MODELS
from sld_jax.models.layers import Linear, kaiming_normal_fan_out, torch_default_kernel_init

# Trainable parameters at 1000 classes (torchvision / the reference definitions).
PARAMS = {
    "imagenet_resnet18": 11_689_512,
    "imagenet_resnet34": 21_797_672,
    "imagenet_resnet50": 25_557_032,
    "imagenet_resnet101": 44_549_160,
    "imagenet_mobilenet_v1": 4_231_976,  # the reference code's ImageNet "MobileNetV2"
    "imagenet_mobilenet_v2": 3_504_872,  # torchvision's MobileNetV2
}
# Forward multiply-adds per 224x224 image in G, as published (torchvision's tables; MobileNetV1 paper).
GMACS = {
    "imagenet_resnet18": 1.81,
    "imagenet_resnet34": 3.66,
    "imagenet_resnet50": 4.09,
    "imagenet_resnet101": 7.80,
    "imagenet_mobilenet_v1": 0.57,
    "imagenet_mobilenet_v2": 0.30,
}


# Programs that run once: compile quickly (the CPU fusion emitters roughly double the compile time).
_FAST_COMPILE = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
    "xla_cpu_use_fusion_emitters": False,
}


def _abstract_init(model, side, dtype=jnp.float32):
    x = jax.ShapeDtypeStruct((2, side, side, 3), dtype)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)


def _trace_init(model, side):
    """Abstract variables of ``model`` plus the layers met while tracing ``init`` (no computation).

    Returns ``(variables, macs, layers)``: ``macs`` sums the multiply-adds of every convolution and
    linear layer for one ``side x side`` image; ``layers`` lists ``(path, module)`` of those layers.
    """
    total, layers = [0], []

    def count(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        module = context.module
        if context.method_name == "__call__" and isinstance(module, (nn.Conv, Linear)):
            layers.append(("/".join(module.path), module))
            if isinstance(module, nn.Conv):
                per_output = (
                    int(np.prod(module.kernel_size)) * args[0].shape[-1] // module.feature_group_count
                )
            else:
                per_output = args[0].shape[-1]
            total[0] += int(np.prod(out.shape[1:])) * per_output
        return out

    with nn.intercept_methods(count):
        x = jax.ShapeDtypeStruct((1, side, side, 3), jnp.float32)
        variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    return variables, total[0], layers


def test_registry_holds_the_imagenet_zoo():
    assert sorted(IMAGENET_MODELS) == sorted(PARAMS)
    for name in PARAMS:
        assert MODEL_INFO[name] == IMAGENET_MODEL_INFO[name]
        assert IMAGENET_MODEL_INFO[name]["resolution"] == 224


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_param_count_macs_and_initialisers(name):
    model = get_model(name, num_classes=1000)
    variables, macs, layers = _trace_init(model, 224)
    n = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"]))
    assert n == PARAMS[name] == IMAGENET_MODEL_INFO[name]["params"]
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
    assert macs == IMAGENET_MODEL_INFO[name]["macs"]
    assert round(macs / 1e9, 2) == GMACS[name]
    # Initialisation as the reference: torchvision/mdistiller ResNets and torchvision's MobileNetV2 use
    # kaiming-normal (fan_out) convolutions; the reference MobileNetV1 keeps PyTorch's defaults.
    convs = [m for _, m in layers if isinstance(m, nn.Conv)]
    linears = [m for _, m in layers if isinstance(m, Linear)]
    want_conv_init = torch_default_kernel_init if name == "imagenet_mobilenet_v1" else kaiming_normal_fan_out
    assert convs and all(m.kernel_init is want_conv_init and not m.use_bias for m in convs)
    assert len(linears) == 1
    if name == "imagenet_mobilenet_v2":  # torchvision: normal(0, 0.01), zero bias
        w = linears[0].kernel_init(jax.random.key(0), (1280, 1000), jnp.float32)
        assert abs(float(jnp.std(w)) / 0.01 - 1) < 0.02
        assert float(jnp.max(jnp.abs(linears[0].bias_init(jax.random.key(0), (5,), jnp.float32)))) == 0.0
    else:  # PyTorch's default nn.Linear
        assert linears[0].kernel_init is None and linears[0].bias_init is None


# ResNet-34/101 repeat the blocks of ResNet-18/50 (their structure is covered by the tests above).
@pytest.mark.parametrize(
    "name", ["imagenet_resnet18", "imagenet_resnet50", "imagenet_mobilenet_v1", "imagenet_mobilenet_v2"]
)
def test_output_and_feature_shapes(name):
    """Shapes of logits and features at a small input, in both modes (traced, not computed)."""
    model = get_model(name, num_classes=10)
    variables = _abstract_init(model, 64)
    x = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)
    logits, feats = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
    assert logits.shape == (2, 10) and logits.dtype == jnp.float32
    width = {
        "imagenet_resnet18": 512,
        "imagenet_resnet34": 512,
        "imagenet_mobilenet_v1": 1024,
        "imagenet_mobilenet_v2": 1280,
    }.get(name, 2048)
    assert feats["pooled"].shape == (2, width)
    if "resnet" in name:
        stages = range(5)
        assert feats["stage0"].shape == (2, 32, 32, 64)
    else:
        stages = range(1, 5)
    assert [feats[f"stage{i}"].shape[1] for i in stages[-4:]] == [16, 8, 4, 2]
    if name != "imagenet_mobilenet_v2":  # linear bottlenecks: no separate pre-activation
        assert all(feats[f"stage{i}_preact"].shape == feats[f"stage{i}"].shape for i in stages)
    rngs = {"dropout": jax.random.key(1)}
    (logits_t, _), upd = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"], rngs=rngs), variables, x
    )
    assert logits_t.shape == (2, 10)
    assert jax.tree.structure(upd["batch_stats"]) == jax.tree.structure(variables["batch_stats"])
    if name == "imagenet_mobilenet_v2":  # torchvision's classifier dropout needs an rng in train mode
        with pytest.raises(Exception, match="dropout"):
            jax.eval_shape(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]), variables, x)


@pytest.fixture(scope="module")
def mobilenet_v1():
    """The reference's ImageNet student (MobileNetV1) at 10 classes with real initial variables."""
    model = get_model("imagenet_mobilenet_v1", num_classes=10)
    x = jnp.zeros((1, 32, 32, 3), jnp.float32)
    init = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))
    return model, init.lower(x).compile(compiler_options=_FAST_COMPILE)(x)


def _run(fn, *args):
    return jax.jit(fn).lower(*args).compile(compiler_options=_FAST_COMPILE)(*args)


def test_initial_values(mobilenet_v1):
    _, variables = mobilenet_v1
    p = variables["params"]
    # PyTorch's default Conv2d init: uniform in +-1/sqrt(fan_in); fan_in = 1024 for the last 1x1 conv.
    kernel = np.asarray(p["model_13_3"]["kernel"])
    assert kernel.shape == (1, 1, 1024, 1024)
    assert np.max(np.abs(kernel)) <= 1 / 32 and abs(kernel.std() * np.sqrt(3 * 1024) - 1) < 0.02
    assert p["model_13_0"]["kernel"].shape == (3, 3, 1, 1024)  # depthwise: fan_in 9
    assert np.max(np.abs(p["model_13_0"]["kernel"])) <= 1 / 3
    np.testing.assert_array_equal(p["model_13_4"]["scale"], 1.0)
    np.testing.assert_array_equal(p["model_13_4"]["bias"], 0.0)
    np.testing.assert_array_equal(variables["batch_stats"]["model_0_1"]["var"], 1.0)
    bound = 1 / np.sqrt(1024)
    assert np.max(np.abs(p["fc"]["kernel"])) <= bound and np.max(np.abs(p["fc"]["bias"])) <= bound


def test_forward_float32_and_bfloat16(mobilenet_v1, rng):
    model, variables = mobilenet_v1
    bf16 = get_model("imagenet_mobilenet_v1", num_classes=10, dtype=jnp.bfloat16)
    x = jnp.asarray(rng.normal(size=(2, 32, 32, 3)), jnp.float32)
    (logits, feats), (logits_bf, feats_bf) = _run(
        lambda v, x: (model.apply(v, x, train=False), bf16.apply(v, x, train=False)), variables, x
    )
    assert logits.dtype == logits_bf.dtype == jnp.float32
    assert feats_bf["stage4"].dtype == jnp.bfloat16 and feats["stage4"].dtype == jnp.float32
    assert np.all(np.isfinite(logits)) and np.all(np.isfinite(logits_bf))
    np.testing.assert_allclose(logits_bf, logits, atol=0.05 * float(np.max(np.abs(logits))) + 1e-3)
    # The reference's features: stage{i} = relu(stage{i}_preact), pooled = spatial mean of stage4.
    np.testing.assert_allclose(feats["stage2"], np.maximum(feats["stage2_preact"], 0))
    np.testing.assert_allclose(feats["pooled"], np.mean(feats["stage4"], axis=(1, 2)), rtol=1e-5, atol=1e-6)


def test_mask_keeps_padding_out_of_batchnorm_statistics(mobilenet_v1, rng):
    model, variables = mobilenet_v1
    # 4 real rows + 1 padding row: with only 2 real rows the 1x1 maps of the last blocks would be
    # normalised over 2 values, where float32 rounding alone (e.g. reversing the batch) moves the logits ~1%.
    x = jnp.asarray(rng.normal(size=(5, 32, 32, 3)), jnp.float32)
    mask = jnp.array([True, True, True, True, False])

    def train(v, x, mask):
        return model.apply(v, x, train=True, mask=mask, mutable=["batch_stats"])

    (logits, _), masked = _run(train, variables, x, mask)
    (logits_4, _), sliced = _run(lambda v, x: train(v, x, None), variables, x[:4])
    for a, b in zip(jax.tree.leaves(masked), jax.tree.leaves(sliced)):
        assert np.max(np.abs(a - b)) <= 1e-4 * np.max(np.abs(b))
    assert np.max(np.abs(logits[:4] - logits_4)) <= 1e-4 * np.max(np.abs(logits_4))


def test_rejects_channels_first_input():
    model = get_model("imagenet_mobilenet_v1", num_classes=10)
    with pytest.raises(ValueError, match="NHWC"):
        jax.eval_shape(
            lambda x: model.init(jax.random.key(0), x, train=False),
            jax.ShapeDtypeStruct((2, 3, 32, 32), jnp.float32),
        )
