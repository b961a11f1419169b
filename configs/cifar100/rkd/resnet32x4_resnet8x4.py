"""RKD (relational KD, Park et al. 2019) on CIFAR-100: resnet32x4 teacher -> resnet8x4 student.

Paper: "baseline -> baseline + SLD" table, RKD row: 71.22 (this config) -> 72.28 (rkd_sld). The
paper's RKD row does not name its pair; resnet32x4 -> resnet8x4 is used, the pair of the same
table's DKD / MLKD / LS-MLKD numbers (76.32 / 77.08 / 78.28 are their resnet32x4 -> resnet8x4
results). mdistiller's RKD recipe: CE 1 + RKD 1 (distance 25, angle 50) on the pooled features of
one view, LR 0.05, weight decay 5e-4, batch 64, 240 epochs, LR x0.1 after 150/180/210. The teacher
is read from teachers/cifar100/resnet32x4 (a vanilla run's workdir or an sld-import-teacher
output).

Source: Swapped-Logit-Distillation configs/cifar100/rkd.yaml (the same as mdistiller's) over
mdistiller/engine/cfg.py (RKD: CE 1, feature weight 1, distance 25, angle 50, eps 1e-12, not
squared), with mdistiller/distillers/RKD.py (pooled features, one view).

Row: CIFAR-100, RKD, resnet32x4 -> resnet8x4.
Paper top-1: 71.22 % (the paper's "baseline -> baseline + SLD" table, which names no pair: its MLKD
and LS-MLKD baselines are the resnet32x4 -> resnet8x4 numbers).
Time: not measured (the one measured run time is the H100 SLD step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, docs/performance.md).

Command: sld-train --config configs/cifar100/rkd/resnet32x4_resnet8x4.py --workdir workdirs/cifar100_rkd_resnet32x4_resnet8x4
Dry run (resnet_tiny student and teacher, 16 examples, 2 steps; the first command writes the
tiny teacher):
  sld-train --config configs/cifar100/vanilla/resnet32x4.py:runlocal
  sld-train --config configs/cifar100/rkd/resnet32x4_resnet8x4.py:runlocal --config.teacher.checkpoint=workdirs/cifar100_vanilla_resnet32x4_runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(configs_lib.cifar_config("rkd", "resnet32x4", "resnet8x4"), arg)
