"""Vanilla (cross-entropy only) vgg13 on CIFAR-100: trains a teacher or the baseline student.

Command: sld-train --config configs/cifar100/vanilla/vgg13.py --workdir teachers/cifar100/vgg13
"""

from sld_jax import configs_lib


def get_config():
    return configs_lib.cifar_config("vanilla", None, "vgg13")
