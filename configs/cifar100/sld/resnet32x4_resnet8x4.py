"""SLD (swapped logit distillation) on CIFAR-100: resnet32x4 teacher -> resnet8x4 student.

Reference hyper-parameters (see sld_jax.configs_lib.cifar_config). The teacher is read from
teachers/cifar100/resnet32x4 (a vanilla run's workdir or an sld-import-teacher output).

Source: Swapped-Logit-Distillation configs/cifar100/sld/res32x4_res8x4.yaml over
mdistiller/engine/cfg.py (KD.LOSS: CE 0.1 / KD 0.9), with the constants of
mdistiller/distillers/SLD.py (T = 1..6, γ = 150, teacher and student swap).

Row: CIFAR-100, SLD, resnet32x4 -> resnet8x4.
Paper top-1: 77.69 % (the paper's MLKD / LS-MLKD / SLD table).
Time: measured on one NVIDIA H100 80GB (docs/performance.md): 6.2 ms per step in float32 and
4.8 ms in bfloat16 at batch 64, so 19.4 / 15.0 min for the 240 epochs of 782 steps (evaluation
excluded).

Command: sld-train --config configs/cifar100/sld/resnet32x4_resnet8x4.py --workdir workdirs/cifar100_sld_resnet32x4_resnet8x4
Dry run (resnet_tiny student and teacher, 16 examples, 2 steps; the first command writes the
tiny teacher):
  sld-train --config configs/cifar100/vanilla/resnet32x4.py:runlocal
  sld-train --config configs/cifar100/sld/resnet32x4_resnet8x4.py:runlocal --config.teacher.checkpoint=workdirs/cifar100_vanilla_resnet32x4_runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(configs_lib.cifar_config("sld", "resnet32x4", "resnet8x4"), arg)
