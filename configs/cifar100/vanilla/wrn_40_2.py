"""Vanilla (cross-entropy only) wrn_40_2 on CIFAR-100: trains a teacher or the baseline student.

Row: CIFAR-100, vanilla (cross-entropy only), wrn_40_2.
Paper top-1: not reported.
Time: not measured (the one measured run time is the H100 SLD step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, README "Performance").

Command: sld-train --config configs/cifar100/vanilla/wrn_40_2.py --workdir teachers/cifar100/wrn_40_2
Dry run (resnet_tiny, 16 examples, 2 steps): sld-train --config configs/cifar100/vanilla/wrn_40_2.py:runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(configs_lib.cifar_config("vanilla", None, "wrn_40_2"), arg)
