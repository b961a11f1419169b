"""Vanilla (cross-entropy only) resnet8x4 on CIFAR-100: trains a teacher or the baseline student.

Command: sld-train --config configs/cifar100/vanilla/resnet8x4.py --workdir teachers/cifar100/resnet8x4
"""

from sld_jax import configs_lib


def get_config():
    return configs_lib.cifar_config("vanilla", None, "resnet8x4")
