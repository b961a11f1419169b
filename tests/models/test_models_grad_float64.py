"""Float64 gradients of the CIFAR student architectures equal their PyTorch twins' to 1e-9.

In float64 on both sides (JAX with ``jax_enable_x64``, scoped to this module's calls by the
``jax.enable_x64`` context manager; ``torch.float64``), the gradient of a fixed loss with respect to
every parameter tensor, in train mode, must agree to 1e-9 relative (max abs difference over the
tensor's max abs value): float64 removes float32's conditioning, so a larger difference is a defect.
All eleven students run, each on the default kernel-gradient path and resnet8 and vgg8 also on
XLA's (grouped and depthwise convolutions take XLA's gradient on both paths);
``SLD_JAX_FULL_MODEL_TESTS=1`` runs every student on both paths.
The loss is ``sum(logits * C)`` for a fixed ``C``: the gradient of any loss is the model's
vector-Jacobian product with ``dL/dlogits``, and a fixed cotangent exercises every backward path
while staying exact through the models' float32 logits. The running statistics after the step
are compared too. Each architecture runs with the CPU kernel-gradient path of
:func:`sld_jax.models.layers.conv_general_dilated` on and off (the ``fast_kernel_grad`` field);
grouped and depthwise convolutions always use XLA's gradient.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sld_jax.models import get_model  # noqa: E402
from sld_jax.models import torch_import as ti  # noqa: E402
from sld_jax.models import torch_twins as twins  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_single_thread")

_FAST_COMPILE = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
    "xla_cpu_use_fusion_emitters": False,
}
_CLASSES, _TOL, _ZERO = 10, 1e-9, 1e-13
# The paper's CIFAR students and an input side that keeps every final map >= 2x2 (BatchNorm over
# two values per channel would be ill-conditioned even in float64).
STUDENTS = {
    "resnet8": 16,
    "resnet20": 16,
    "resnet32": 16,
    "resnet8x4": 16,
    "wrn_16_1": 16,
    "wrn_16_2": 16,
    "wrn_40_1": 16,
    "vgg8": 16,
    "MobileNetV2": 32,
    "ShuffleV1": 16,
    "ShuffleV2": 16,
}
# Every student runs; SLD_JAX_FULL_MODEL_TESTS=1 also runs each on both kernel-gradient paths.
_FULL = os.environ.get("SLD_JAX_FULL_MODEL_TESTS") == "1"
_RUN = list(STUDENTS)
# Kernel-gradient paths: the dot path (the default) and XLA's; grouped and depthwise convolutions
# take XLA's gradient on both, so by default the second run is left to the ungrouped models.
_BOTH_PATHS_BY_DEFAULT = {"resnet8", "vgg8"}


def _torch_reference(twin, x, cotangent):
    """Float64 train-mode gradients and updated state_dict of ``twin`` (float32-valued weights)."""
    twin = twin.double().train()
    twin.zero_grad()
    loss = (twin(torch.from_numpy(x)) * torch.from_numpy(cotangent)).sum()
    loss.backward()
    state = twin.state_dict()
    grads = {k: p.grad.detach().clone() for k, p in twin.named_parameters()}
    return {**state, **grads}, state


def _jax_step(model, variables, x, cotangent):
    def loss(params):
        (logits, _), updated = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            x,
            train=True,
            mutable=["batch_stats"],
        )
        return jnp.sum(logits.astype(cotangent.dtype) * cotangent), updated["batch_stats"]

    grads, stats = jax.grad(loss, has_aux=True)(variables["params"])
    return grads, stats


def _mismatches(got: dict, want: dict) -> dict[str, str]:
    """The tensors of ``got`` that differ from ``want`` by more than 1e-9 relative, with their error.

    The error of a tensor is its max abs difference over the reference's max abs value. A bias
    followed (through linear maps only) by a train-mode BatchNorm has a zero gradient (BatchNorm
    removes any constant shift); both sides then give rounding noise, about 1e-16 of the model's
    largest gradient where real gradients are above 1e-6 of it, so such tensors must instead be
    below 1e-13 of the largest gradient on both sides.
    """
    peak = {k: float(np.max(np.abs(np.asarray(v)))) for k, v in want.items()}
    scale = max(peak.values())
    bad = {}
    for k, w in want.items():
        g, w = np.asarray(got[k]), np.asarray(w)
        if peak[k] <= _ZERO * scale:
            if float(np.max(np.abs(g))) > _ZERO * scale:
                bad[k] = f"should be 0, is {float(np.max(np.abs(g))) / scale:.1e} of the largest gradient"
        elif float(np.max(np.abs(g - w))) > _TOL * peak[k]:
            bad[k] = f"off by {float(np.max(np.abs(g - w))) / peak[k]:.1e}"
    return bad


def _max_rel(got, want):
    got, want = np.asarray(got), np.asarray(want)
    return float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-300))


def _flat(tree) -> dict:
    """``{"['a']['b']": leaf}`` for every leaf of ``tree``."""
    return {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.mark.parametrize("name", _RUN)
def test_float64_gradients_equal_torch_twin(name, rng):
    side = STUDENTS[name]
    calib = rng.normal(size=(4, 3, side, side)).astype(np.float32)
    # float32 weight values: exact in float64 on both sides
    twin = twins.randomize_(twins.build_twin(name, _CLASSES), rng, calib)
    x = rng.normal(size=(2, 3, side, side))
    cotangent = rng.normal(size=(2, _CLASSES)).astype(np.float32).astype(np.float64)
    start = {k: v.clone() for k, v in twin.state_dict().items()}
    want_grads_sd, want_state = _torch_reference(twin, x, cotangent)

    with jax.enable_x64(True):
        variables = ti.convert_state_dict(start, name, num_classes=_CLASSES, dtype=np.float64)
        want_grads = ti.convert_state_dict(want_grads_sd, name, num_classes=_CLASSES, dtype=np.float64)[
            "params"
        ]
        want_stats = ti.convert_state_dict(want_state, name, num_classes=_CLASSES, dtype=np.float64)[
            "batch_stats"
        ]
        x_nhwc = jnp.asarray(x.transpose(0, 2, 3, 1))
        cot = jnp.asarray(cotangent)
        assert x_nhwc.dtype == jnp.float64 and jax.tree.leaves(variables)[0].dtype == jnp.float64
        model = get_model(name, num_classes=_CLASSES, dtype=jnp.float64)
        for fast in (True, False) if _FULL or name in _BOTH_PATHS_BY_DEFAULT else (True,):
            step = jax.jit(functools.partial(_jax_step, model.clone(fast_kernel_grad=fast)))
            compiled = step.lower(variables, x_nhwc, cot).compile(compiler_options=_FAST_COMPILE)
            grads, stats = compiled(variables, x_nhwc, cot)
            path = "dot kernel-gradient path" if fast else "XLA kernel gradients"
            got, want = _flat(grads), _flat(want_grads)
            assert got.keys() == want.keys()
            assert all(v.dtype == jnp.float64 for v in got.values())
            bad = _mismatches(got, want)
            assert not bad, f"{name} ({path}): gradients differ: {bad}"
            got_s, want_s = _flat(stats), _flat(want_stats)
            assert got_s.keys() == want_s.keys()
            stat_err = max(_max_rel(got_s[k], want_s[k]) for k in want_s)
            assert stat_err <= _TOL, f"{name} ({path}): running statistics off by {stat_err:.1e}"
