"""DKD (Zhao et al. 2022) on CIFAR-100: resnet110 teacher -> resnet32 student.

Reference hyper-parameters (see sld_jax.configs_lib.cifar_config). The teacher is read from
teachers/cifar100/resnet110 (a vanilla run's workdir or an sld-import-teacher output).

Command: sld-train --config configs/cifar100/dkd/resnet110_resnet32.py --workdir workdirs/cifar100_dkd_resnet110_resnet32
"""

from sld_jax import configs_lib


def get_config():
    return configs_lib.cifar_config("dkd", "resnet110", "resnet32")
