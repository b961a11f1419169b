"""Vanilla (cross-entropy only) resnet110 on CIFAR-100: trains a teacher or the baseline student.

Command: sld-train --config configs/cifar100/vanilla/resnet110.py --workdir teachers/cifar100/resnet110
"""

from sld_jax import configs_lib


def get_config():
    return configs_lib.cifar_config("vanilla", None, "resnet110")
