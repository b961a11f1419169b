"""KD (Hinton et al., as in mdistiller) on CIFAR-100: wrn_40_2 teacher -> vgg8 student.

Reference hyper-parameters (see sld_jax.configs_lib.cifar_config). The teacher is read from
teachers/cifar100/wrn_40_2 (a vanilla run's workdir or an sld-import-teacher output).

Source: mdistiller configs/cifar100/kd.yaml over mdistiller/engine/cfg.py (KD.TEMPERATURE 4,
KD.LOSS: CE 0.1 / KD 0.9) with mdistiller/distillers/KD.py (Hinton's KD, one view; the SLD
repository's KD.py swaps and weights 4.0, so it is not this baseline), teacher and student changed:
no KD yaml exists for wrn_40_2 -> vgg8 (composed: that yaml's recipe, LR 0.05, for this pair).

Row: CIFAR-100, KD, wrn_40_2 -> vgg8.
Paper top-1: not reported.
Time: not measured (the one measured run time is the H100 SLD step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, docs/performance.md).

Command: sld-train --config configs/cifar100/kd/wrn_40_2_vgg8.py --workdir workdirs/cifar100_kd_wrn_40_2_vgg8
Dry run (resnet_tiny student and teacher, 16 examples, 2 steps; the first command writes the
tiny teacher):
  sld-train --config configs/cifar100/vanilla/wrn_40_2.py:runlocal
  sld-train --config configs/cifar100/kd/wrn_40_2_vgg8.py:runlocal --config.teacher.checkpoint=workdirs/cifar100_vanilla_wrn_40_2_runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(configs_lib.cifar_config("kd", "wrn_40_2", "vgg8"), arg)
