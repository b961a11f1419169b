"""The residual blocks and stages of every ResNet in the zoo (CIFAR ResNets, ResNet18/50, ImageNet ResNets).

Both blocks are post-activation (``relu(branch + shortcut)``) and return the sum before that ReLU
too, as the KD literature's ``preact`` features. Where the shape changes, the shortcut is a strided
1x1 convolution and a BatchNorm named ``{shortcut_name}_0`` / ``{shortcut_name}_1``, after the
PyTorch attribute of each reference family: ``downsample`` (mdistiller's CIFAR ``resnet.py`` and
torchvision's ImageNet ResNets) or ``shortcut`` (mdistiller's ``resnetv2.py``). Convolutions are
bias-free with the reference's kaiming-normal (fan_out) initialisation; BatchNorm scale 1, bias 0.
:func:`resnet_stages` builds a network's stages of such blocks.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from sld_jax.models.layers import ZooModule, conv_bn, zoo_fields

Array = jax.Array

__all__ = ["BasicBlock", "Bottleneck", "resnet_stages"]


def _add_shortcut(block, x, y, conv, bn, *, train, mask):
    """``(relu(y + shortcut(x)), y + shortcut(x))`` for ``block``; the projection is built in ``block``'s scope."""
    if block.downsample:
        x = conv(y.shape[-1], 1, stride=block.stride, name=f"{block.shortcut_name}_0")(x)
        x = bn(name=f"{block.shortcut_name}_1")(x, train=train, mask=mask)
    preact = y + x
    return nn.relu(preact), preact


class _ResidualBlock(ZooModule):
    """The fields shared by :class:`BasicBlock` and :class:`Bottleneck` (documented there)."""

    planes: int
    stride: int = 1
    downsample: bool = False
    shortcut_name: str = "downsample"


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
        conv, bn = conv_bn(self)
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
        conv, bn = conv_bn(self)
        out = self.planes * self.expansion
        y = conv(self.planes, 1, name="conv1")(x)
        y = nn.relu(bn(name="bn1")(y, train=train, mask=mask))
        y = conv(self.planes, 3, stride=self.stride, padding=1, name="conv2")(y)
        y = nn.relu(bn(name="bn2")(y, train=train, mask=mask))
        y = conv(out, 1, name="conv3")(y)
        y = bn(name="bn3")(y, train=train, mask=mask)
        return _add_shortcut(self, x, y, conv, bn, train=train, mask=mask)


def resnet_stages(
    module: ZooModule,
    x: Array,
    feats: dict[str, Array],
    *,
    block: type,
    planes: Sequence[int],
    sizes: Sequence[int],
    strides: Sequence[int],
    shortcut_name: str,
    train: bool,
    mask: Array | None,
) -> Array:
    """The residual stages of the ResNet ``module``, built in its scope.

    Stage ``s`` (from 1) is ``sizes[s - 1]`` blocks of type ``block``, named ``layer{s}_{i}``, with
    ``planes[s - 1]`` planes; its first block has stride ``strides[s - 1]`` and a projection shortcut (named
    ``{shortcut_name}_0`` / ``_1``) where the stride or the width changes. Sets ``feats["stage{s}"]`` and
    ``feats["stage{s}_preact"]`` (each stage's output after / before its last ReLU).

    Args:
      module: the network (its ``dtype``, ``axis_name`` and ``fast_kernel_grad`` go to the blocks).
      x: the stem output ``[B, H, W, C]``.
      feats: the network's features, updated in place.
      block: :class:`BasicBlock` or :class:`Bottleneck`.
      planes: planes of each stage.
      sizes: blocks per stage.
      strides: stride of each stage's first block.
      shortcut_name: PyTorch attribute of the projection shortcuts (``"downsample"`` or ``"shortcut"``).
      train: True for batch statistics, False for running ones.
      mask: optional ``[B]`` bool; False rows are left out of BatchNorm batch statistics.

    Returns:
      The last stage's output ``[B, H', W', planes[-1] * block.expansion]`` in the compute dtype.
    """
    cin = x.shape[-1]
    for s, (width, n, stride) in enumerate(zip(planes, sizes, strides), start=1):
        for i in range(n):
            st = stride if i == 0 else 1
            down = i == 0 and (st != 1 or cin != width * block.expansion)
            x, preact = block(width, st, down, shortcut_name, **zoo_fields(module), name=f"layer{s}_{i}")(
                x, train=train, mask=mask
            )
            cin = width * block.expansion
        feats[f"stage{s}"], feats[f"stage{s}_preact"] = x, preact
    return x
