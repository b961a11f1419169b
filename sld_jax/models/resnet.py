"""The four-stage ResNet of both zoos: torchvision's ImageNet ResNets and the CIFAR ResNet18/34/50.

One network, two reference layouts that differ in the stem and in two submodule names:

* ``stem="imagenet"`` (torchvision's ResNet-18/34/50/101, :mod:`sld_jax.models.imagenet.resnet`): a
  7x7/2 convolution, BN, ReLU and a 3x3/2 max-pool; projection shortcuts ``downsample``, classifier ``fc``.
  (mdistiller's ImageNet ResNet, which moves each block's final ReLU to the start of the next block,
  computes the same logits.)
* ``stem="cifar"`` (mdistiller's ``resnetv2.py``, the KD literature's CIFAR ``ResNet18``/``ResNet50``,
  :mod:`sld_jax.models.cifar.resnetv2`): a 3x3 stride-1 convolution, BN and ReLU, no max-pool;
  projection shortcuts ``shortcut``, classifier ``linear``.

Then four stages of 64/128/256/512 planes (strides 1, 2, 2, 2) of post-activation basic or bottleneck
blocks (:mod:`sld_jax.models.resnet_blocks`) with a 1x1-conv + BN projection shortcut where the shape
changes, a global average pool and a linear classifier.

Submodules follow the PyTorch names: ``conv1``, ``bn1``, ``layer{s}_{i}/{conv1,bn1,conv2,bn2[,conv3,bn3]}``,
``layer{s}_{i}/{shortcut_name}_0`` (conv), ``layer{s}_{i}/{shortcut_name}_1`` (BN) and the classifier,
so the reference ``state_dict``\\ s load unchanged (see :mod:`sld_jax.models.torch_import`).
Initialisation as the references: convolutions kaiming-normal (fan_out, ReLU gain), BatchNorm scale 1 /
bias 0, the classifier PyTorch's default ``nn.Linear`` initialisation (``zero_init_residual`` is off).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from sld_jax.models.layers import ZooModel, classifier, conv_bn, global_mean_pool
from sld_jax.models.resnet_blocks import resnet_stages

Array = jax.Array

__all__ = ["ResNet"]


class ResNet(ZooModel):
    """ResNet: stem, four stages (64..512 planes, strides 1, 2, 2, 2), global mean pool, linear classifier.

    Call ``(x, *, train, mask=None) -> (logits, features)``:

    * ``x``: ``[B, H, W, 3]`` float, normalised; natively 224x224 (``stem="imagenet"``, any size >= 32
      works; the final pool is a global mean, equal to the reference's ``AvgPool2d(7)`` at 224x224) or
      32x32 (``stem="cifar"``, any size >= 8 works; the reference's ``AdaptiveAvgPool2d(1)``).
    * ``mask``: optional ``[B]`` bool; False rows are left out of BatchNorm batch statistics.
    * ``logits``: ``[B, num_classes]`` float32.
    * ``features`` (compute dtype): ``pooled`` ``[B, 512 * expansion]``; ``stage{1..4}_preact`` (each
      stage's output before its last block's ReLU) and ``stage{1..4}`` (after it); ``stage0`` the stem
      after its ReLU (before the max-pool) and ``stage0_preact`` the stem BN output before the ReLU
      (``stem="imagenet"``) or ``stage0`` itself (``stem="cifar"``), as the references' ``preact_feats``
      and ``feats``.

    Attributes:
      block: :class:`~sld_jax.models.resnet_blocks.BasicBlock` or ``Bottleneck``.
      stage_sizes: blocks per stage, e.g. ``(3, 4, 6, 3)``.
      num_classes: classifier outputs.
      stem: ``"imagenet"`` (7x7/2 conv, BN, ReLU, 3x3/2 max-pool) or ``"cifar"`` (3x3 conv, BN, ReLU).
      shortcut_name: PyTorch attribute of the projection shortcuts (``"downsample"`` or ``"shortcut"``).
      classifier_name: PyTorch attribute of the classifier (``"fc"`` or ``"linear"``).
      dtype: compute dtype (parameters are float32).
      axis_name: mapped axis for cross-replica BatchNorm statistics, or None.
      fast_kernel_grad: compute the kernel gradients of ungrouped convolutions on CPU by matrix products
        (:func:`sld_jax.models.layers.conv_general_dilated`); False: XLA's native gradient.
    """

    block: type
    stage_sizes: Sequence[int]
    num_classes: int = 1000
    stem: str = "imagenet"
    shortcut_name: str = "downsample"
    classifier_name: str = "fc"

    def forward(self, x: Array, feats: dict[str, Array], *, train: bool, mask: Array | None) -> Array:
        """The network on ``x`` ``[B, H, W, 3]``; see the class docstring."""
        conv, bn = conv_bn(self)
        if self.stem == "imagenet":
            x = conv(64, 7, stride=2, padding=3, name="conv1")(x)
            preact = bn(name="bn1")(x, train=train, mask=mask)
            x = nn.relu(preact)
            feats["stage0_preact"], feats["stage0"] = preact, x
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        elif self.stem == "cifar":
            x = conv(64, 3, padding=1, name="conv1")(x)
            x = nn.relu(bn(name="bn1")(x, train=train, mask=mask))
            feats["stage0"] = feats["stage0_preact"] = x
        else:
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {self.stem!r}.")
        x = resnet_stages(
            self,
            x,
            feats,
            block=self.block,
            planes=(64, 128, 256, 512),
            sizes=self.stage_sizes,
            strides=(1, 2, 2, 2),
            shortcut_name=self.shortcut_name,
            train=train,
            mask=mask,
        )
        feats["pooled"] = global_mean_pool(x)
        return classifier(self, feats["pooled"], name=self.classifier_name)
