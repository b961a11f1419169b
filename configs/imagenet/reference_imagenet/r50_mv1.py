"""SLD on ImageNet, imagenet_resnet50 -> imagenet_mobilenet_v1, exactly as the reference code runs it.

The reference code's ImageNet "MobileNetV2" student is the MobileNetV1 architecture under
another class name (depthwise-separable stack, 1024-channel head, 4,231,976 parameters); the
paper's table says MobileNet-V1, which is what actually ran, so this config uses
imagenet_mobilenet_v1.

The reference hard-codes gamma = 150 also for its 100-epoch ImageNet runs, so the pseudo-teacher
(student swap) term never switches on; the paper says gamma = 30 (configs/imagenet/sld/).

Command: sld-train --config configs/imagenet/reference_imagenet/r50_mv1.py --workdir workdirs/imagenet_reference_r50_mv1
"""

from sld_jax import configs_lib


def get_config():
    c = configs_lib.imagenet_config("sld", "imagenet_resnet50", "imagenet_mobilenet_v1", gamma=150)
    c.loss.ce_weight = 1.0
    c.loss.kd_weight = 0.5
    return c
