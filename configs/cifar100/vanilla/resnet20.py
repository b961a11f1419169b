"""Vanilla (cross-entropy only) resnet20 on CIFAR-100: trains a teacher or the baseline student.

Command: sld-train --config configs/cifar100/vanilla/resnet20.py --workdir teachers/cifar100/resnet20
"""

from sld_jax import configs_lib


def get_config():
    return configs_lib.cifar_config("vanilla", None, "resnet20")
