"""CIFAR model zoo of the knowledge-distillation literature (32x32 inputs; mdistiller's definitions).

``CIFAR_MODELS`` maps registry names to constructors called as
``ctor(num_classes=..., dtype=..., axis_name=...)``; the registry (:mod:`sld_jax.models`) merges it.
``CIFAR_MODEL_INFO`` records, per name, the native input ``resolution`` (32), the trainable ``params``
at 100 classes (BatchNorm scale/bias included, running statistics excluded) and the forward ``macs``
(multiply-adds of the convolutions and linear layers) per 32x32 image.

>>> CIFAR_MODEL_INFO["resnet32x4"]["params"]
7433860
"""

from __future__ import annotations

from typing import Any, Callable

from sld_jax.models.cifar.mobilenetv2 import InvertedResidual, MobileNetV2Cifar, mobilenetv2_half
from sld_jax.models.cifar.resnet import (
    CifarResNet,
    resnet8,
    resnet8x4,
    resnet14,
    resnet20,
    resnet32,
    resnet32x4,
    resnet44,
    resnet56,
    resnet110,
    resnet_tiny,
)
from sld_jax.models.cifar.resnetv2 import ResNet18, ResNet50
from sld_jax.models.cifar.shufflenetv1 import ShuffleNetV1, channel_shuffle, shufflenet_v1
from sld_jax.models.cifar.shufflenetv2 import ShuffleNetV2, shufflenet_v2
from sld_jax.models.cifar.vgg import VGG, VGG_CONFIGS, vgg8, vgg11, vgg13, vgg16, vgg19
from sld_jax.models.cifar.wrn import WideResNet, wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2
from sld_jax.models.resnet import ResNet

__all__ = [
    "CIFAR_MODELS",
    "CIFAR_MODEL_INFO",
    "CifarResNet",
    "InvertedResidual",
    "MobileNetV2Cifar",
    "ResNet",
    "ShuffleNetV1",
    "ShuffleNetV2",
    "VGG",
    "VGG_CONFIGS",
    "WideResNet",
    "channel_shuffle",
]

CIFAR_MODELS: dict[str, Callable[..., Any]] = {
    "resnet8": resnet8,
    "resnet14": resnet14,
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet44": resnet44,
    "resnet56": resnet56,
    "resnet110": resnet110,
    "resnet8x4": resnet8x4,
    "resnet32x4": resnet32x4,
    "ResNet18": ResNet18,
    "ResNet50": ResNet50,
    "wrn_16_1": wrn_16_1,
    "wrn_16_2": wrn_16_2,
    "wrn_40_1": wrn_40_1,
    "wrn_40_2": wrn_40_2,
    "vgg8": vgg8,
    "vgg11": vgg11,
    "vgg13": vgg13,
    "vgg16": vgg16,
    "vgg19": vgg19,
    # The KD literature's CIFAR "MobileNetV2" is the half-width variant (mdistiller's mobile_half).
    "MobileNetV2": mobilenetv2_half,
    "ShuffleV1": shufflenet_v1,
    "ShuffleV2": shufflenet_v2,
    # A tiny ResNet (6,174 parameters at 10 classes) for fast tests of the trainer; 4x4 .. 32x32 inputs.
    "resnet_tiny": resnet_tiny,
}

# Trainable parameters at 100 classes and forward multiply-adds per 32x32 image (convolutions and
# linear layers), as counted by sld_jax.models.count_params / count_macs (checked by the tests).
CIFAR_MODEL_INFO: dict[str, dict[str, Any]] = {
    "resnet8": {"resolution": 32, "params": 83_892, "macs": 12_507_392},
    "resnet14": {"resolution": 32, "params": 181_108, "macs": 26_663_168},
    "resnet20": {"resolution": 32, "params": 278_324, "macs": 40_818_944},
    "resnet32": {"resolution": 32, "params": 472_756, "macs": 69_130_496},
    "resnet44": {"resolution": 32, "params": 667_188, "macs": 97_442_048},
    "resnet56": {"resolution": 32, "params": 861_620, "macs": 125_753_600},
    "resnet110": {"resolution": 32, "params": 1_736_564, "macs": 253_155_584},
    "resnet8x4": {"resolution": 32, "params": 1_233_540, "macs": 177_071_104},
    "resnet32x4": {"resolution": 32, "params": 7_433_860, "macs": 1_083_040_768},
    "ResNet18": {"resolution": 32, "params": 11_220_132, "macs": 555_468_800},
    "ResNet50": {"resolution": 32, "params": 23_705_252, "macs": 1_298_014_208},
    "wrn_16_1": {"resolution": 32, "params": 180_916, "macs": 26_663_168},
    "wrn_16_2": {"resolution": 32, "params": 703_284, "macs": 101_118_464},
    "wrn_40_1": {"resolution": 32, "params": 569_780, "macs": 83_286_272},
    "wrn_40_2": {"resolution": 32, "params": 2_255_156, "macs": 327_610_880},
    "vgg8": {"resolution": 32, "params": 3_965_028, "macs": 96_192_512},
    "vgg11": {"resolution": 32, "params": 9_277_284, "macs": 209_438_720},
    "vgg13": {"resolution": 32, "params": 9_462_180, "macs": 284_936_192},
    "vgg16": {"resolution": 32, "params": 14_774_436, "macs": 398_182_400},
    "vgg19": {"resolution": 32, "params": 20_086_692, "macs": 511_428_608},
    "MobileNetV2": {"resolution": 32, "params": 812_836, "macs": 6_523_648},
    "ShuffleV1": {"resolution": 32, "params": 949_258, "macs": 38_691_456},
    "ShuffleV2": {"resolution": 32, "params": 1_355_528, "macs": 44_504_448},
    "resnet_tiny": {"resolution": 32, "params": 7_704, "macs": 1_570_368},
}
