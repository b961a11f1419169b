"""KD (Hinton et al., as in mdistiller) on ImageNet: imagenet_resnet50 -> imagenet_mobilenet_v1.

The reference code's ImageNet "MobileNetV2" student is the MobileNetV1 architecture under
another class name (depthwise-separable stack, 1024-channel head, 4,231,976 parameters); the
paper's table says MobileNet-V1, which is what actually ran, so this config uses
imagenet_mobilenet_v1.

Batch 512, LR 0.2, wd 1e-4, 100 epochs (stages 30/60/90), T 1, CE 0.5 / KD 0.5 (CE 1.0 / KD 0.5
is the reference's SLD recipe for this pair, configs/imagenet/sld/r50_mv1.py).
The teacher is torchvision's pretrained weights converted with sld-import-teacher into
teachers/imagenet/imagenet_resnet50. The dataset needs the manual ImageNet download (see docs/data.md).

Source: Swapped-Logit-Distillation configs/imagenet/r50_mv2/kd.yaml (mdistiller's
configs/imagenet/r50_mv1/kd.yaml says the same) over mdistiller/engine/cfg.py (T 1, CE 0.5 / KD
0.5), with mdistiller/distillers/KD.py (Hinton's KD, one view). Its student "MobileNetV2" is
mdistiller/models/imagenet/mobilenetv2.py, the MobileNetV1 architecture (imagenet_mobilenet_v1
here).

Row: ImageNet, KD, imagenet_resnet50 -> imagenet_mobilenet_v1.
Paper top-1: not reported.
Time: not measured (the one measured run time is the H100 SLD step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, docs/performance.md).

Command: sld-train --config configs/imagenet/kd/r50_mv1.py --workdir workdirs/imagenet_kd_r50_mv1
Dry run (resnet_tiny student and teacher, 16 examples, 2 steps; the first command writes the
tiny teacher):
  sld-train --config configs/imagenet/vanilla/imagenet_resnet18.py:runlocal
  sld-train --config configs/imagenet/kd/r50_mv1.py:runlocal --config.teacher.checkpoint=workdirs/imagenet_vanilla_imagenet_resnet18_runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(
        configs_lib.imagenet_config("kd", "imagenet_resnet50", "imagenet_mobilenet_v1", gamma=30), arg
    )
