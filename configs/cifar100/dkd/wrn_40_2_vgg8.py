"""DKD (Zhao et al. 2022) on CIFAR-100: wrn_40_2 teacher -> vgg8 student.

Hyper-parameters composed as the Source paragraph says (sld_jax.configs_lib.cifar_config). The
teacher is read from teachers/cifar100/wrn_40_2 (a vanilla run's workdir or an sld-import-teacher
output).

Source: none (neither the SLD repository nor mdistiller has a DKD yaml for wrn_40_2 -> vgg8);
composed as mdistiller/engine/cfg.py's DKD defaults (CE 1, α 1, β 8, T 4, warm-up 20) with
mdistiller/distillers/DKD.py, and the SOLVER block every DKD yaml of a student outside
MobileNetV2/ShuffleV1/ShuffleV2 shares (Swapped-Logit-Distillation
configs/cifar100/dkd/res32x4_res8x4.yaml: batch 64, 240 epochs, LR 0.05, x0.1 after epochs
150/180/210, weight decay 5e-4, momentum 0.9).

Row: CIFAR-100, DKD, wrn_40_2 -> vgg8.
Paper top-1: not reported.
Time: not measured (the one measured run time is the H100 SLD step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, docs/performance.md).

Command: sld-train --config configs/cifar100/dkd/wrn_40_2_vgg8.py --workdir workdirs/cifar100_dkd_wrn_40_2_vgg8
Dry run (resnet_tiny student and teacher, 16 examples, 2 steps; the first command writes the
tiny teacher):
  sld-train --config configs/cifar100/vanilla/wrn_40_2.py:runlocal
  sld-train --config configs/cifar100/dkd/wrn_40_2_vgg8.py:runlocal --config.teacher.checkpoint=workdirs/cifar100_vanilla_wrn_40_2_runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(configs_lib.cifar_config("dkd", "wrn_40_2", "vgg8"), arg)
