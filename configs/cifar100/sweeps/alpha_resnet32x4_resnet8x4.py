"""Conditional-swap α sweep, resnet32x4 -> resnet8x4 on CIFAR-100, as one suite with intervals.

A sweep (configs_lib.sweep_suite, sld_jax.train.suite) of configs/cifar100/ablation/conditional_swap.py
over α in configs_lib.CONDITIONAL_SWAP_ALPHAS (0.1, 0.3, 0.5, 0.7, 0.9), 3 seeds each: full SLD whose
teacher swap fires only where |max_c p_c - p_y| < α. The suite writes its table, the sweep's table
(best test top-1 per α: mean ± std and 95 % interval over seeds) and sweep.png. The teacher is read
from teachers/cifar100/resnet32x4. Argument: ``num_seeds=K`` (default 3) and/or ``runlocal``.

Source: none for the sweep; each run is the config of configs/cifar100/ablation/conditional_swap.py
(the full-SLD recipe of Swapped-Logit-Distillation configs/cifar100/sld/res32x4_res8x4.yaml with the
teacher swap made conditional) with loss.teacher_transform_kwargs.alpha set to the swept value.

Row: CIFAR-100, ablation "conditional swap, α sweep", resnet32x4 -> resnet8x4.
Paper top-1: not reported (no per-α numbers in the design notes; full SLD is 77.69 %).
Time: not measured; projected about 5 x 3 x 19 min in float32 on one H100 with one seed per
program, evaluation excluded (basis: the measured 6.2 ms/step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, docs/performance.md).

Command: sld-train --config configs/cifar100/sweeps/alpha_resnet32x4_resnet8x4.py --workdir workdirs/cifar100_sweeps_alpha
Dry run (every run shrunk to resnet_tiny student and teacher, 16 examples, 2 steps; the first
command writes the tiny teacher):
  sld-train --config configs/cifar100/vanilla/resnet32x4.py:runlocal
  sld-train --config configs/cifar100/sweeps/alpha_resnet32x4_resnet8x4.py:runlocal --config.teacher_checkpoint=workdirs/cifar100_vanilla_resnet32x4_runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    args = configs_lib.parse_arg(arg, num_seeds=3, runlocal=False)
    base = configs_lib.ablation_config("conditional_swap")
    c = configs_lib.sweep_suite(
        base,
        field="loss.teacher_transform_kwargs.alpha",
        values=configs_lib.CONDITIONAL_SWAP_ALPHAS,
        num_seeds=args.num_seeds,
        name="cifar100/sweeps/alpha",
    )
    return configs_lib.finish(c, args)
