"""The residual blocks of every ResNet in the zoo (CIFAR ResNets, CIFAR ResNet18/50, ImageNet ResNets).

Both blocks are post-activation (``relu(branch + shortcut)``) and return the sum before that ReLU
too, as the KD literature's ``preact`` features. Where the shape changes, the shortcut is a strided
1x1 convolution and a BatchNorm named ``{shortcut_name}_0`` / ``{shortcut_name}_1``, after the
PyTorch attribute of each reference family: ``downsample`` (mdistiller's CIFAR ``resnet.py`` and
torchvision's ImageNet ResNets) or ``shortcut`` (mdistiller's ``resnetv2.py``). Convolutions are
bias-free with the reference's kaiming-normal (fan_out) initialisation; BatchNorm scale 1, bias 0.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sld_jax.models.layers import BatchNorm, conv2d

Array = jax.Array

__all__ = ["BasicBlock", "Bottleneck"]


def _add_shortcut(block, x, y, conv, bn, *, train, mask):
    """``(relu(y + shortcut(x)), y + shortcut(x))`` for ``block``; the projection is built in ``block``'s scope."""
    if block.downsample:
        x = conv(y.shape[-1], 1, stride=block.stride, name=f"{block.shortcut_name}_0")(x)
        x = bn(name=f"{block.shortcut_name}_1")(x, train=train, mask=mask)
    preact = y + x
    return nn.relu(preact), preact


class _ResidualBlock(nn.Module):
    """The fields shared by :class:`BasicBlock` and :class:`Bottleneck` (documented there)."""

    planes: int
    stride: int = 1
    downsample: bool = False
    shortcut_name: str = "downsample"
    dtype: Any = jnp.float32
    axis_name: str | None = None
    fast_kernel_grad: bool = True


class BasicBlock(_ResidualBlock):
    """Two 3x3 convolutions with a residual; ``[B, H, W, C_in]`` -> ``[B, H/stride, W/stride, planes]``.

    Returns ``(relu(branch + shortcut), branch + shortcut)`` (output and pre-activation), in ``dtype``.

    Attributes:
      planes: output channels.
      stride: stride of the first convolution and of the projection shortcut.
      downsample: whether the shortcut is a 1x1 convolution + BatchNorm (else the identity).
      shortcut_name: PyTorch attribute of the projection shortcut (``"downsample"`` or ``"shortcut"``).
      dtype: compute dtype (parameters are float32).
      axis_name: mapped axis for cross-replica BatchNorm statistics, or None.
      fast_kernel_grad: see :func:`sld_jax.models.layers.conv2d`.
    """

    expansion = 1

    @nn.compact
    def __call__(self, x: Array, *, train: bool, mask: Array | None = None) -> tuple[Array, Array]:
        """Apply the block; returns ``(output, preact)``, both ``[B, H', W', planes]``."""
        conv = functools.partial(conv2d, dtype=self.dtype, fast_kernel_grad=self.fast_kernel_grad)
        bn = functools.partial(BatchNorm, dtype=self.dtype, axis_name=self.axis_name)
        y = conv(self.planes, 3, stride=self.stride, padding=1, name="conv1")(x)
        y = nn.relu(bn(name="bn1")(y, train=train, mask=mask))
        y = conv(self.planes, 3, padding=1, name="conv2")(y)
        y = bn(name="bn2")(y, train=train, mask=mask)
        return _add_shortcut(self, x, y, conv, bn, train=train, mask=mask)


class Bottleneck(_ResidualBlock):
    """1x1 -> 3x3 (strided) -> 1x1 bottleneck; ``[B, H, W, C_in]`` -> ``[B, H/stride, W/stride, 4 planes]``.

    Returns ``(relu(branch + shortcut), branch + shortcut)``, in ``dtype``. Attributes as
    :class:`BasicBlock` (``planes`` is the width of the inner convolutions; the output has
    ``expansion * planes`` channels).
    """

    expansion = 4

    @nn.compact
    def __call__(self, x: Array, *, train: bool, mask: Array | None = None) -> tuple[Array, Array]:
        """Apply the block; returns ``(output, preact)``, both ``[B, H', W', 4 * planes]``."""
        conv = functools.partial(conv2d, dtype=self.dtype, fast_kernel_grad=self.fast_kernel_grad)
        bn = functools.partial(BatchNorm, dtype=self.dtype, axis_name=self.axis_name)
        out = self.planes * self.expansion
        y = conv(self.planes, 1, name="conv1")(x)
        y = nn.relu(bn(name="bn1")(y, train=train, mask=mask))
        y = conv(self.planes, 3, stride=self.stride, padding=1, name="conv2")(y)
        y = nn.relu(bn(name="bn2")(y, train=train, mask=mask))
        y = conv(out, 1, name="conv3")(y)
        y = bn(name="bn3")(y, train=train, mask=mask)
        return _add_shortcut(self, x, y, conv, bn, train=train, mask=mask)
