"""Ablation ladder, resnet32x4 -> resnet8x4 on CIFAR-100: full SLD (with γ scheduling).

Paper: ablation table, "full SLD (with γ scheduling)": 77.69. This rung: full SLD: the student swap
after γ = 150 (= configs/cifar100/sld/resnet32x4_resnet8x4.py). Everything else is the SLD recipe
(two views, CE 0.1 / KD 0.9, LR 0.025, 240 epochs); see configs_lib.ablation_config. The teacher is
read from teachers/cifar100/resnet32x4.

Source: Swapped-Logit-Distillation configs/cifar100/sld/res32x4_res8x4.yaml over
mdistiller/engine/cfg.py with mdistiller/distillers/SLD.py (the full-SLD recipe: CE 0.1 / KD 0.9, T
= 1..6, batch 64, 240 epochs, LR 0.025, x0.1 after epochs 150/180/210, weight decay 5e-4, momentum
0.9); this rung is that recipe.

Row: CIFAR-100, ablation ladder "full SLD (with γ scheduling)", resnet32x4 -> resnet8x4.
Paper top-1: 77.69 % (the paper's ablation table and its MLKD / LS-MLKD / SLD table).
Time: measured (as configs/cifar100/sld/resnet32x4_resnet8x4.py, the same run) on one NVIDIA H100
80GB (docs/performance.md): 6.2 ms per step in float32 and 4.8 ms in bfloat16 at batch 64, so
19.4 / 15.0 min for the 240 epochs of 782 steps (evaluation excluded).

Command: sld-train --config configs/cifar100/ablation/sld.py --workdir workdirs/cifar100_ablation_sld
Dry run (resnet_tiny student and teacher, 16 examples, 2 steps; the first command writes the
tiny teacher):
  sld-train --config configs/cifar100/vanilla/resnet32x4.py:runlocal
  sld-train --config configs/cifar100/ablation/sld.py:runlocal --config.teacher.checkpoint=workdirs/cifar100_vanilla_resnet32x4_runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(configs_lib.ablation_config("sld"), arg)
