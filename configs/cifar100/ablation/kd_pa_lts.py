"""Ablation ladder, resnet32x4 -> resnet8x4 on CIFAR-100: + teacher swap.

Paper: ablation table, "+ teacher swap": 75.15. This rung: the teacher swap only (teacher_transform
swap, γ = num_epochs: no student swap). Everything else is the SLD recipe (two views, CE 0.1 / KD
0.9, LR 0.025, 240 epochs); see configs_lib.ablation_config. The teacher is read from
teachers/cifar100/resnet32x4.

Command: sld-train --config configs/cifar100/ablation/kd_pa_lts.py --workdir workdirs/cifar100_ablation_kd_pa_lts
"""

from sld_jax import configs_lib


def get_config():
    return configs_lib.ablation_config("kd_pa_lts")
