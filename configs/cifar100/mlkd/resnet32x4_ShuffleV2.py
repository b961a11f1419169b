"""MLKD (Jin et al. 2023), the reference's multi-level alignment on CIFAR-100: resnet32x4 teacher -> ShuffleV2 student.

Reference hyper-parameters (see sld_jax.configs_lib.cifar_config). The teacher is read from
teachers/cifar100/resnet32x4 (a vanilla run's workdir or an sld-import-teacher output).

Command: sld-train --config configs/cifar100/mlkd/resnet32x4_ShuffleV2.py --workdir workdirs/cifar100_mlkd_resnet32x4_ShuffleV2
"""

from sld_jax import configs_lib


def get_config():
    return configs_lib.cifar_config("mlkd", "resnet32x4", "ShuffleV2")
