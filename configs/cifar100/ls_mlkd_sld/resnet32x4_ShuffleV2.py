"""LS-MLKD + SLD on CIFAR-100: resnet32x4 teacher -> ShuffleV2 student.

Paper: no LS-MLKD + SLD number for this pair (LS-MLKD alone: 78.76; SLD: 78.82). Composition
(configs_lib.ls_mlkd_config(..., sld=True)): LS-MLKD as configs/cifar100/ls_mlkd with the teacher
logits swapped first (every MLKD term and confidence mask sees the swapped teacher; z-scoring
commutes with the swap), plus MLKD + SLD's γ-gated pseudo-teacher term unchanged (raw student
logits, T = 1..6, weight 0.9, after epoch 150). The teacher is read from
teachers/cifar100/resnet32x4.

Row: CIFAR-100, LS-MLKD + SLD, resnet32x4 -> ShuffleV2.
Paper top-1: not reported.
Time: not measured (the one measured run time is the H100 SLD step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, README "Performance").

Command: sld-train --config configs/cifar100/ls_mlkd_sld/resnet32x4_ShuffleV2.py --workdir workdirs/cifar100_ls_mlkd_sld_resnet32x4_ShuffleV2
Dry run (resnet_tiny student and teacher, 16 examples, 2 steps; the first command writes the
tiny teacher):
  sld-train --config configs/cifar100/vanilla/resnet32x4.py:runlocal
  sld-train --config configs/cifar100/ls_mlkd_sld/resnet32x4_ShuffleV2.py:runlocal --config.teacher.checkpoint=workdirs/cifar100_vanilla_resnet32x4_runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(configs_lib.ls_mlkd_config("resnet32x4", "ShuffleV2", sld=True), arg)
