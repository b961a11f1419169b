"""The CIFAR ResNets of the knowledge-distillation literature (resnet8 ... resnet110, resnet8x4, resnet32x4).

The definition is the classic CIFAR ResNet as in mdistiller's ``models/cifar/resnet.py``: a 3x3 stem,
three stages of ``n = (depth - 2) / 6`` post-activation basic blocks (strides 1, 2, 2), a global
average pool (the reference's ``AvgPool2d(8)`` at 32x32) and a linear classifier. A stage's first
block gets a 1x1-conv + BN ``downsample`` shortcut when the stride or the width changes.

Submodules follow the PyTorch names: ``conv1``, ``bn1``, ``layer{s}_{i}/{conv1,bn1,conv2,bn2}``,
``layer{s}_{i}/downsample_0`` (conv), ``layer{s}_{i}/downsample_1`` (BN), ``fc``. Initialisation as the
reference: convolutions kaiming-normal (fan_out, ReLU gain), BatchNorm 1 / 0, ``fc`` PyTorch's
``nn.Linear`` default.
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax

from sld_jax.models.layers import ZooModel, classifier, conv_bn, global_mean_pool
from sld_jax.models.resnet_blocks import BasicBlock, Bottleneck, resnet_stages

Array = jax.Array

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "CifarResNet",
    "resnet8",
    "resnet14",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "resnet8x4",
    "resnet32x4",
    "resnet_tiny",
]


class CifarResNet(ZooModel):
    """CIFAR ResNet: 3x3 stem, three stages (strides 1, 2, 2), global mean pool, linear classifier.

    Call ``(x, *, train, mask=None) -> (logits, features)``:

    * ``x``: ``[B, H, W, 3]`` float, normalised; 32x32 natively, any size >= 4 works (the pool is a
      global mean, equal to the reference's ``AvgPool2d(8)`` at 32x32).
    * ``mask``: optional ``[B]`` bool; False rows are left out of BatchNorm batch statistics.
    * ``logits``: ``[B, num_classes]`` float32.
    * ``features`` (compute dtype): ``stage0`` (stem output after ReLU), ``stage{1,2,3}`` and
      ``stage{1,2,3}_preact`` (each stage's output after / before the last block's ReLU),
      ``stage0_preact`` (= ``stage0``, as the reference's ``preact_feats[0]``) and ``pooled``
      ``[B, widths[3] * expansion]``.

    Attributes:
      depth: ``6n + 2`` for basic blocks, ``9n + 2`` for bottlenecks.
      widths: ``(stem, stage1, stage2, stage3)`` channels, e.g. ``(16, 16, 32, 64)``.
      block: ``"basic"`` or ``"bottleneck"``.
      num_classes: classifier outputs.
      dtype: compute dtype (parameters are float32).
      axis_name: mapped axis for cross-replica BatchNorm statistics, or None.
      fast_kernel_grad: compute the kernel gradients of ungrouped convolutions on CPU by matrix products
        (:func:`sld_jax.models.layers.conv_general_dilated`); False: XLA's native gradient.
    """

    depth: int
    widths: Sequence[int]
    block: str = "basic"
    num_classes: int = 100

    def forward(self, x: Array, feats: dict[str, Array], *, train: bool, mask: Array | None) -> Array:
        """The network on ``x`` ``[B, H, W, 3]``; see the class docstring."""
        if self.block == "basic":
            if (self.depth - 2) % 6:
                raise ValueError(
                    f"a basic-block CIFAR ResNet needs depth 6n+2 (20, 32, 56, ...), got {self.depth}."
                )
            n, block = (self.depth - 2) // 6, BasicBlock
        elif self.block == "bottleneck":
            if (self.depth - 2) % 9:
                raise ValueError(
                    f"a bottleneck CIFAR ResNet needs depth 9n+2 (29, 56, ...), got {self.depth}."
                )
            n, block = (self.depth - 2) // 9, Bottleneck
        else:
            raise ValueError(f"block must be 'basic' or 'bottleneck', got {self.block!r}.")
        if len(self.widths) != 4:
            raise ValueError(f"widths must be (stem, stage1, stage2, stage3), got {tuple(self.widths)}.")

        conv, bn = conv_bn(self)
        x = conv(self.widths[0], 3, padding=1, name="conv1")(x)
        x = nn.relu(bn(name="bn1")(x, train=train, mask=mask))
        feats["stage0"] = feats["stage0_preact"] = x
        x = resnet_stages(
            self,
            x,
            feats,
            block=block,
            planes=self.widths[1:],
            sizes=(n, n, n),
            strides=(1, 2, 2),
            shortcut_name="downsample",
            train=train,
            mask=mask,
        )
        feats["pooled"] = global_mean_pool(x)
        return classifier(self, feats["pooled"], name="fc")


# Named variants, called with num_classes=, dtype=, axis_name=.
resnet8 = functools.partial(CifarResNet, 8, (16, 16, 32, 64))
resnet14 = functools.partial(CifarResNet, 14, (16, 16, 32, 64))
resnet20 = functools.partial(CifarResNet, 20, (16, 16, 32, 64))
resnet32 = functools.partial(CifarResNet, 32, (16, 16, 32, 64))
resnet44 = functools.partial(CifarResNet, 44, (16, 16, 32, 64))
resnet56 = functools.partial(CifarResNet, 56, (16, 16, 32, 64))
resnet110 = functools.partial(CifarResNet, 110, (16, 16, 32, 64))
resnet8x4 = functools.partial(CifarResNet, 8, (32, 64, 128, 256))
resnet32x4 = functools.partial(CifarResNet, 32, (32, 64, 128, 256))
# A tiny model (a few thousand parameters) for fast tests of the trainer; works from 4x4 inputs up.
resnet_tiny = functools.partial(CifarResNet, 8, (4, 8, 8, 16))
