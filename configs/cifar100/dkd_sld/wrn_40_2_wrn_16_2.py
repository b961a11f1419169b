"""DKD + SLD on CIFAR-100: wrn_40_2 teacher -> wrn_16_2 student.

Reference hyper-parameters (see sld_jax.configs_lib.cifar_config). The teacher is read from
teachers/cifar100/wrn_40_2 (a vanilla run's workdir or an sld-import-teacher output).

Command: sld-train --config configs/cifar100/dkd_sld/wrn_40_2_wrn_16_2.py --workdir workdirs/cifar100_dkd_sld_wrn_40_2_wrn_16_2
"""

from sld_jax import configs_lib


def get_config():
    return configs_lib.cifar_config("dkd+sld", "wrn_40_2", "wrn_16_2")
