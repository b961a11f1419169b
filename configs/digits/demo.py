"""The offline demo: on the embedded digits set, train a teacher, then vanilla, KD and SLD students.

Source: none; not a paper recipe: the CIFAR-100 recipe compressed to the offline digits set
(configs_lib.digits_config: LR 0.05, LR stages and γ at 5/8 of the run).

Command: ``sld-train`` (this is the default config) or
``sld-train --config configs/digits/demo.py --workdir workdirs/digits_demo``.
Expected: one table of the three students' test top-1, mean ± std over 3 seeds each (the teacher
trains one seed), with paired comparisons (KD and SLD vs vanilla, SLD vs KD: difference, 95 %
interval, p-value, verdict; sld_jax/train/comparisons.py) and comparison.png in the workdir;
4 min 15 s measured on a 2-core AMD EPYC with AVX2 (empty compilation cache, idle; 2 min 37 s to
3 min 13 s with the cache warm).
Not a paper row (the paper reports no digits numbers).
Dry run (every run shrunk to resnet_tiny, 16 examples, 2 steps; offline like the demo itself):
  sld-train --config configs/digits/demo.py:runlocal
"""

from sld_jax import configs_lib


def get_config(arg=None):
    c = configs_lib.suite_base()
    # Names the default workdir (workdirs/digits_demo) and the summary.
    c.name = "digits_demo"
    c.description = "digits: resnet20 teacher -> resnet8 students (vanilla, KD, SLD), 3 seeds each"
    # Runs in training order; the teacher run's workdir is the students' teacher.
    c.suite = ("teacher", "vanilla", "kd", "sld")
    c.teacher_run = "teacher"
    c.runs.teacher = configs_lib.digits_config("vanilla", None, "resnet20", num_epochs=8)
    c.runs.vanilla = configs_lib.digits_config("vanilla", None, "resnet8", num_epochs=8)
    c.runs.kd = configs_lib.digits_config("kd", "resnet20", "resnet8", num_epochs=8)
    c.runs.sld = configs_lib.digits_config("sld", "resnet20", "resnet8", num_epochs=8)
    # Each student trains seeds 0, 1, 2 at once; the teacher one seed.
    for name in ("vanilla", "kd", "sld"):
        c.runs[name].num_seeds = 3
    # The table's comparison columns: KD and SLD against vanilla, SLD against KD (paired over seeds
    # 0, 1, 2: the students share their architecture, so seed k shares initialisation and data order).
    c.baselines = ("vanilla", "kd")
    return configs_lib.finish(c, arg)
