"""SLD on ImageNet, imagenet_resnet34 -> imagenet_resnet18, exactly as the reference code runs it.
The reference hard-codes gamma = 150 also for its 100-epoch ImageNet runs, so the pseudo-teacher
(student swap) term never switches on; the paper says gamma = 30 (configs/imagenet/sld/).

Source: Swapped-Logit-Distillation configs/imagenet/r34_r18/sld.yaml over mdistiller/engine/cfg.py
(CE 0.5 / KD 0.5), with mdistiller/distillers/SLD.py (T = 1..6; KD.TEMPERATURE is not read), γ = 150
included.

Row: ImageNet, SLD as the reference code runs it (γ = 150), imagenet_resnet34 -> imagenet_resnet18.
Paper top-1: not reported (the paper's SLD number, 72.15 %, is for γ = 30: configs/imagenet/sld/).
Time: not measured (the one measured run time is the H100 SLD step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, docs/performance.md).

Command: sld-train --config configs/imagenet/reference_imagenet/r34_r18.py --workdir workdirs/imagenet_reference_r34_r18
Dry run (resnet_tiny student and teacher, 16 examples, 2 steps; the first command writes the
tiny teacher):
  sld-train --config configs/imagenet/vanilla/imagenet_resnet18.py:runlocal
  sld-train --config configs/imagenet/reference_imagenet/r34_r18.py:runlocal --config.teacher.checkpoint=workdirs/imagenet_vanilla_imagenet_resnet18_runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(
        configs_lib.imagenet_config("sld", "imagenet_resnet34", "imagenet_resnet18", gamma=150), arg
    )
