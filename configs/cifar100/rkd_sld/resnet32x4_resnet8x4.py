"""RKD + SLD on CIFAR-100: resnet32x4 teacher -> resnet8x4 student.

Paper: "baseline -> baseline + SLD" table, RKD row: 71.22 (rkd) -> 72.28 (this config). The paper's
RKD row does not name its pair; resnet32x4 -> resnet8x4 is used, the pair of the same table's DKD /
MLKD / LS-MLKD numbers (76.32 / 77.08 / 78.28 are their resnet32x4 -> resnet8x4 results).
Composition (losses.rkd_sld_objective): the SLD objective exactly as configs/cifar100/sld (two
views, CE 0.1 + KD 0.9 over T = 1..6 with the teacher swap, the student swap after γ = 150, SLD's
LR 0.025) plus RKD 1 (distance 25, angle 50) on the pooled features of each view. RKD has no
logits, so nothing of it is swapped; SLD's CE replaces RKD's.

Source: none; composed as SLD's recipe (Swapped-Logit-Distillation
configs/cifar100/sld/res32x4_res8x4.yaml over mdistiller/engine/cfg.py with
mdistiller/distillers/SLD.py) plus RKD's term as configs/cifar100/rkd.yaml and
mdistiller/distillers/RKD.py define it, on each view; SLD's CE replaces RKD's.

Row: CIFAR-100, RKD + SLD, resnet32x4 -> resnet8x4.
Paper top-1: 72.28 % (the paper's "baseline -> baseline + SLD" table, which names no pair: its MLKD
and LS-MLKD baselines are the resnet32x4 -> resnet8x4 numbers).
Time: not measured (the one measured run time is the H100 SLD step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, docs/performance.md).

Command: sld-train --config configs/cifar100/rkd_sld/resnet32x4_resnet8x4.py --workdir workdirs/cifar100_rkd_sld_resnet32x4_resnet8x4
Dry run (resnet_tiny student and teacher, 16 examples, 2 steps; the first command writes the
tiny teacher):
  sld-train --config configs/cifar100/vanilla/resnet32x4.py:runlocal
  sld-train --config configs/cifar100/rkd_sld/resnet32x4_resnet8x4.py:runlocal --config.teacher.checkpoint=workdirs/cifar100_vanilla_resnet32x4_runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(configs_lib.cifar_config("rkd+sld", "resnet32x4", "resnet8x4"), arg)
