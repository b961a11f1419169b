"""ImageNet ResNet-18/34/50/101 with torchvision's layout and parameter names.

The definition is torchvision's network (mdistiller's ImageNet ResNet, which moves each block's final
ReLU to the start of the next block, computes the same logits), with the blocks of
:mod:`sld_jax.models.resnet_blocks`, so torchvision ``state_dict``\\ s load unchanged (see
:mod:`sld_jax.models.torch_import`) and the un-activated stage outputs are available as features.

Submodules are named after the PyTorch attribute paths (``conv1``, ``bn1``, ``layer1_0/conv1``,
``layer2_0/downsample_0``, ``layer2_0/downsample_1``, ``fc``). Initialisation as the reference:
convolutions kaiming-normal (fan_out, ReLU gain), BatchNorm scale 1 / bias 0, ``fc`` PyTorch's
default ``nn.Linear`` initialisation.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from sld_jax.models.layers import BatchNorm, Linear, check_images, conv2d, global_mean_pool
from sld_jax.models.resnet_blocks import BasicBlock, Bottleneck

Array = jax.Array

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet34", "resnet50", "resnet101"]


class ResNet(nn.Module):
    """ImageNet ResNet (torchvision layout): 7x7/2 stem, 3x3/2 max-pool, four stages, global mean, fc.

    Call ``(x, *, train, mask=None) -> (logits, features)``:

    * ``x``: ``[B, H, W, 3]`` float, normalised; 224x224 natively, any size >= 32 works (the final
      pool is a global mean, equal to the reference's ``AvgPool2d(7)`` at 224x224).
    * ``mask``: optional ``[B]`` bool; False rows are left out of BatchNorm batch statistics.
    * ``logits``: ``[B, num_classes]`` float32.
    * ``features``: ``pooled`` ``[B, 512 * expansion]``; ``stage0_preact`` (stem BN output, before
      ReLU and max-pool) and ``stage{1..4}_preact`` (each stage's output before its last block's
      ReLU), and ``stage{0..4}`` = their ReLUs, as in the reference's ``preact_feats`` and ``feats``. Features are in the compute dtype.

    Attributes:
      block: ``BasicBlock`` or ``Bottleneck``.
      stage_sizes: blocks per stage, e.g. ``(3, 4, 6, 3)``.
      num_classes: classifier outputs.
      dtype: compute dtype (parameters are float32).
      axis_name: mapped axis for cross-replica BatchNorm statistics, or None.
      fast_kernel_grad: compute the kernel gradients of ungrouped convolutions on CPU by matrix products
        (:func:`sld_jax.models.layers.conv_general_dilated`); False: XLA's native gradient.
    """

    block: type
    stage_sizes: Sequence[int]
    num_classes: int = 1000
    dtype: Any = jnp.float32
    axis_name: str | None = None
    fast_kernel_grad: bool = True

    @nn.compact
    def __call__(self, x: Array, *, train: bool, mask: Array | None = None) -> tuple[Array, dict[str, Array]]:
        """Forward pass; see the class docstring for shapes."""
        check_images(x, type(self).__name__)
        conv = functools.partial(conv2d, dtype=self.dtype, fast_kernel_grad=self.fast_kernel_grad)
        feats: dict[str, Array] = {}
        x = x.astype(self.dtype)
        x = conv(64, 7, stride=2, padding=3, name="conv1")(x)
        x = BatchNorm(dtype=self.dtype, axis_name=self.axis_name, name="bn1")(x, train=train, mask=mask)
        feats["stage0_preact"], feats["stage0"] = x, nn.relu(x)
        x = nn.max_pool(nn.relu(x), (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        cin = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), self.stage_sizes), start=1):
            stride = 1 if i == 1 else 2
            for j in range(n):
                s = stride if j == 0 else 1
                down = j == 0 and (s != 1 or cin != planes * self.block.expansion)
                x, preact = self.block(
                    planes,
                    s,
                    down,
                    dtype=self.dtype,
                    axis_name=self.axis_name,
                    fast_kernel_grad=self.fast_kernel_grad,
                    name=f"layer{i}_{j}",
                )(x, train=train, mask=mask)
                cin = planes * self.block.expansion
            feats[f"stage{i}_preact"], feats[f"stage{i}"] = preact, x
        pooled = global_mean_pool(x)
        feats["pooled"] = pooled
        logits = Linear(self.num_classes, dtype=self.dtype, name="fc")(pooled)
        return logits.astype(jnp.float32), feats


# Named variants (call with ``num_classes=``, ``dtype=``, ``axis_name=``). Parameters at 1000 classes and
# forward multiply-adds per 224x224 image (torchvision's figures):
# ResNet-18: 11,689,512 params, 1.81 G; ResNet-34: 21,797,672, 3.66 G; ResNet-50: 25,557,032, 4.09 G;
# ResNet-101: 44,549,160, 7.80 G.
resnet18 = functools.partial(ResNet, BasicBlock, (2, 2, 2, 2))
resnet34 = functools.partial(ResNet, BasicBlock, (3, 4, 6, 3))
resnet50 = functools.partial(ResNet, Bottleneck, (3, 4, 6, 3))
resnet101 = functools.partial(ResNet, Bottleneck, (3, 4, 23, 3))
