"""KD (Hinton et al., as in mdistiller) on ImageNet: imagenet_resnet34 -> imagenet_resnet18.
Batch 512, LR 0.2, wd 1e-4, 100 epochs (stages 30/60/90), T 1, CE 0.5 / KD 0.5.
The teacher is torchvision's pretrained weights converted with sld-import-teacher into
teachers/imagenet/imagenet_resnet34. The dataset needs the manual ImageNet download (see docs/data.md).

Source: Swapped-Logit-Distillation configs/imagenet/r34_r18/kd.yaml (the same as mdistiller's) over
mdistiller/engine/cfg.py (T 1, CE 0.5 / KD 0.5), with mdistiller/distillers/KD.py (Hinton's KD, one
view).

Row: ImageNet, KD, imagenet_resnet34 -> imagenet_resnet18.
Paper top-1: not reported.
Time: not measured (the one measured run time is the H100 SLD step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, docs/performance.md).

Command: sld-train --config configs/imagenet/kd/r34_r18.py --workdir workdirs/imagenet_kd_r34_r18
Dry run (resnet_tiny student and teacher, 16 examples, 2 steps; the first command writes the
tiny teacher):
  sld-train --config configs/imagenet/vanilla/imagenet_resnet18.py:runlocal
  sld-train --config configs/imagenet/kd/r34_r18.py:runlocal --config.teacher.checkpoint=workdirs/imagenet_vanilla_imagenet_resnet18_runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(
        configs_lib.imagenet_config("kd", "imagenet_resnet34", "imagenet_resnet18", gamma=30), arg
    )
