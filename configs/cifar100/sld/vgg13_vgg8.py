"""SLD (swapped logit distillation) on CIFAR-100: vgg13 teacher -> vgg8 student.

Reference hyper-parameters (see sld_jax.configs_lib.cifar_config). The teacher is read from
teachers/cifar100/vgg13 (a vanilla run's workdir or an sld-import-teacher output).

Command: sld-train --config configs/cifar100/sld/vgg13_vgg8.py --workdir workdirs/cifar100_sld_vgg13_vgg8
"""

from sld_jax import configs_lib


def get_config():
    return configs_lib.cifar_config("sld", "vgg13", "vgg8")
