"""Vanilla (cross-entropy only) MobileNetV2 on CIFAR-100: trains a teacher or the baseline student.

Command: sld-train --config configs/cifar100/vanilla/MobileNetV2.py --workdir teachers/cifar100/MobileNetV2
"""

from sld_jax import configs_lib


def get_config():
    return configs_lib.cifar_config("vanilla", None, "MobileNetV2")
