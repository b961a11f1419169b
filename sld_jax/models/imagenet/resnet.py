"""ImageNet ResNet-18/34/50/101 with torchvision's layout and parameter names.

The network is :class:`sld_jax.models.resnet.ResNet` with its ImageNet stem (``stem="imagenet"``: 7x7/2
convolution, BN, ReLU, 3x3/2 max-pool), ``downsample`` projection shortcuts and an ``fc`` classifier, so
torchvision ``state_dict``\\ s load unchanged (see :mod:`sld_jax.models.torch_import`) and the
un-activated stage outputs are available as features.

Submodules are named after the PyTorch attribute paths (``conv1``, ``bn1``, ``layer1_0/conv1``,
``layer2_0/downsample_0``, ``layer2_0/downsample_1``, ``fc``). Initialisation as the reference:
convolutions kaiming-normal (fan_out, ReLU gain), BatchNorm scale 1 / bias 0, ``fc`` PyTorch's
default ``nn.Linear`` initialisation.
"""

from __future__ import annotations

import functools

from sld_jax.models.resnet import ResNet
from sld_jax.models.resnet_blocks import BasicBlock, Bottleneck

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet34", "resnet50", "resnet101"]

# Named variants (call with ``num_classes=``, ``dtype=``, ``axis_name=``). Parameters at 1000 classes and
# forward multiply-adds per 224x224 image (torchvision's figures):
# ResNet-18: 11,689,512 params, 1.81 G; ResNet-34: 21,797,672, 3.66 G; ResNet-50: 25,557,032, 4.09 G;
# ResNet-101: 44,549,160, 7.80 G.
resnet18 = functools.partial(ResNet, BasicBlock, (2, 2, 2, 2))
resnet34 = functools.partial(ResNet, BasicBlock, (3, 4, 6, 3))
resnet50 = functools.partial(ResNet, Bottleneck, (3, 4, 6, 3))
resnet101 = functools.partial(ResNet, Bottleneck, (3, 4, 23, 3))
