"""Wide ResNets for CIFAR (wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2; mdistiller's ``wrn.py``).

A 3x3 stem with 16 channels, three stages of ``n = (depth - 4) / 6`` pre-activation blocks
(BN-ReLU-conv-BN-ReLU-conv) of ``16k, 32k, 64k`` channels (strides 1, 2, 2), a final BN-ReLU, global
average pool and a linear classifier. A block whose width changes gets a 1x1 ``convShortcut`` applied
to the activated input.

Submodules follow the PyTorch names: ``conv1``, ``block{s}/layer_{i}/{bn1,conv1,bn2,conv2,convShortcut}``,
``bn1``, ``fc``. Initialisation as the reference: convolutions normal with std ``sqrt(2 / (k*k*out))``
(kaiming fan_out), BatchNorm 1 / 0, ``fc`` bias 0 and PyTorch's default weight.

The reference computes its pre-activation features by calling ``block2.layer[0].bn1``,
``block3.layer[0].bn1`` and the final ``bn1`` a second time in every forward pass; in train mode this
updates those three running statistics twice per step. ``preact_bn_twice=True`` (the default)
reproduces that, so trained running statistics match the reference.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax

from sld_jax.models.layers import ZooModel, ZooModule, classifier, conv_bn, global_mean_pool, zoo_fields

Array = jax.Array

__all__ = ["WideBasicBlock", "NetworkBlock", "WideResNet", "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2"]


class WideBasicBlock(ZooModule):
    """Pre-activation wide block; ``[B, H, W, in_planes]`` -> ``[B, H/stride, W/stride, out_planes]``.

    Returns ``(output, bn1(x))``; with ``bn1_twice`` the BatchNorm ``bn1`` is applied a second time to
    the input (as the reference's feature extraction does) and that second result is returned.
    """

    in_planes: int
    out_planes: int
    stride: int = 1
    bn1_twice: bool = False

    @nn.compact
    def __call__(self, x: Array, *, train: bool, mask: Array | None = None) -> tuple[Array, Array]:
        """Apply the block; returns ``(output, bn1 output)`` in ``dtype``."""
        conv, bn = conv_bn(self)
        bn1 = bn(name="bn1")
        normed = bn1(x, train=train, mask=mask)
        act = nn.relu(normed)
        y = conv(self.out_planes, 3, stride=self.stride, padding=1, name="conv1")(act)
        y = nn.relu(bn(name="bn2")(y, train=train, mask=mask))
        y = conv(self.out_planes, 3, padding=1, name="conv2")(y)
        if self.in_planes == self.out_planes:
            shortcut = x
        else:
            shortcut = conv(self.out_planes, 1, stride=self.stride, name="convShortcut")(act)
        if self.bn1_twice:
            normed = bn1(x, train=train, mask=mask)
        return shortcut + y, normed


class NetworkBlock(ZooModule):
    """A stage of ``n`` wide blocks named ``layer_{i}``; returns ``(output, bn1 output of layer_0)``."""

    n: int
    in_planes: int
    out_planes: int
    stride: int
    first_bn1_twice: bool = False

    @nn.compact
    def __call__(self, x: Array, *, train: bool, mask: Array | None = None) -> tuple[Array, Array]:
        """Apply the stage; ``x`` ``[B, H, W, in_planes]`` -> ``[B, H/stride, W/stride, out_planes]``."""
        first_normed = None
        for i in range(self.n):
            x, normed = WideBasicBlock(
                self.in_planes if i == 0 else self.out_planes,
                self.out_planes,
                self.stride if i == 0 else 1,
                bn1_twice=self.first_bn1_twice and i == 0,
                **zoo_fields(self),
                name=f"layer_{i}",
            )(x, train=train, mask=mask)
            if i == 0:
                first_normed = normed
        return x, first_normed


class WideResNet(ZooModel):
    """WRN-depth-k for CIFAR: stem, three pre-activation stages, BN-ReLU, global mean pool, ``fc``.

    Call ``(x, *, train, mask=None) -> (logits, features)``:

    * ``x``: ``[B, H, W, 3]`` float, normalised; 32x32 natively, any size >= 4 works (the pool is a
      global mean, equal to the reference's ``avg_pool2d(x, 8)`` at 32x32).
    * ``logits``: ``[B, num_classes]`` float32.
    * ``features`` (compute dtype): ``stage0`` (= ``stage0_preact``, the stem conv output),
      ``stage{1,2,3}`` (stage outputs), ``stage{1,2,3}_preact`` (the BatchNorm that follows each stage,
      before its ReLU, as the reference's ``preact_feats``) and ``pooled`` ``[B, 64k]``.

    Attributes:
      depth: ``6n + 4`` (16, 40, ...).
      widen_factor: ``k``.
      num_classes: classifier outputs.
      dtype: compute dtype (parameters are float32).
      axis_name: mapped axis for cross-replica BatchNorm statistics, or None.
      fast_kernel_grad: compute the kernel gradients of ungrouped convolutions on CPU by matrix products
        (:func:`sld_jax.models.layers.conv_general_dilated`); False: XLA's native gradient.
      preact_bn_twice: apply the three BatchNorms behind ``stage{1,2,3}_preact`` twice per forward, as
        the reference does (matters only for running statistics in train mode).
    """

    depth: int
    widen_factor: int
    num_classes: int = 100
    preact_bn_twice: bool = True

    def forward(self, x: Array, feats: dict[str, Array], *, train: bool, mask: Array | None) -> Array:
        """The network on ``x`` ``[B, H, W, 3]``; see the class docstring."""
        conv, bn = conv_bn(self)
        if (self.depth - 4) % 6:
            raise ValueError(f"a wide ResNet needs depth 6n+4 (16, 28, 40, ...), got {self.depth}.")
        n = (self.depth - 4) // 6
        k = self.widen_factor
        channels = (16, 16 * k, 32 * k, 64 * k)
        x = conv(channels[0], 3, padding=1, name="conv1")(x)
        feats["stage0"] = feats["stage0_preact"] = x
        stage_inputs_normed = []
        for s, stride in enumerate((1, 2, 2), start=1):
            x, normed = NetworkBlock(
                n,
                channels[s - 1],
                channels[s],
                stride,
                first_bn1_twice=self.preact_bn_twice and s > 1,
                **zoo_fields(self),
                name=f"block{s}",
            )(x, train=train, mask=mask)
            stage_inputs_normed.append(normed)
            feats[f"stage{s}"] = x
        bn1 = bn(name="bn1")
        normed = bn1(x, train=train, mask=mask)
        pooled = global_mean_pool(nn.relu(normed))
        if self.preact_bn_twice:
            normed = bn1(x, train=train, mask=mask)
        feats["stage1_preact"], feats["stage2_preact"] = stage_inputs_normed[1], stage_inputs_normed[2]
        feats["stage3_preact"] = normed
        feats["pooled"] = pooled
        return classifier(self, pooled, name="fc", zero_bias=True)


wrn_16_1 = functools.partial(WideResNet, 16, 1)
wrn_16_2 = functools.partial(WideResNet, 16, 2)
wrn_40_1 = functools.partial(WideResNet, 40, 1)
wrn_40_2 = functools.partial(WideResNet, 40, 2)
