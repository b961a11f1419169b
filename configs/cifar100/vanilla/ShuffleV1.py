"""Vanilla (cross-entropy only) ShuffleV1 on CIFAR-100: trains a teacher or the baseline student.

Row: CIFAR-100, vanilla (cross-entropy only), ShuffleV1.
Paper top-1: not reported.
Time: not measured (the one measured run time is the H100 SLD step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, README "Performance").

Command: sld-train --config configs/cifar100/vanilla/ShuffleV1.py --workdir teachers/cifar100/ShuffleV1
Dry run (resnet_tiny, 16 examples, 2 steps): sld-train --config configs/cifar100/vanilla/ShuffleV1.py:runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(configs_lib.cifar_config("vanilla", None, "ShuffleV1"), arg)
