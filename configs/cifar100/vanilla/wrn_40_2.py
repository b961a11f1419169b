"""Vanilla (cross-entropy only) wrn_40_2 on CIFAR-100: trains a teacher or the baseline student.

Command: sld-train --config configs/cifar100/vanilla/wrn_40_2.py --workdir teachers/cifar100/wrn_40_2
"""

from sld_jax import configs_lib


def get_config():
    return configs_lib.cifar_config("vanilla", None, "wrn_40_2")
