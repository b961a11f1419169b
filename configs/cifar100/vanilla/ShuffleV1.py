"""Vanilla (cross-entropy only) ShuffleV1 on CIFAR-100: trains a teacher or the baseline student.

Command: sld-train --config configs/cifar100/vanilla/ShuffleV1.py --workdir teachers/cifar100/ShuffleV1
"""

from sld_jax import configs_lib


def get_config():
    return configs_lib.cifar_config("vanilla", None, "ShuffleV1")
