"""Vanilla (cross-entropy only) wrn_16_2 on CIFAR-100: trains a teacher or the baseline student.

Source: logit-standardization-KD CTKD/train_teacher.py, the CIFAR-100 teacher-training script (CE
only, batch 64, 240 epochs, LR 0.05, x0.1 after epochs 150/180/210, weight decay 5e-4, momentum 0.9;
its LR is 0.05 except 0.01 for MobileNetV2, ShuffleV1 and ShuffleV2); mdistiller
configs/cifar100/vanilla.yaml over mdistiller/engine/cfg.py says the same for resnet8x4.

Row: CIFAR-100, vanilla (cross-entropy only), wrn_16_2.
Paper top-1: not reported.
Time: not measured (the one measured run time is the H100 SLD step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, docs/performance.md).

Command: sld-train --config configs/cifar100/vanilla/wrn_16_2.py --workdir teachers/cifar100/wrn_16_2
Dry run (resnet_tiny, 16 examples, 2 steps): sld-train --config configs/cifar100/vanilla/wrn_16_2.py:runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(configs_lib.cifar_config("vanilla", None, "wrn_16_2"), arg)
