"""ResNet18 / ResNet50 for CIFAR (the KD literature's ``ResNet18``/``ResNet50``; mdistiller's ``resnetv2.py``).

A 3x3 stride-1 stem (64 channels, no max-pool), four stages of 64/128/256/512 planes (strides 1, 2,
2, 2), post-activation basic or bottleneck blocks with a 1x1-conv + BN ``shortcut`` where the shape
changes, global average pool and a linear classifier named ``linear``.

Submodules follow the PyTorch names: ``conv1``, ``bn1``, ``layer{s}_{i}/{conv1,bn1,conv2,bn2[,conv3,bn3]}``,
``layer{s}_{i}/shortcut_0`` (conv), ``layer{s}_{i}/shortcut_1`` (BN), ``linear``. Initialisation as the
reference: convolutions kaiming-normal (fan_out, ReLU gain), BatchNorm 1 / 0, ``linear`` PyTorch's
``nn.Linear`` default (the reference's ``zero_init_residual`` is off).
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

__all__ = ["ResNetV2", "ResNet18", "ResNet34", "ResNet50"]


class ResNetV2(nn.Module):
    """CIFAR ResNet18/34/50: 3x3 stem, four stages (64..512 planes, strides 1, 2, 2, 2), mean pool, linear.

    Call ``(x, *, train, mask=None) -> (logits, features)``:

    * ``x``: ``[B, H, W, 3]`` float, normalised; 32x32 natively, any size >= 8 works (the pool is
      the reference's ``AdaptiveAvgPool2d(1)``).
    * ``logits``: ``[B, num_classes]`` float32.
    * ``features`` (compute dtype): ``stage0`` (= ``stage0_preact``, the stem after ReLU),
      ``stage{1..4}`` / ``stage{1..4}_preact`` and ``pooled`` ``[B, 512 * expansion]``.

    Attributes:
      block: :class:`~sld_jax.models.resnet_blocks.BasicBlock` or ``Bottleneck`` (with ``shortcut``
        projections, the reference's name).
      stage_sizes: blocks per stage, e.g. ``(3, 4, 6, 3)``.
      num_classes: classifier outputs.
      dtype: compute dtype (parameters are float32).
      axis_name: mapped axis for cross-replica BatchNorm statistics, or None.
      fast_kernel_grad: compute the kernel gradients of ungrouped convolutions on CPU by matrix products
        (:func:`sld_jax.models.layers.conv_general_dilated`); False: XLA's native gradient.
    """

    block: type
    stage_sizes: Sequence[int]
    num_classes: int = 100
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
        x = conv(64, 3, padding=1, name="conv1")(x)
        x = nn.relu(
            BatchNorm(dtype=self.dtype, axis_name=self.axis_name, name="bn1")(x, train=train, mask=mask)
        )
        feats["stage0"] = feats["stage0_preact"] = x
        cin = 64
        for s, (planes, n, stride) in enumerate(
            zip((64, 128, 256, 512), self.stage_sizes, (1, 2, 2, 2)), start=1
        ):
            for i in range(n):
                st = stride if i == 0 else 1
                project = st != 1 or cin != planes * self.block.expansion
                x, preact = self.block(
                    planes,
                    st,
                    project,
                    "shortcut",
                    dtype=self.dtype,
                    axis_name=self.axis_name,
                    fast_kernel_grad=self.fast_kernel_grad,
                    name=f"layer{s}_{i}",
                )(x, train=train, mask=mask)
                cin = planes * self.block.expansion
            feats[f"stage{s}"], feats[f"stage{s}_preact"] = x, preact
        pooled = global_mean_pool(x)
        feats["pooled"] = pooled
        logits = Linear(self.num_classes, dtype=self.dtype, name="linear")(pooled)
        return logits.astype(jnp.float32), feats


ResNet18 = functools.partial(ResNetV2, BasicBlock, (2, 2, 2, 2))
ResNet34 = functools.partial(ResNetV2, BasicBlock, (3, 4, 6, 3))
ResNet50 = functools.partial(ResNetV2, Bottleneck, (3, 4, 6, 3))
