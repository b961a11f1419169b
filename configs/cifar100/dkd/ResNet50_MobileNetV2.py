"""DKD (Zhao et al. 2022) on CIFAR-100: ResNet50 teacher -> MobileNetV2 student.

Reference hyper-parameters (see sld_jax.configs_lib.cifar_config). The teacher is read from
teachers/cifar100/ResNet50 (a vanilla run's workdir or an sld-import-teacher output).

Source: Swapped-Logit-Distillation configs/cifar100/dkd/res50_mv2.yaml (the same as mdistiller's)
over mdistiller/engine/cfg.py (CE 1, α 1, β 8, T 4, warm-up 20, batch 64, 240 epochs, LR 0.01, x0.1
after epochs 150/180/210, weight decay 5e-4, momentum 0.9), with mdistiller/distillers/DKD.py (one
view, no swap).

Row: CIFAR-100, DKD, ResNet50 -> MobileNetV2.
Paper top-1: not reported.
Time: not measured (the one measured run time is the H100 SLD step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, docs/performance.md).

Command: sld-train --config configs/cifar100/dkd/ResNet50_MobileNetV2.py --workdir workdirs/cifar100_dkd_ResNet50_MobileNetV2
Dry run (resnet_tiny student and teacher, 16 examples, 2 steps; the first command writes the
tiny teacher):
  sld-train --config configs/cifar100/vanilla/ResNet50.py:runlocal
  sld-train --config configs/cifar100/dkd/ResNet50_MobileNetV2.py:runlocal --config.teacher.checkpoint=workdirs/cifar100_vanilla_ResNet50_runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(configs_lib.cifar_config("dkd", "ResNet50", "MobileNetV2"), arg)
