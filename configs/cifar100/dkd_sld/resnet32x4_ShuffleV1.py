"""DKD + SLD on CIFAR-100: resnet32x4 teacher -> ShuffleV1 student.

Hyper-parameters composed as the Source paragraph says (sld_jax.configs_lib.cifar_config). The
teacher is read from teachers/cifar100/resnet32x4 (a vanilla run's workdir or an sld-import-teacher
output).

Source: none; composed as DKD's recipe (Swapped-Logit-Distillation
configs/cifar100/dkd/res32x4_shuv1.yaml (the same as mdistiller's) over mdistiller/engine/cfg.py
with mdistiller/distillers/DKD.py; CE 1, α 1, β 8, T 4, warm-up 20, batch 64, 240 epochs, LR 0.01,
x0.1 after epochs 150/180/210, weight decay 5e-4, momentum 0.9) plus SLD's parts from
mdistiller/distillers/SLD.py: the teacher swap before DKD; the weak and the strong view (DKD.py
trains on one view; SLD's pseudo-teacher is defined on both; the reference's
configs/cifar100/dkd/res32x4_res8x4_aug.yaml names an augmented DKD variant, TYPE DKD_aug with
trainer "aug", but neither is in that repository, so its recipe cannot be read); and the
pseudo-teacher term over T = 1..6 after γ = 150 with weight 1.0 (loss.kd_weight), DKD's own weight
on its distillation term, as SLD.py gives that term its KD weight 0.9.

Row: CIFAR-100, DKD + SLD, resnet32x4 -> ShuffleV1.
Paper top-1: not reported.
Time: not measured (the one measured run time is the H100 SLD step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, docs/performance.md).

Command: sld-train --config configs/cifar100/dkd_sld/resnet32x4_ShuffleV1.py --workdir workdirs/cifar100_dkd_sld_resnet32x4_ShuffleV1
Dry run (resnet_tiny student and teacher, 16 examples, 2 steps; the first command writes the
tiny teacher):
  sld-train --config configs/cifar100/vanilla/resnet32x4.py:runlocal
  sld-train --config configs/cifar100/dkd_sld/resnet32x4_ShuffleV1.py:runlocal --config.teacher.checkpoint=workdirs/cifar100_vanilla_resnet32x4_runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(configs_lib.cifar_config("dkd+sld", "resnet32x4", "ShuffleV1"), arg)
