"""Vanilla (cross-entropy only) ResNet50 on CIFAR-100: trains a teacher or the baseline student.

Command: sld-train --config configs/cifar100/vanilla/ResNet50.py --workdir teachers/cifar100/ResNet50
"""

from sld_jax import configs_lib


def get_config():
    return configs_lib.cifar_config("vanilla", None, "ResNet50")
