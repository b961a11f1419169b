"""LS-MLKD + SLD on CIFAR-100: wrn_40_2 teacher -> wrn_16_2 student.

Paper: no LS-MLKD + SLD number for this pair (LS-MLKD alone: 76.95; SLD: 77.19). Composition
(configs_lib.ls_mlkd_config(..., sld=True)): LS-MLKD as configs/cifar100/ls_mlkd with the teacher
logits swapped first (every MLKD term and confidence mask sees the swapped teacher; z-scoring
commutes with the swap), plus MLKD + SLD's γ-gated pseudo-teacher term unchanged (raw student
logits, T = 1..6, weight 0.9, after epoch 150). The teacher is read from
teachers/cifar100/wrn_40_2.

Source: none for the composition; composed as LS-MLKD, logit-standardization-KD
logs/MLKD/mlkd,wrn_40_2,wrn_16_2,2,9.txt (the run behind LS-MLKD's 76.95: its name gives base
temperature 2 and KD weight 9 by the README.md naming rule
KD_TYPE,TEACHER,STUDENT,BASE_TEMPERATURE,KD_WEIGHT) and configs/cifar100/mlkd/wrn_40_2_wrn_16_2.yaml
over mdistiller/engine/cfg.py (batch 64, 480 epochs, LR 0.025, x0.1 after epochs 150/180/210, weight
decay 5e-4, momentum 0.9, CE 0.1; the log's epochs and LR agree), run as README.md's MLKD+Ours
command (--logit-stand --base-temp 2 --kd-weight 9) with mdistiller/distillers/MLKD.py (z-scored
logits in the instance-level KD terms only), plus SLD's parts from mdistiller/distillers/SLD.py (the
teacher swap; the pseudo-teacher term over T = 1..6 after γ = 150 with weight 0.9, KD.LOSS.KD_WEIGHT
of mdistiller/engine/cfg.py).

Row: CIFAR-100, LS-MLKD + SLD, wrn_40_2 -> wrn_16_2.
Paper top-1: not reported.
Time: not measured (the one measured run time is the H100 SLD step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, docs/performance.md).

Command: sld-train --config configs/cifar100/ls_mlkd_sld/wrn_40_2_wrn_16_2.py --workdir workdirs/cifar100_ls_mlkd_sld_wrn_40_2_wrn_16_2
Dry run (resnet_tiny student and teacher, 16 examples, 2 steps; the first command writes the
tiny teacher):
  sld-train --config configs/cifar100/vanilla/wrn_40_2.py:runlocal
  sld-train --config configs/cifar100/ls_mlkd_sld/wrn_40_2_wrn_16_2.py:runlocal --config.teacher.checkpoint=workdirs/cifar100_vanilla_wrn_40_2_runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(configs_lib.ls_mlkd_config("wrn_40_2", "wrn_16_2", sld=True), arg)
