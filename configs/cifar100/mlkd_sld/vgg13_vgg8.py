"""MLKD + SLD on CIFAR-100: vgg13 teacher -> vgg8 student.

Hyper-parameters composed as the Source paragraph says (sld_jax.configs_lib.cifar_config). The
teacher is read from teachers/cifar100/vgg13 (a vanilla run's workdir or an sld-import-teacher
output).

Source: none for the composition (the reference has no MLKD + SLD recipe); composed as MLKD's
recipe, Swapped-Logit-Distillation configs/cifar100/mlkd/vgg13_vgg8.yaml over
mdistiller/engine/cfg.py with mdistiller/distillers/MLKD.py (batch 64, 480 epochs, LR 0.025, x0.1
after epochs 150/180/210, weight decay 5e-4, momentum 0.9, CE 0.1 / KD 0.9, temperatures 4, 3, 5, 2,
6), plus SLD's parts from mdistiller/distillers/SLD.py: the teacher swap before every MLKD term and
the pseudo-teacher term (T = 1..6, weight 0.9, after γ = 150). MLKD's recipe because the paper adds
SLD to that baseline ("baseline -> baseline + SLD").

Row: CIFAR-100, MLKD + SLD, vgg13 -> vgg8.
Paper top-1: not reported.
Time: not measured (the one measured run time is the H100 SLD step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, docs/performance.md).

Command: sld-train --config configs/cifar100/mlkd_sld/vgg13_vgg8.py --workdir workdirs/cifar100_mlkd_sld_vgg13_vgg8
Dry run (resnet_tiny student and teacher, 16 examples, 2 steps; the first command writes the
tiny teacher):
  sld-train --config configs/cifar100/vanilla/vgg13.py:runlocal
  sld-train --config configs/cifar100/mlkd_sld/vgg13_vgg8.py:runlocal --config.teacher.checkpoint=workdirs/cifar100_vanilla_vgg13_runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.finish(configs_lib.cifar_config("mlkd+sld", "vgg13", "vgg8"), arg)
