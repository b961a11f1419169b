"""Vanilla (cross-entropy only) wrn_16_2 on CIFAR-100: trains a teacher or the baseline student.

Command: sld-train --config configs/cifar100/vanilla/wrn_16_2.py --workdir teachers/cifar100/wrn_16_2
"""

from sld_jax import configs_lib


def get_config():
    return configs_lib.cifar_config("vanilla", None, "wrn_16_2")
