"""DKD + SLD on CIFAR-100: vgg13 teacher -> MobileNetV2 student.

Reference hyper-parameters (see sld_jax.configs_lib.cifar_config). The teacher is read from
teachers/cifar100/vgg13 (a vanilla run's workdir or an sld-import-teacher output).

Command: sld-train --config configs/cifar100/dkd_sld/vgg13_MobileNetV2.py --workdir workdirs/cifar100_dkd_sld_vgg13_MobileNetV2
"""

from sld_jax import configs_lib


def get_config():
    return configs_lib.cifar_config("dkd+sld", "vgg13", "MobileNetV2")
