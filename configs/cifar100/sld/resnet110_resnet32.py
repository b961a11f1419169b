"""SLD (swapped logit distillation) on CIFAR-100: resnet110 teacher -> resnet32 student.

Reference hyper-parameters (see sld_jax.configs_lib.cifar_config). The teacher is read from
teachers/cifar100/resnet110 (a vanilla run's workdir or an sld-import-teacher output).

Source: Swapped-Logit-Distillation configs/cifar100/sld/res110_res32.yaml over
mdistiller/engine/cfg.py (KD.LOSS: CE 0.1 / KD 0.9), with the constants of
mdistiller/distillers/SLD.py (T = 1..6, γ = 150, teacher and student swap).

Row: CIFAR-100, SLD, resnet110 -> resnet32.
Paper top-1: 74.57 % (the paper's MLKD / LS-MLKD / SLD table).
Time: not measured (the one measured run time is the H100 SLD step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, docs/performance.md).

Command: sld-train --config configs/cifar100/sld/resnet110_resnet32.py --workdir workdirs/cifar100_sld_resnet110_resnet32
Dry run (resnet_tiny student and teacher, 16 examples, 2 steps; the first command writes the
tiny teacher):
  sld-train --config configs/cifar100/vanilla/resnet110.py:runlocal
  sld-train --config configs/cifar100/sld/resnet110_resnet32.py:runlocal --config.teacher.checkpoint=workdirs/cifar100_vanilla_resnet110_runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(configs_lib.cifar_config("sld", "resnet110", "resnet32"), arg)
