"""Ablation ladder, resnet32x4 -> resnet8x4 on CIFAR-100: + teacher swap.

Paper: ablation table, "+ teacher swap": 75.15. This rung: the teacher swap only (teacher_transform
swap, γ = num_epochs: no student swap). Everything else is the SLD recipe (two views, CE 0.1 / KD
0.9, LR 0.025, 240 epochs); see configs_lib.ablation_config. The teacher is read from
teachers/cifar100/resnet32x4.

Source: none for the rung (the paper's ablation table defines it; the reference has no file for it);
composed as Swapped-Logit-Distillation configs/cifar100/sld/res32x4_res8x4.yaml over
mdistiller/engine/cfg.py with mdistiller/distillers/SLD.py (the full-SLD recipe: CE 0.1 / KD 0.9, T
= 1..6, batch 64, 240 epochs, LR 0.025, x0.1 after epochs 150/180/210, weight decay 5e-4, momentum
0.9) with the student swap off (γ = num_epochs).

Row: CIFAR-100, ablation ladder "+ teacher swap", resnet32x4 -> resnet8x4.
Paper top-1: 75.15 % (the paper's ablation table).
Time: not measured; projected about 19 min in float32 on one H100, evaluation excluded (basis:
the measured 6.2 ms/step x 240 epochs x 782 steps of configs/cifar100/sld/resnet32x4_resnet8x4.py,
docs/performance.md, whose models, views and batch this rung shares; it changes only which
swaps fire).

Command: sld-train --config configs/cifar100/ablation/kd_pa_lts.py --workdir workdirs/cifar100_ablation_kd_pa_lts
Dry run (resnet_tiny student and teacher, 16 examples, 2 steps; the first command writes the
tiny teacher):
  sld-train --config configs/cifar100/vanilla/resnet32x4.py:runlocal
  sld-train --config configs/cifar100/ablation/kd_pa_lts.py:runlocal --config.teacher.checkpoint=workdirs/cifar100_vanilla_resnet32x4_runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(configs_lib.ablation_config("kd_pa_lts"), arg)
