"""LS-MLKD + SLD on CIFAR-100: resnet32x4 teacher -> ShuffleV2 student.

Paper: no LS-MLKD + SLD number for this pair (LS-MLKD alone: 78.76; SLD: 78.82). Composition
(configs_lib.ls_mlkd_config(..., sld=True)): LS-MLKD as configs/cifar100/ls_mlkd with the teacher
logits swapped first (every MLKD term and confidence mask sees the swapped teacher; z-scoring
commutes with the swap), plus MLKD + SLD's γ-gated pseudo-teacher term unchanged (raw student
logits, T = 1..6, weight 0.9, after epoch 150). The teacher is read from
teachers/cifar100/resnet32x4.

Source: none for the composition; composed as LS-MLKD, logit-standardization-KD
logs/MLKD/mlkd,resnet32x4,ShuffleV2,2,6.txt (the run behind LS-MLKD's 78.76: its name gives base
temperature 2 and KD weight 6 by the README.md naming rule
KD_TYPE,TEACHER,STUDENT,BASE_TEMPERATURE,KD_WEIGHT) and
configs/cifar100/mlkd/resnet32x4_ShuffleV2.yaml over mdistiller/engine/cfg.py (batch 64, 960 epochs,
LR 0.01, x0.1 after epochs 150/180/210, weight decay 5e-4, momentum 0.9, CE 0.1; the log's epochs
and LR agree), run as README.md's MLKD+Ours command (--logit-stand --base-temp 2 --kd-weight 6) with
mdistiller/distillers/MLKD.py (z-scored logits in the instance-level KD terms only), plus SLD's
parts from mdistiller/distillers/SLD.py (the teacher swap; the pseudo-teacher term over T = 1..6
after γ = 150 with weight 0.9, KD.LOSS.KD_WEIGHT of mdistiller/engine/cfg.py).

Row: CIFAR-100, LS-MLKD + SLD, resnet32x4 -> ShuffleV2.
Paper top-1: not reported.
Time: not measured (the one measured run time is the H100 SLD step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, docs/performance.md).

Command: sld-train --config configs/cifar100/ls_mlkd_sld/resnet32x4_ShuffleV2.py --workdir workdirs/cifar100_ls_mlkd_sld_resnet32x4_ShuffleV2
Dry run (resnet_tiny student and teacher, 16 examples, 2 steps; the first command writes the
tiny teacher):
  sld-train --config configs/cifar100/vanilla/resnet32x4.py:runlocal
  sld-train --config configs/cifar100/ls_mlkd_sld/resnet32x4_ShuffleV2.py:runlocal --config.teacher.checkpoint=workdirs/cifar100_vanilla_resnet32x4_runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(configs_lib.ls_mlkd_config("resnet32x4", "ShuffleV2", sld=True), arg)
