"""KD (Hinton et al., as in mdistiller) on CIFAR-100: ResNet50 teacher -> MobileNetV2 student.

Reference hyper-parameters (see sld_jax.configs_lib.cifar_config). The teacher is read from
teachers/cifar100/ResNet50 (a vanilla run's workdir or an sld-import-teacher output).

Source: logit-standardization-KD configs/cifar100/kd/ResNet50_MobileNetV2.yaml for the SOLVER block
(batch 64, 240 epochs, LR 0.01, x0.1 after epochs 150/180/210, weight decay 5e-4, momentum 0.9; over
that repository's own cfg.py it is its LS-KD recipe, T 2 / KD 9, so the KD block is mdistiller's)
and mdistiller configs/cifar100/kd.yaml over mdistiller/engine/cfg.py (KD.TEMPERATURE 4, KD.LOSS: CE
0.1 / KD 0.9) with mdistiller/distillers/KD.py (Hinton's KD, one view; the SLD repository's KD.py
swaps and weights 4.0, so it is not this baseline).

Row: CIFAR-100, KD, ResNet50 -> MobileNetV2.
Paper top-1: not reported.
Time: not measured (the one measured run time is the H100 SLD step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, docs/performance.md).

Command: sld-train --config configs/cifar100/kd/ResNet50_MobileNetV2.py --workdir workdirs/cifar100_kd_ResNet50_MobileNetV2
Dry run (resnet_tiny student and teacher, 16 examples, 2 steps; the first command writes the
tiny teacher):
  sld-train --config configs/cifar100/vanilla/ResNet50.py:runlocal
  sld-train --config configs/cifar100/kd/ResNet50_MobileNetV2.py:runlocal --config.teacher.checkpoint=workdirs/cifar100_vanilla_ResNet50_runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(configs_lib.cifar_config("kd", "ResNet50", "MobileNetV2"), arg)
