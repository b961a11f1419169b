"""Vanilla imagenet_resnet18 on ImageNet (baseline student).

Command: sld-train --config configs/imagenet/vanilla/imagenet_resnet18.py --workdir workdirs/imagenet_vanilla_imagenet_resnet18
"""

from sld_jax import configs_lib


def get_config():
    c = configs_lib.imagenet_config("vanilla", None, "imagenet_resnet18")
    c.loss.ce_weight, c.loss.kd_weight = 1.0, 0.0
    return c
