"""LS-MLKD + SLD on CIFAR-100: resnet32x4 teacher -> resnet8x4 student.

Paper: "baseline -> baseline + SLD" table, LS-MLKD row: 78.28 -> 78.66 (this config). Composition
(configs_lib.ls_mlkd_config(..., sld=True)): LS-MLKD as configs/cifar100/ls_mlkd with the teacher
logits swapped first (every MLKD term and confidence mask sees the swapped teacher; z-scoring
commutes with the swap), plus MLKD + SLD's γ-gated pseudo-teacher term unchanged (raw student
logits, T = 1..6, weight 0.9, after epoch 150). The teacher is read from
teachers/cifar100/resnet32x4.

Command: sld-train --config configs/cifar100/ls_mlkd_sld/resnet32x4_resnet8x4.py --workdir workdirs/cifar100_ls_mlkd_sld_resnet32x4_resnet8x4
"""

from sld_jax import configs_lib


def get_config():
    return configs_lib.ls_mlkd_config("resnet32x4", "resnet8x4", sld=True)
