"""Ablation ladder, resnet32x4 -> resnet8x4 on CIFAR-100: + student swap.

Paper: ablation table, "+ student swap": 75.87. This rung: both swaps from the first epoch (γ = 0).
Everything else is the SLD recipe (two views, CE 0.1 / KD 0.9, LR 0.025, 240 epochs); see
configs_lib.ablation_config. The teacher is read from teachers/cifar100/resnet32x4.

Command: sld-train --config configs/cifar100/ablation/kd_pa_lts_lss_nogamma.py --workdir workdirs/cifar100_ablation_kd_pa_lts_lss_nogamma
"""

from sld_jax import configs_lib


def get_config():
    return configs_lib.ablation_config("kd_pa_lts_lss_nogamma")
