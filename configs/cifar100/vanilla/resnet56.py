"""Vanilla (cross-entropy only) resnet56 on CIFAR-100: trains a teacher or the baseline student.

Source: logit-standardization-KD CTKD/train_teacher.py, the CIFAR-100 teacher-training script (CE
only, batch 64, 240 epochs, LR 0.05, x0.1 after epochs 150/180/210, weight decay 5e-4, momentum 0.9;
its LR is 0.05 except 0.01 for MobileNetV2, ShuffleV1 and ShuffleV2); mdistiller
configs/cifar100/vanilla.yaml over mdistiller/engine/cfg.py says the same for resnet8x4.

Row: CIFAR-100, vanilla (cross-entropy only), resnet56.
Paper top-1: not reported.
Time: not measured (the one measured run time is the H100 SLD step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, docs/performance.md).

Command: sld-train --config configs/cifar100/vanilla/resnet56.py --workdir teachers/cifar100/resnet56
Dry run (resnet_tiny, 16 examples, 2 steps): sld-train --config configs/cifar100/vanilla/resnet56.py:runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(configs_lib.cifar_config("vanilla", None, "resnet56"), arg)
