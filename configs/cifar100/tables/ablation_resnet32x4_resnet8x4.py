"""The paper's ablation ladder as one table, resnet32x4 -> resnet8x4 on CIFAR-100, each rung
compared with the previous one.

A suite (sld_jax.train.suite) of the four rungs of configs/cifar100/ablation/ (configs_lib.ablation_config):
KD + prediction augmentation (kd_pa), + teacher swap (kd_pa_lts), + student swap from the first
epoch (kd_pa_lts_lss_nogamma), full SLD with γ = 150 (sld), 3 seeds each. Every rung is the SLD
recipe with swaps switched by config fields, so seed k of every rung shares its initialisation and
data order: each rung is compared with the rung below it by a paired t-test over the seeds (the
table's "best vs" columns, comparisons.json, comparison.png; sld_jax/train/comparisons.py). The
teacher is read from teachers/cifar100/resnet32x4. The argument sets the seeds per rung (default
3): ``:num_seeds=5``, or ``:num_seeds=1,runlocal``.

Source: none for the suite; each rung is the config of configs/cifar100/ablation/<rung>.py, whose
recipe rows are listed there (the full-SLD recipe of Swapped-Logit-Distillation
configs/cifar100/sld/res32x4_res8x4.yaml with both swaps switched by config fields).

Row: CIFAR-100, the paper's ablation table, resnet32x4 -> resnet8x4.
Paper top-1: per rung in the table's paper column: 73.33 / 75.15 / 75.87 / 77.69 %.
Time: not measured; projected about 4 x 3 x 19 min in float32 on one H100 with one seed per
program, evaluation excluded (basis: the measured 6.2 ms/step of
configs/cifar100/sld/resnet32x4_resnet8x4.py, docs/performance.md).

Command: sld-train --config configs/cifar100/tables/ablation_resnet32x4_resnet8x4.py --workdir workdirs/cifar100_tables_ablation
Dry run (every rung shrunk to resnet_tiny student and teacher, 16 examples, 2 steps; the first
command writes the tiny teacher):
  sld-train --config configs/cifar100/vanilla/resnet32x4.py:runlocal
  sld-train --config configs/cifar100/tables/ablation_resnet32x4_resnet8x4.py:runlocal --config.teacher_checkpoint=workdirs/cifar100_vanilla_resnet32x4_runlocal
"""

from sld_jax import configs_lib

RUNGS = tuple(configs_lib.ABLATION_LADDER)


def get_config(arg=None):
    args = configs_lib.parse_arg(arg, num_seeds=3, runlocal=False)
    c = configs_lib.suite_base()
    c.name = "cifar100/tables/ablation_resnet32x4_resnet8x4"
    c.description = "CIFAR-100 resnet32x4 -> resnet8x4: the ablation ladder, each rung vs the previous"
    c.suite = RUNGS
    for rung in RUNGS:
        c.runs[rung] = configs_lib.ablation_config(rung)
        c.runs[rung].num_seeds = args.num_seeds
        c.paper[rung] = configs_lib.ABLATION_LADDER[rung][2]
    # Each rung against the one below it (paired: the rungs share the student and the data).
    c.comparisons = tuple(zip(RUNGS[1:], RUNGS[:-1]))
    return configs_lib.finish(c, args)
