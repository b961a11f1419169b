"""The sizes of the architectures that have PyTorch twins, and whether torch is installed.

Shared by :mod:`sld_jax.models.torch_twins` (which imports torch) and the benchmarks that decide
whether they can compare with PyTorch at all (which must not import it to find out).
"""

from __future__ import annotations

import importlib.util

# name -> (depth, (stem, stage1, stage2, stage3) widths) of the CIFAR ResNets (mdistiller's resnet.py)
CIFAR_RESNETS: dict[str, tuple[int, tuple[int, int, int, int]]] = {
    "resnet8": (8, (16, 16, 32, 64)),
    "resnet14": (14, (16, 16, 32, 64)),
    "resnet20": (20, (16, 16, 32, 64)),
    "resnet32": (32, (16, 16, 32, 64)),
    "resnet44": (44, (16, 16, 32, 64)),
    "resnet56": (56, (16, 16, 32, 64)),
    "resnet110": (110, (16, 16, 32, 64)),
    "resnet8x4": (8, (32, 64, 128, 256)),
    "resnet32x4": (32, (32, 64, 128, 256)),
}

# mdistiller's vgg*_bn configurations (channels of the convolutions of each of the five blocks)
VGG_CFG = {
    "vgg8": [[64], [128], [256], [512], [512]],
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "vgg16": [[64, 64], [128, 128], [256] * 3, [512] * 3, [512] * 3],
    "vgg19": [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],
}


def torch_available() -> bool:
    """Whether ``import torch`` works (without importing it when it does not)."""
    return importlib.util.find_spec("torch") is not None
