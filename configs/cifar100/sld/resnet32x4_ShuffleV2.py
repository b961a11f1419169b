"""SLD (swapped logit distillation) on CIFAR-100: resnet32x4 teacher -> ShuffleV2 student.

Reference hyper-parameters (see sld_jax.configs_lib.cifar_config). The teacher is read from
teachers/cifar100/resnet32x4 (a vanilla run's workdir or an sld-import-teacher output).

Source: Swapped-Logit-Distillation configs/cifar100/sld/res32x4_shuv2.yaml over
mdistiller/engine/cfg.py (KD.LOSS: CE 0.1 / KD 0.9), with the constants of
mdistiller/distillers/SLD.py (T = 1..6, γ = 150, teacher and student swap).

Row: CIFAR-100, SLD, resnet32x4 -> ShuffleV2.
Paper top-1: 78.82 % (the paper's MLKD / LS-MLKD / SLD table).
Time: not measured (the one measured run time is the H100 SLD step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, docs/performance.md).

Command: sld-train --config configs/cifar100/sld/resnet32x4_ShuffleV2.py --workdir workdirs/cifar100_sld_resnet32x4_ShuffleV2
Dry run (resnet_tiny student and teacher, 16 examples, 2 steps; the first command writes the
tiny teacher):
  sld-train --config configs/cifar100/vanilla/resnet32x4.py:runlocal
  sld-train --config configs/cifar100/sld/resnet32x4_ShuffleV2.py:runlocal --config.teacher.checkpoint=workdirs/cifar100_vanilla_resnet32x4_runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(configs_lib.cifar_config("sld", "resnet32x4", "ShuffleV2"), arg)
