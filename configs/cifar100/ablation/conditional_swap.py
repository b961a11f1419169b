"""Conditional-swap α sweep, resnet32x4 -> resnet8x4 on CIFAR-100 (the paper's swap-threshold discussion).

Full SLD (student swap after γ = 150) whose teacher swap fires only where the teacher is nearly
right: |max_c p_c - p_y| < α (losses.conditional_swap; α = 1 is the plain swap except for saturated
rows). The argument is α (default 0.5), alone (``:0.3``), as ``alpha=0.3``, or with the dry-run
shrink (``:0.3,runlocal``); the sweep is configs_lib.CONDITIONAL_SWAP_ALPHAS. Compare with the full
SLD rung (77.69).

Source: none for the rung (the paper's ablation table defines it; the reference has no file for it);
composed as Swapped-Logit-Distillation configs/cifar100/sld/res32x4_res8x4.yaml over
mdistiller/engine/cfg.py with mdistiller/distillers/SLD.py (the full-SLD recipe: CE 0.1 / KD 0.9, T
= 1..6, batch 64, 240 epochs, LR 0.025, x0.1 after epochs 150/180/210, weight decay 5e-4, momentum
0.9) with the teacher swap made conditional on the threshold α.

Row: CIFAR-100, ablation ladder "conditional swap, α sweep", resnet32x4 -> resnet8x4.
Paper top-1: not reported (no per-α numbers in the design notes).
Time: not measured; projected about 19 min in float32 on one H100, evaluation excluded (basis:
the measured 6.2 ms/step x 240 epochs x 782 steps of configs/cifar100/sld/resnet32x4_resnet8x4.py,
docs/performance.md, whose models, views and batch this rung shares; it changes only the rule
deciding where the teacher swap fires).

Command: sld-train --config configs/cifar100/ablation/conditional_swap.py:0.3 --workdir workdirs/cifar100_ablation_conditional_swap_0.3
(any α in (0, 1] after the colon; the sweep: for a in 0.1 0.3 0.5 0.7 0.9; do sld-train --config
configs/cifar100/ablation/conditional_swap.py:$a --workdir workdirs/cifar100_ablation_conditional_swap_$a; done)
Dry run (resnet_tiny student and teacher, 16 examples, 2 steps; the first command writes the
tiny teacher):
  sld-train --config configs/cifar100/vanilla/resnet32x4.py:runlocal
  sld-train --config configs/cifar100/ablation/conditional_swap.py:0.3,runlocal --config.teacher.checkpoint=workdirs/cifar100_vanilla_resnet32x4_runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    args = configs_lib.parse_arg(arg, alpha=0.5, runlocal=False)
    return configs_lib.finish(configs_lib.ablation_config("conditional_swap", alpha=args.alpha), args)
