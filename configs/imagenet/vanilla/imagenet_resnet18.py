"""Vanilla imagenet_resnet18 on ImageNet (baseline student).

Source: none (no vanilla ImageNet recipe exists in the reference repositories; their ImageNet
teachers are torchvision's); composed as the SOLVER block of the ImageNet distillation yamls
(Swapped-Logit-Distillation configs/imagenet/r34_r18/kd.yaml: batch 512, 100 epochs, LR 0.2, x0.1
after 30/60/90, weight decay 1e-4, momentum 0.9) with CE only.

Row: ImageNet, vanilla (cross-entropy only), imagenet_resnet18.
Paper top-1: not reported.
Time: not measured (the one measured run time is the H100 SLD step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, docs/performance.md).

Command: sld-train --config configs/imagenet/vanilla/imagenet_resnet18.py --workdir workdirs/imagenet_vanilla_imagenet_resnet18
Dry run (resnet_tiny, 16 examples, 2 steps): sld-train --config configs/imagenet/vanilla/imagenet_resnet18.py:runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(configs_lib.imagenet_config("vanilla", None, "imagenet_resnet18"), arg)
