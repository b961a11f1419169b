"""ImageNet model zoo: torchvision-layout ResNets, the reference's MobileNetV1, torchvision's MobileNetV2.

``IMAGENET_MODELS`` maps registry names to constructors called as
``ctor(num_classes=..., dtype=..., axis_name=...)``; the registry (:mod:`sld_jax.models`) merges it.
``IMAGENET_MODEL_INFO`` records, per name, the native input resolution, the trainable parameters at
1000 classes and the forward multiply-adds per 224x224 image (convolutions and linear layers, counted from the
definitions; torchvision quotes the same figures rounded: 1.81, 3.66, 4.09, 7.80 and 0.30 G).

Careful: the reference code's ImageNet "MobileNetV2" is MobileNetV1 (see
:mod:`sld_jax.models.imagenet.mobilenet`); here it is ``imagenet_mobilenet_v1``.

>>> sorted(IMAGENET_MODELS)[:2]
['imagenet_mobilenet_v1', 'imagenet_mobilenet_v2']
>>> IMAGENET_MODEL_INFO["imagenet_resnet50"]["params"]
25557032
"""

from __future__ import annotations

from typing import Any, Callable

from sld_jax.models.imagenet.mobilenet import InvertedResidual, MobileNetV1, MobileNetV2
from sld_jax.models.imagenet.resnet import (
    BasicBlock,
    Bottleneck,
    ResNet,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
)

__all__ = [
    "IMAGENET_MODELS",
    "IMAGENET_MODEL_INFO",
    "BasicBlock",
    "Bottleneck",
    "InvertedResidual",
    "MobileNetV1",
    "MobileNetV2",
    "ResNet",
]

IMAGENET_MODELS: dict[str, Callable[..., Any]] = {
    "imagenet_resnet18": resnet18,
    "imagenet_resnet34": resnet34,
    "imagenet_resnet50": resnet50,
    "imagenet_resnet101": resnet101,
    # The reference code's ImageNet "MobileNetV2" (the ResNet-50 -> "MobileNetV2" student) is this one.
    "imagenet_mobilenet_v1": MobileNetV1,
    "imagenet_mobilenet_v2": MobileNetV2,
}

IMAGENET_MODEL_INFO: dict[str, dict[str, Any]] = {
    "imagenet_resnet18": {"resolution": 224, "params": 11_689_512, "macs": 1_814_073_344},
    "imagenet_resnet34": {"resolution": 224, "params": 21_797_672, "macs": 3_663_761_408},
    "imagenet_resnet50": {"resolution": 224, "params": 25_557_032, "macs": 4_089_184_256},
    "imagenet_resnet101": {"resolution": 224, "params": 44_549_160, "macs": 7_801_405_440},
    "imagenet_mobilenet_v1": {"resolution": 224, "params": 4_231_976, "macs": 568_740_352},
    "imagenet_mobilenet_v2": {"resolution": 224, "params": 3_504_872, "macs": 300_774_272},
}
