"""KD (Hinton et al., as in mdistiller) on CIFAR-100: resnet32x4 teacher -> ShuffleV1 student.

Reference hyper-parameters (see sld_jax.configs_lib.cifar_config). The teacher is read from
teachers/cifar100/resnet32x4 (a vanilla run's workdir or an sld-import-teacher output).

Command: sld-train --config configs/cifar100/kd/resnet32x4_ShuffleV1.py --workdir workdirs/cifar100_kd_resnet32x4_ShuffleV1
"""

from sld_jax import configs_lib


def get_config():
    return configs_lib.cifar_config("kd", "resnet32x4", "ShuffleV1")
