"""LS-MLKD + SLD on CIFAR-100: wrn_40_2 teacher -> wrn_16_2 student.

Paper: no LS-MLKD + SLD number for this pair (LS-MLKD alone: 76.95; SLD: 77.19). Composition
(configs_lib.ls_mlkd_config(..., sld=True)): LS-MLKD as configs/cifar100/ls_mlkd with the teacher
logits swapped first (every MLKD term and confidence mask sees the swapped teacher; z-scoring
commutes with the swap), plus MLKD + SLD's γ-gated pseudo-teacher term unchanged (raw student
logits, T = 1..6, weight 0.9, after epoch 150). The teacher is read from
teachers/cifar100/wrn_40_2.

Row: CIFAR-100, LS-MLKD + SLD, wrn_40_2 -> wrn_16_2.
Paper top-1: not reported.
Time: not measured (the one measured run time is the H100 SLD step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, README "Performance").

Command: sld-train --config configs/cifar100/ls_mlkd_sld/wrn_40_2_wrn_16_2.py --workdir workdirs/cifar100_ls_mlkd_sld_wrn_40_2_wrn_16_2
Dry run (resnet_tiny student and teacher, 16 examples, 2 steps; the first command writes the
tiny teacher):
  sld-train --config configs/cifar100/vanilla/wrn_40_2.py:runlocal
  sld-train --config configs/cifar100/ls_mlkd_sld/wrn_40_2_wrn_16_2.py:runlocal --config.teacher.checkpoint=workdirs/cifar100_vanilla_wrn_40_2_runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(configs_lib.ls_mlkd_config("wrn_40_2", "wrn_16_2", sld=True), arg)
