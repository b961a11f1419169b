"""SLD (swapped logit distillation) on ImageNet: imagenet_resnet34 -> imagenet_resnet18.
Batch 512, LR 0.2, wd 1e-4, 100 epochs (stages 30/60/90), CE 0.5 / KD 0.5; gamma 30 as the paper.
The teacher is torchvision's pretrained weights converted with sld-import-teacher into
teachers/imagenet/imagenet_resnet34. The dataset needs the manual ImageNet download (see README).

Command: sld-train --config configs/imagenet/sld/r34_r18.py --workdir workdirs/imagenet_sld_r34_r18
"""

from sld_jax import configs_lib


def get_config():
    c = configs_lib.imagenet_config("sld", "imagenet_resnet34", "imagenet_resnet18", gamma=30)
    # CE / KD weights of the reference's ImageNet config for this pair.
    c.loss.ce_weight = 0.5
    c.loss.kd_weight = 0.5
    return c
