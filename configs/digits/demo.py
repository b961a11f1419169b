"""The offline demo: on the embedded digits set, train a teacher, then vanilla, KD and SLD students.

Command: ``sld-train`` (this is the default config) or
``sld-train --config configs/digits/demo.py --workdir workdirs/digits_demo``.
Expected: test top-1 of the three students side by side; a few minutes on a 2-core CPU.
Not a paper row (the paper reports no digits numbers).
Dry run (every run shrunk to resnet_tiny, 16 examples, 2 steps; offline like the demo itself):
  sld-train --config configs/digits/demo.py:runlocal
"""

import ml_collections

from sld_jax import configs_lib


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    # Names the default workdir (workdirs/digits_demo) and the summary.
    c.name = "digits_demo"
    c.description = "digits: resnet20 teacher -> resnet8 students (vanilla, KD, SLD)"
    # Runs in training order; the teacher run's workdir is the students' teacher.
    c.suite = ("teacher", "vanilla", "kd", "sld")
    c.teacher_run = "teacher"
    # TFDS data directory for every run (None: $TFDS_DATA_DIR or ~/tensorflow_datasets).
    c.data_dir = ml_collections.config_dict.placeholder(str)
    c.runs = ml_collections.ConfigDict()
    c.runs.teacher = configs_lib.digits_config("vanilla", None, "resnet20", num_epochs=8)
    c.runs.vanilla = configs_lib.digits_config("vanilla", None, "resnet8", num_epochs=8)
    c.runs.kd = configs_lib.digits_config("kd", "resnet20", "resnet8", num_epochs=8)
    c.runs.sld = configs_lib.digits_config("sld", "resnet20", "resnet8", num_epochs=8)
    return configs_lib.finish(c, arg)
