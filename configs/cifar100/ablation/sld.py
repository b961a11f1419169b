"""Ablation ladder, resnet32x4 -> resnet8x4 on CIFAR-100: full SLD (with γ scheduling).

Paper: ablation table, "full SLD (with γ scheduling)": 77.69. This rung: full SLD: the student swap
after γ = 150 (= configs/cifar100/sld/resnet32x4_resnet8x4.py). Everything else is the SLD recipe
(two views, CE 0.1 / KD 0.9, LR 0.025, 240 epochs); see configs_lib.ablation_config. The teacher is
read from teachers/cifar100/resnet32x4.

Command: sld-train --config configs/cifar100/ablation/sld.py --workdir workdirs/cifar100_ablation_sld
"""

from sld_jax import configs_lib


def get_config():
    return configs_lib.ablation_config("sld")
