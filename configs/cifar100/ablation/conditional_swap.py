"""Conditional-swap α sweep, resnet32x4 -> resnet8x4 on CIFAR-100 (the paper's swap-threshold discussion).

Full SLD (student swap after γ = 150) whose teacher swap fires only where the teacher is nearly
right: |max_c p_c - p_y| < α (losses.conditional_swap; α = 1 is the plain swap except for saturated
rows). The argument is α (default 0.5); the sweep is configs_lib.CONDITIONAL_SWAP_ALPHAS. Paper: no
per-α numbers in the design notes; compare with the full SLD rung (77.69).

Command: sld-train --config configs/cifar100/ablation/conditional_swap.py:0.3 --workdir workdirs/cifar100_ablation_conditional_swap_0.3
(any α in (0, 1] after the colon; the sweep: for a in 0.1 0.3 0.5 0.7 0.9; do sld-train --config
configs/cifar100/ablation/conditional_swap.py:$a --workdir workdirs/cifar100_ablation_conditional_swap_$a; done)
"""

from sld_jax import configs_lib


def get_config(arg=None):
    return configs_lib.ablation_config("conditional_swap", alpha=float(arg) if arg else 0.5)
