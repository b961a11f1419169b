"""γ sweep on the embedded digits set, offline: a resnet20 teacher, then SLD resnet8 students with
the student swap switched on after epoch γ = 0, 2, 5 or 8 (8: never within the 8 epochs), 3 seeds each.

A sweep (configs_lib.sweep_suite, sld_jax.train.suite): the demo's SLD run (configs/digits/demo.py)
once per γ, after the teacher run. The suite writes its table, the sweep's table (best test top-1
per γ: mean ± std and 95 % interval over seeds) and sweep.png. Argument: ``num_seeds=K`` (default 3)
and/or ``runlocal``.

Source: none; not a paper recipe: the demo's digits runs (configs_lib.digits_config) with
loss.gamma swept.

Command: sld-train --config configs/digits/sweep_gamma.py --workdir workdirs/digits_sweep_gamma
Expected: the teacher, then four SLD runs; about 4 min on a 2-core AMD EPYC (warm compilation cache).
Dry run (every run shrunk to resnet_tiny, 16 examples, 2 steps; offline):
  sld-train --config configs/digits/sweep_gamma.py:runlocal
"""

from sld_jax import configs_lib

GAMMAS = (0, 2, 5, 8)


def get_config(arg=None):
    args = configs_lib.parse_arg(arg, num_seeds=3, runlocal=False)
    base = configs_lib.digits_config("sld", "resnet20", "resnet8", num_epochs=8)
    teacher = configs_lib.digits_config("vanilla", None, "resnet20", num_epochs=8)
    c = configs_lib.sweep_suite(
        base,
        field="loss.gamma",
        values=GAMMAS,
        num_seeds=args.num_seeds,
        teacher=teacher,
        name="digits_sweep_gamma",
    )
    return configs_lib.finish(c, args)
