"""KD (Hinton et al., as in mdistiller) on ImageNet: imagenet_resnet50 -> imagenet_mobilenet_v1.

The reference code's ImageNet "MobileNetV2" student is the MobileNetV1 architecture under
another class name (depthwise-separable stack, 1024-channel head, 4,231,976 parameters); the
paper's table says MobileNet-V1, which is what actually ran, so this config uses
imagenet_mobilenet_v1.

Batch 512, LR 0.2, wd 1e-4, 100 epochs (stages 30/60/90), CE 1.0 / KD 0.5; gamma 30 as the paper.
The teacher is torchvision's pretrained weights converted with sld-import-teacher into
teachers/imagenet/imagenet_resnet50. The dataset needs the manual ImageNet download (see README).

Command: sld-train --config configs/imagenet/kd/r50_mv1.py --workdir workdirs/imagenet_kd_r50_mv1
"""

from sld_jax import configs_lib


def get_config():
    c = configs_lib.imagenet_config("kd", "imagenet_resnet50", "imagenet_mobilenet_v1", gamma=30)
    # CE / KD weights of the reference's ImageNet config for this pair.
    c.loss.ce_weight = 1.0
    c.loss.kd_weight = 0.5
    c.loss.teacher_transform = "none"
    c.loss.kd_temperature = 1.0
    return c
