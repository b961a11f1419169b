"""LS-MLKD (MLKD with logit standardisation) on CIFAR-100: ResNet50 teacher -> MobileNetV2 student.

Paper: MLKD / LS-MLKD / SLD table, ResNet50 -> MobileNetV2: 71.04 / 71.19 (this config) / 71.48.
Built by configs_lib.ls_mlkd_config: configs/cifar100/mlkd (the reference's quirks, its LR, epochs
and CE 0.1) with Sun et al.'s settings of the run named below: the instance-level KD terms on
z-scored logits (loss.mlkd.logit_standardization), temperatures (2, 3, 5, 2, 6) and KD weight 9 on
the KD, batch- and class-level terms. The teacher is read from teachers/cifar100/ResNet50.

Source: logit-standardization-KD logs/MLKD/mlkd,res50,mv2,2,9.txt (the run behind LS-MLKD's 71.19:
its name gives base temperature 2 and KD weight 9 by the README.md naming rule
KD_TYPE,TEACHER,STUDENT,BASE_TEMPERATURE,KD_WEIGHT) and
configs/cifar100/mlkd/ResNet50_MobileNetV2.yaml over mdistiller/engine/cfg.py (batch 64, 480 epochs,
LR 0.01, x0.1 after epochs 150/180/210, weight decay 5e-4, momentum 0.9, CE 0.1; the log's epochs
and LR agree), run as README.md's MLKD+Ours command (--logit-stand --base-temp 2 --kd-weight 9) with
mdistiller/distillers/MLKD.py (z-scored logits in the instance-level KD terms only).

Row: CIFAR-100, LS-MLKD, ResNet50 -> MobileNetV2.
Paper top-1: 71.19 % (the paper's MLKD / LS-MLKD / SLD table).
Time: not measured (the one measured run time is the H100 SLD step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, docs/performance.md).

Command: sld-train --config configs/cifar100/ls_mlkd/ResNet50_MobileNetV2.py --workdir workdirs/cifar100_ls_mlkd_ResNet50_MobileNetV2
Dry run (resnet_tiny student and teacher, 16 examples, 2 steps; the first command writes the
tiny teacher):
  sld-train --config configs/cifar100/vanilla/ResNet50.py:runlocal
  sld-train --config configs/cifar100/ls_mlkd/ResNet50_MobileNetV2.py:runlocal --config.teacher.checkpoint=workdirs/cifar100_vanilla_ResNet50_runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(configs_lib.ls_mlkd_config("ResNet50", "MobileNetV2"), arg)
