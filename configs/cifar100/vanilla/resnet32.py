"""Vanilla (cross-entropy only) resnet32 on CIFAR-100: trains a teacher or the baseline student.

Command: sld-train --config configs/cifar100/vanilla/resnet32.py --workdir teachers/cifar100/resnet32
"""

from sld_jax import configs_lib


def get_config():
    return configs_lib.cifar_config("vanilla", None, "resnet32")
