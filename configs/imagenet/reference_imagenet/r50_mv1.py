"""SLD on ImageNet, imagenet_resnet50 -> imagenet_mobilenet_v1, exactly as the reference code runs it.

The reference code's ImageNet "MobileNetV2" student is the MobileNetV1 architecture under
another class name (depthwise-separable stack, 1024-channel head, 4,231,976 parameters); the
paper's table says MobileNet-V1, which is what actually ran, so this config uses
imagenet_mobilenet_v1.

The reference hard-codes gamma = 150 also for its 100-epoch ImageNet runs, so the pseudo-teacher
(student swap) term never switches on; the paper says gamma = 30 (configs/imagenet/sld/).

Source: Swapped-Logit-Distillation configs/imagenet/r50_mv2/sld.yaml over mdistiller/engine/cfg.py
(CE 1.0 / KD 0.5), with mdistiller/distillers/SLD.py (T = 1..6; KD.TEMPERATURE is not read), γ = 150
included. Its student "MobileNetV2" is mdistiller/models/imagenet/mobilenetv2.py, the MobileNetV1
architecture (imagenet_mobilenet_v1 here).

Row: ImageNet, SLD as the reference code runs it (γ = 150), imagenet_resnet50 -> imagenet_mobilenet_v1.
Paper top-1: not reported (the paper's SLD number, 73.27 %, is for γ = 30: configs/imagenet/sld/).
Time: not measured (the one measured run time is the H100 SLD step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, docs/performance.md).

Command: sld-train --config configs/imagenet/reference_imagenet/r50_mv1.py --workdir workdirs/imagenet_reference_r50_mv1
Dry run (resnet_tiny student and teacher, 16 examples, 2 steps; the first command writes the
tiny teacher):
  sld-train --config configs/imagenet/vanilla/imagenet_resnet18.py:runlocal
  sld-train --config configs/imagenet/reference_imagenet/r50_mv1.py:runlocal --config.teacher.checkpoint=workdirs/imagenet_vanilla_imagenet_resnet18_runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(
        configs_lib.imagenet_config("sld", "imagenet_resnet50", "imagenet_mobilenet_v1", gamma=150), arg
    )
