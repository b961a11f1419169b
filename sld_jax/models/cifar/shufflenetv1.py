"""ShuffleNetV1 for CIFAR (``ShuffleV1``; mdistiller's ``ShuffleNetv1.py``, 3 groups, 240/480/960 channels).

A 1x1 stem of 24 channels, three stages of 4/8/4 bottlenecks (grouped 1x1 - channel shuffle -
depthwise 3x3 - grouped 1x1, each with BN). A stage's first block has stride 2 and concatenates a
3x3 average-pooled shortcut (``count_include_pad``, as PyTorch's default); the others add it. Global
average pool and a linear classifier named ``linear``.

Submodules follow the PyTorch names: ``conv1``, ``bn1``, ``layer{s}_{i}/{conv1,bn1,conv2,bn2,conv3,bn3}``,
``linear``. Initialisation as the reference, which sets none: PyTorch's defaults (conv and linear
weights uniform in ``+-1/sqrt(fan_in)``, linear bias likewise, BatchNorm 1 / 0).
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from sld_jax.models.layers import (
    ZooModel,
    ZooModule,
    classifier,
    conv_bn,
    global_mean_pool,
    torch_default_kernel_init,
    zoo_fields,
)

Array = jax.Array

__all__ = ["channel_shuffle", "ShuffleV1Bottleneck", "ShuffleNetV1", "shufflenet_v1"]


def channel_shuffle(x: Array, groups: int) -> Array:
    """ShuffleNet channel shuffle of NHWC ``x`` ``[B, H, W, C]`` (``C`` divisible by ``groups``).

    Channel ``i * (C // groups) + j`` moves to position ``j * groups + i``, as the reference's NCHW
    ``reshape(N, g, C/g, H, W).permute(0, 2, 1, 3, 4)``.

    >>> channel_shuffle(jnp.arange(6.0).reshape(1, 1, 1, 6), 2)[0, 0, 0].tolist()
    [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
    """
    b, h, w, c = x.shape
    return x.reshape(b, h, w, groups, c // groups).swapaxes(-1, -2).reshape(b, h, w, c)


def avg_pool_3x3_s2_include_pad(x: Array) -> Array:
    """``AvgPool2d(3, stride=2, padding=1)`` with PyTorch's ``count_include_pad=True`` (always divides by 9).

    ``[B, H, W, C]`` -> ``[B, (H + 1) // 2, (W + 1) // 2, C]`` in ``x.dtype``. Differentiable under ``jit``:
    ``nn.avg_pool`` gives ``lax.reduce_window`` a Python constant as its initial value, which JAX
    recognises as a windowed sum (a traced initial value, e.g. ``jnp.zeros(())``, makes it a generic
    reduction without a reverse-mode rule).

    >>> avg_pool_3x3_s2_include_pad(jnp.full((1, 4, 4, 1), 9.0))[0, :, :, 0].tolist()
    [[4.0, 6.0], [6.0, 9.0]]
    """
    return nn.avg_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), count_include_pad=True)


class ShuffleV1Bottleneck(ZooModule):
    """ShuffleNetV1 unit; ``[B, H, W, in_planes]`` -> ``[B, H/stride, W/stride, out_planes (+ in_planes)]``.

    With ``stride == 2`` the branch output (``out_planes`` channels) is concatenated with the pooled
    input; otherwise added. Returns ``(relu(preact), preact)``.
    """

    in_planes: int
    out_planes: int
    stride: int
    groups: int

    @nn.compact
    def __call__(self, x: Array, *, train: bool, mask: Array | None = None) -> tuple[Array, Array]:
        """Apply the unit; returns ``(output, preact)`` in ``dtype``."""
        conv, bn = conv_bn(self, torch_default_kernel_init)
        mid = int(self.out_planes / 4)
        g = 1 if self.in_planes == 24 else self.groups
        y = conv(mid, 1, groups=g, name="conv1")(x)
        y = nn.relu(bn(name="bn1")(y, train=train, mask=mask))
        y = channel_shuffle(y, g)
        y = conv(mid, 3, stride=self.stride, padding=1, groups=mid, name="conv2")(y)
        y = nn.relu(bn(name="bn2")(y, train=train, mask=mask))
        y = conv(self.out_planes, 1, groups=self.groups, name="conv3")(y)
        y = bn(name="bn3")(y, train=train, mask=mask)
        if self.stride == 2:
            preact = jnp.concatenate([y, avg_pool_3x3_s2_include_pad(x)], axis=-1)
        else:
            preact = y + x
        return nn.relu(preact), preact


class ShuffleNetV1(ZooModel):
    """CIFAR ShuffleNetV1. Call ``(x, *, train, mask=None) -> (logits, features)``.

    * ``x``: ``[B, H, W, 3]`` float, normalised; 32x32 natively, any size >= 8 works (the pool is a
      global mean, equal to the reference's ``avg_pool2d(x, 4)`` at 32x32).
    * ``logits``: ``[B, num_classes]`` float32.
    * ``features`` (compute dtype): ``stage0`` (= ``stage0_preact``, stem after ReLU),
      ``stage{1,2,3}`` / ``stage{1,2,3}_preact`` and ``pooled`` ``[B, out_planes[-1]]``.

    Attributes:
      out_planes: channels of the three stages.
      num_blocks: units per stage.
      groups: groups of the 1x1 convolutions.
      num_classes: classifier outputs.
      dtype: compute dtype (parameters are float32).
      axis_name: mapped axis for cross-replica BatchNorm statistics, or None.
      fast_kernel_grad: compute the kernel gradients of ungrouped convolutions on CPU by matrix products
        (:func:`sld_jax.models.layers.conv_general_dilated`); False: XLA's native gradient.
    """

    out_planes: Sequence[int] = (240, 480, 960)
    num_blocks: Sequence[int] = (4, 8, 4)
    groups: int = 3
    num_classes: int = 100

    def forward(self, x: Array, feats: dict[str, Array], *, train: bool, mask: Array | None) -> Array:
        """The network on ``x`` ``[B, H, W, 3]``; see the class docstring."""
        conv, bn = conv_bn(self, torch_default_kernel_init)
        x = conv(24, 1, name="conv1")(x)
        x = nn.relu(bn(name="bn1")(x, train=train, mask=mask))
        feats["stage0"] = feats["stage0_preact"] = x
        cin = 24
        for s, (planes, n) in enumerate(zip(self.out_planes, self.num_blocks), start=1):
            for i in range(n):
                x, preact = ShuffleV1Bottleneck(
                    cin,
                    planes - cin if i == 0 else planes,
                    2 if i == 0 else 1,
                    self.groups,
                    **zoo_fields(self),
                    name=f"layer{s}_{i}",
                )(x, train=train, mask=mask)
                cin = planes
            feats[f"stage{s}"], feats[f"stage{s}_preact"] = x, preact
        feats["pooled"] = global_mean_pool(x)
        return classifier(self, feats["pooled"], name="linear")


shufflenet_v1 = functools.partial(ShuffleNetV1, (240, 480, 960), (4, 8, 4), 3)
