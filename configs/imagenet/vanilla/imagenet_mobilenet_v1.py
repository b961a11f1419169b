"""Vanilla imagenet_mobilenet_v1 on ImageNet (baseline student).

Row: ImageNet, vanilla (cross-entropy only), imagenet_mobilenet_v1.
Paper top-1: not reported.
Time: not measured (the one measured run time is the H100 SLD step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, README "Performance").

Command: sld-train --config configs/imagenet/vanilla/imagenet_mobilenet_v1.py --workdir workdirs/imagenet_vanilla_imagenet_mobilenet_v1
Dry run (resnet_tiny, 16 examples, 2 steps): sld-train --config configs/imagenet/vanilla/imagenet_mobilenet_v1.py:runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    c = configs_lib.imagenet_config("vanilla", None, "imagenet_mobilenet_v1")
    c.loss.ce_weight, c.loss.kd_weight = 1.0, 0.0
    return configs_lib.finish(c, arg)
