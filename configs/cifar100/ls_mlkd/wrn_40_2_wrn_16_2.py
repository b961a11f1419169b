"""LS-MLKD (MLKD with logit standardisation) on CIFAR-100: wrn_40_2 teacher -> wrn_16_2 student.

Paper: MLKD / LS-MLKD / SLD table, wrn_40_2 -> wrn_16_2: 76.63 / 76.95 (this config) / 77.19.
Composition (configs_lib.ls_mlkd_config): configs/cifar100/mlkd (the reference's quirks, its LR,
epochs and CE 0.1) with Sun et al.'s settings: the instance-level KD terms on z-scored logits
(loss.mlkd.logit_standardization), temperatures (2, 3, 5, 2, 6) and KD weight 9 on the KD, batch-
and class-level terms. The teacher is read from teachers/cifar100/wrn_40_2.

Command: sld-train --config configs/cifar100/ls_mlkd/wrn_40_2_wrn_16_2.py --workdir workdirs/cifar100_ls_mlkd_wrn_40_2_wrn_16_2
"""

from sld_jax import configs_lib


def get_config():
    return configs_lib.ls_mlkd_config("wrn_40_2", "wrn_16_2")
