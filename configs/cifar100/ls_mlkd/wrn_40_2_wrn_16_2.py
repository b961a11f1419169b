"""LS-MLKD (MLKD with logit standardisation) on CIFAR-100: wrn_40_2 teacher -> wrn_16_2 student.

Paper: MLKD / LS-MLKD / SLD table, wrn_40_2 -> wrn_16_2: 76.63 / 76.95 (this config) / 77.19.
Composition (configs_lib.ls_mlkd_config): configs/cifar100/mlkd (the reference's quirks, its LR,
epochs and CE 0.1) with Sun et al.'s settings: the instance-level KD terms on z-scored logits
(loss.mlkd.logit_standardization), temperatures (2, 3, 5, 2, 6) and KD weight 9 on the KD, batch-
and class-level terms. The teacher is read from teachers/cifar100/wrn_40_2.

Row: CIFAR-100, LS-MLKD, wrn_40_2 -> wrn_16_2.
Paper top-1: 76.95 % (the paper's MLKD / LS-MLKD / SLD table).
Time: not measured (the one measured run time is the H100 SLD step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, README "Performance").

Command: sld-train --config configs/cifar100/ls_mlkd/wrn_40_2_wrn_16_2.py --workdir workdirs/cifar100_ls_mlkd_wrn_40_2_wrn_16_2
Dry run (resnet_tiny student and teacher, 16 examples, 2 steps; the first command writes the
tiny teacher):
  sld-train --config configs/cifar100/vanilla/wrn_40_2.py:runlocal
  sld-train --config configs/cifar100/ls_mlkd/wrn_40_2_wrn_16_2.py:runlocal --config.teacher.checkpoint=workdirs/cifar100_vanilla_wrn_40_2_runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(configs_lib.ls_mlkd_config("wrn_40_2", "wrn_16_2"), arg)
