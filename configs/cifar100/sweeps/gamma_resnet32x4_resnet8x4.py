"""γ sensitivity of SLD, resnet32x4 -> resnet8x4 on CIFAR-100: the student swap switched on after
epoch γ, for γ from 0 (from the first epoch) to 240 (never within the run).

A sweep (configs_lib.sweep_suite, sld_jax.train.suite): the full-SLD recipe of
configs/cifar100/sld/resnet32x4_resnet8x4.py once per γ, 3 seeds each; the suite writes its table,
the sweep's table (best test top-1 per γ: mean ± std and 95 % interval over seeds) and sweep.png.
The design notes give no per-γ numbers of the paper's γ figure; the values span the schedule, with
the recipe's γ = 150 and the LR stages 150 / 180 / 210. The teacher is read from
teachers/cifar100/resnet32x4. Argument: ``num_seeds=K`` (default 3) and/or ``runlocal``.

Source: none for the sweep; each run is the config of configs/cifar100/sld/resnet32x4_resnet8x4.py
(whose recipe rows name Swapped-Logit-Distillation configs/cifar100/sld/res32x4_res8x4.yaml) with
loss.gamma set to the swept value.

Row: CIFAR-100, SLD γ sensitivity, resnet32x4 -> resnet8x4.
Paper top-1: not reported per γ (the recipe's γ = 150 is the paper's 77.69 %).
Time: not measured; projected about 6 x 3 x 19 min in float32 on one H100 with one seed per
program, evaluation excluded (basis: the measured 6.2 ms/step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, docs/performance.md).

Command: sld-train --config configs/cifar100/sweeps/gamma_resnet32x4_resnet8x4.py --workdir workdirs/cifar100_sweeps_gamma
Dry run (every run shrunk to resnet_tiny student and teacher, 16 examples, 2 steps; the first
command writes the tiny teacher):
  sld-train --config configs/cifar100/vanilla/resnet32x4.py:runlocal
  sld-train --config configs/cifar100/sweeps/gamma_resnet32x4_resnet8x4.py:runlocal --config.teacher_checkpoint=workdirs/cifar100_vanilla_resnet32x4_runlocal
"""

from sld_jax import configs_lib

GAMMAS = (0, 60, 120, 150, 180, 240)


def get_config(arg=None):
    args = configs_lib.parse_arg(arg, num_seeds=3, runlocal=False)
    base = configs_lib.cifar_config("sld", "resnet32x4", "resnet8x4")
    c = configs_lib.sweep_suite(
        base, field="loss.gamma", values=GAMMAS, num_seeds=args.num_seeds, name="cifar100/sweeps/gamma"
    )
    return configs_lib.finish(c, args)
