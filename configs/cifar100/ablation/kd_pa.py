"""Ablation ladder, resnet32x4 -> resnet8x4 on CIFAR-100: KD + prediction augmentation.

Paper: ablation table, "KD + prediction augmentation": 73.33. This rung: KD over T = 1..6 on both
views, no swap (teacher_transform none, γ = num_epochs). Everything else is the SLD recipe (two
views, CE 0.1 / KD 0.9, LR 0.025, 240 epochs); see configs_lib.ablation_config. The teacher is read
from teachers/cifar100/resnet32x4.

Command: sld-train --config configs/cifar100/ablation/kd_pa.py --workdir workdirs/cifar100_ablation_kd_pa
"""

from sld_jax import configs_lib


def get_config():
    return configs_lib.ablation_config("kd_pa")
