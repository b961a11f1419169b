"""SLD (swapped logit distillation) on CIFAR-100: wrn_40_2 teacher -> ShuffleV1 student.

Reference hyper-parameters (see sld_jax.configs_lib.cifar_config). The teacher is read from
teachers/cifar100/wrn_40_2 (a vanilla run's workdir or an sld-import-teacher output).

Command: sld-train --config configs/cifar100/sld/wrn_40_2_ShuffleV1.py --workdir workdirs/cifar100_sld_wrn_40_2_ShuffleV1
"""

from sld_jax import configs_lib


def get_config():
    return configs_lib.cifar_config("sld", "wrn_40_2", "ShuffleV1")
