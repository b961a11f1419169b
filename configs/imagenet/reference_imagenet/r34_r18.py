"""SLD on ImageNet, imagenet_resnet34 -> imagenet_resnet18, exactly as the reference code runs it.
The reference hard-codes gamma = 150 also for its 100-epoch ImageNet runs, so the pseudo-teacher
(student swap) term never switches on; the paper says gamma = 30 (configs/imagenet/sld/).

Command: sld-train --config configs/imagenet/reference_imagenet/r34_r18.py --workdir workdirs/imagenet_reference_r34_r18
"""

from sld_jax import configs_lib


def get_config():
    c = configs_lib.imagenet_config("sld", "imagenet_resnet34", "imagenet_resnet18", gamma=150)
    c.loss.ce_weight = 0.5
    c.loss.kd_weight = 0.5
    return c
