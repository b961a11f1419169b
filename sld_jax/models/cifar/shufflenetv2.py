"""ShuffleNetV2 for CIFAR (``ShuffleV2``; mdistiller's ``ShuffleNetv2.py`` at net size 1).

A 1x1 stem of 24 channels, three stages (116, 232, 464 channels) each of a stride-2 down-sampling
unit followed by 3 / 7 / 3 split units (half the channels pass through, the other half goes through
1x1 - depthwise 3x3 - 1x1 with BN; concatenate; shuffle with 2 groups), a 1x1 conv to 1024 channels,
global average pool and a linear classifier named ``linear``.

Submodules follow the PyTorch names: ``conv1``, ``bn1``, ``layer{s}_0/{conv1..conv5,bn1..bn5}``
(down-sampling unit), ``layer{s}_{i}/{conv1,bn1,conv2,bn2,conv3,bn3}`` (``i >= 1``), ``conv2``, ``bn2``,
``linear``. Initialisation as the reference, which sets none: PyTorch's defaults.
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from sld_jax.models.cifar.shufflenetv1 import channel_shuffle
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

__all__ = ["SplitBlock", "DownBlock", "ShuffleNetV2", "shufflenet_v2"]


class SplitBlock(ZooModule):
    """Split unit: ``[B, H, W, C]`` -> ``[B, H, W, C]``; returns ``(shuffled output, unshuffled preact)``.

    The first ``C // 2`` channels pass through; the rest go through 1x1-BN-ReLU, depthwise 3x3-BN,
    1x1-BN (the pre-activation), ReLU. As the reference, ``preact`` is the concatenation before the
    ReLU and is not shuffled.
    """

    channels: int

    @nn.compact
    def __call__(self, x: Array, *, train: bool, mask: Array | None = None) -> tuple[Array, Array]:
        """Apply the unit."""
        conv, bn = conv_bn(self, torch_default_kernel_init)
        c = int(self.channels * 0.5)
        x1, x2 = x[..., :c], x[..., c:]
        y = conv(c, 1, name="conv1")(x2)
        y = nn.relu(bn(name="bn1")(y, train=train, mask=mask))
        y = conv(c, 3, padding=1, groups=c, name="conv2")(y)
        y = bn(name="bn2")(y, train=train, mask=mask)
        y = conv(c, 1, name="conv3")(y)
        pre = bn(name="bn3")(y, train=train, mask=mask)
        out = channel_shuffle(jnp.concatenate([x1, nn.relu(pre)], axis=-1), 2)
        return out, jnp.concatenate([x1, pre], axis=-1)


class DownBlock(ZooModule):
    """Stride-2 unit: ``[B, H, W, C_in]`` -> ``[B, H/2, W/2, out_channels]`` (two branches, concat, shuffle)."""

    in_channels: int
    out_channels: int

    @nn.compact
    def __call__(self, x: Array, *, train: bool, mask: Array | None = None) -> Array:
        """Apply the unit."""
        conv, bn = conv_bn(self, torch_default_kernel_init)
        mid = self.out_channels // 2
        cin = self.in_channels
        left = conv(cin, 3, stride=2, padding=1, groups=cin, name="conv1")(x)
        left = bn(name="bn1")(left, train=train, mask=mask)
        left = conv(mid, 1, name="conv2")(left)
        left = nn.relu(bn(name="bn2")(left, train=train, mask=mask))
        right = conv(mid, 1, name="conv3")(x)
        right = nn.relu(bn(name="bn3")(right, train=train, mask=mask))
        right = conv(mid, 3, stride=2, padding=1, groups=mid, name="conv4")(right)
        right = bn(name="bn4")(right, train=train, mask=mask)
        right = conv(mid, 1, name="conv5")(right)
        right = nn.relu(bn(name="bn5")(right, train=train, mask=mask))
        return channel_shuffle(jnp.concatenate([left, right], axis=-1), 2)


class ShuffleNetV2(ZooModel):
    """CIFAR ShuffleNetV2. Call ``(x, *, train, mask=None) -> (logits, features)``.

    * ``x``: ``[B, H, W, 3]`` float, normalised; 32x32 natively, any size >= 8 works (the pool is a
      global mean, equal to the reference's ``avg_pool2d(x, 4)`` at 32x32).
    * ``logits``: ``[B, num_classes]`` float32.
    * ``features`` (compute dtype): ``stage0`` (= ``stage0_preact``, stem after ReLU),
      ``stage{1,2,3}`` / ``stage{1,2,3}_preact`` (the last unit's output and its unshuffled
      pre-activation, as the reference) and ``pooled`` ``[B, out_channels[3]]``.

    Attributes:
      out_channels: channels of the three stages and of the final 1x1 conv.
      num_blocks: split units per stage (after the down-sampling unit).
      num_classes: classifier outputs.
      dtype: compute dtype (parameters are float32).
      axis_name: mapped axis for cross-replica BatchNorm statistics, or None.
      fast_kernel_grad: compute the kernel gradients of ungrouped convolutions on CPU by matrix products
        (:func:`sld_jax.models.layers.conv_general_dilated`); False: XLA's native gradient.
    """

    out_channels: Sequence[int] = (116, 232, 464, 1024)
    num_blocks: Sequence[int] = (3, 7, 3)
    num_classes: int = 100

    def forward(self, x: Array, feats: dict[str, Array], *, train: bool, mask: Array | None) -> Array:
        """The network on ``x`` ``[B, H, W, 3]``; see the class docstring."""
        conv, bn = conv_bn(self, torch_default_kernel_init)
        x = conv(24, 1, name="conv1")(x)
        x = nn.relu(bn(name="bn1")(x, train=train, mask=mask))
        feats["stage0"] = feats["stage0_preact"] = x
        cin = 24
        for s, (c, n) in enumerate(zip(self.out_channels[:3], self.num_blocks), start=1):
            x = DownBlock(cin, c, **zoo_fields(self), name=f"layer{s}_0")(x, train=train, mask=mask)
            preact = x
            for i in range(1, n + 1):
                x, preact = SplitBlock(c, **zoo_fields(self), name=f"layer{s}_{i}")(x, train=train, mask=mask)
            cin = c
            feats[f"stage{s}"], feats[f"stage{s}_preact"] = x, preact
        x = conv(self.out_channels[3], 1, name="conv2")(x)
        x = nn.relu(bn(name="bn2")(x, train=train, mask=mask))
        feats["pooled"] = global_mean_pool(x)
        return classifier(self, feats["pooled"], name="linear")


shufflenet_v2 = functools.partial(ShuffleNetV2, (116, 232, 464, 1024), (3, 7, 3))
