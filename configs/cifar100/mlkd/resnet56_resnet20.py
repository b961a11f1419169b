"""MLKD (Jin et al. 2023), the reference's multi-level alignment on CIFAR-100: resnet56 teacher -> resnet20 student.

Reference hyper-parameters (see sld_jax.configs_lib.cifar_config). The teacher is read from
teachers/cifar100/resnet56 (a vanilla run's workdir or an sld-import-teacher output).

Command: sld-train --config configs/cifar100/mlkd/resnet56_resnet20.py --workdir workdirs/cifar100_mlkd_resnet56_resnet20
"""

from sld_jax import configs_lib


def get_config():
    return configs_lib.cifar_config("mlkd", "resnet56", "resnet20")
