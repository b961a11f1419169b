"""ResNet18 / ResNet50 for CIFAR (the KD literature's ``ResNet18``/``ResNet50``; mdistiller's ``resnetv2.py``).

The network is :class:`sld_jax.models.resnet.ResNet` with its CIFAR stem (``stem="cifar"``: a 3x3
stride-1 convolution of 64 channels, BN and ReLU, no max-pool), four stages of 64/128/256/512 planes
(strides 1, 2, 2, 2), post-activation basic or bottleneck blocks with a 1x1-conv + BN ``shortcut`` where
the shape changes, global average pool and a linear classifier named ``linear``.

Submodules follow the PyTorch names: ``conv1``, ``bn1``, ``layer{s}_{i}/{conv1,bn1,conv2,bn2[,conv3,bn3]}``,
``layer{s}_{i}/shortcut_0`` (conv), ``layer{s}_{i}/shortcut_1`` (BN), ``linear``. Initialisation as the
reference: convolutions kaiming-normal (fan_out, ReLU gain), BatchNorm 1 / 0, ``linear`` PyTorch's
``nn.Linear`` default (the reference's ``zero_init_residual`` is off).
"""

from __future__ import annotations

import functools

from sld_jax.models.resnet import ResNet
from sld_jax.models.resnet_blocks import BasicBlock, Bottleneck

__all__ = ["ResNet18", "ResNet34", "ResNet50"]

# Named variants (call with ``num_classes=`` (100 by default), ``dtype=``, ``axis_name=``).
_CIFAR = {"num_classes": 100, "stem": "cifar", "shortcut_name": "shortcut", "classifier_name": "linear"}
ResNet18 = functools.partial(ResNet, BasicBlock, (2, 2, 2, 2), **_CIFAR)
ResNet34 = functools.partial(ResNet, BasicBlock, (3, 4, 6, 3), **_CIFAR)
ResNet50 = functools.partial(ResNet, Bottleneck, (3, 4, 6, 3), **_CIFAR)
