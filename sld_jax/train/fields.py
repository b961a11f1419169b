"""The run config's fields: one declaration per field.

:data:`FIELDS` declares every field of a run config (a dotted key) with a :class:`Field`: its
default, what it means, the allowed interval of a number (:class:`Range`) or the allowed values of
a string, and how it may change on a resume. Everything else reads these declarations:
:func:`defaults` (the base of every config file, :func:`sld_jax.configs_lib.base_config`), the
checks of :mod:`sld_jax.train.validation` (before any data is read or step compiled), the resume
check of :mod:`sld_jax.train.workdir` and the documentation. A key ending in ``.*`` gives the rule
of every numeric field below that prefix (the ablation processors' keyword arguments).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from sld_jax.losses.sld import DEFAULT_TEMPERATURES
from sld_jax.train.seed_axis import SEED_AXIS_MODES


@dataclasses.dataclass(frozen=True)
class Range:
    """A closed or half-open interval of allowed values, for a scalar or each item of a sequence.

    Attributes:
      low: the smallest allowed value (None: unbounded).
      high: the largest allowed value (None: unbounded).
      low_open: ``low`` itself is excluded (e.g. a learning rate > 0).
      integer: only whole numbers are allowed.
      sequence: the field is a tuple whose items each lie in the range.
      nonempty: (sequences) at least one item is required.
      ascending: (sequences) the items must be non-decreasing.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    integer: bool = False
    sequence: bool = False
    nonempty: bool = True
    ascending: bool = False


_POSITIVE_INT = Range(1, integer=True)
_COUNT = Range(0, integer=True)
_WEIGHT = Range(0)
_TEMPERATURE = _POSITIVE = Range(0, low_open=True)

# How a field may differ between a run and its resume (sld_jax.train.workdir.check_same_run):
EQUAL = "equal"  # it changes the computation: must be equal (unless resume_policy=override)
FREE = "free"  # it changes nothing computed at any step (how long, how often, where, on error)
ROUNDING = "rounding"  # how the steps are computed, not what: allowed, with a warning that the
#   numbers then differ from an uninterrupted run's by float rounding (another compiled program)
SHAPE = "shape"  # it fixes the shape of the saved state: never, under any policy
RESUME_RULES = (EQUAL, FREE, ROUNDING, SHAPE)


@dataclasses.dataclass(frozen=True)
class Field:
    """One config field.

    Attributes:
      default: its value in :func:`defaults` (None: unset, of type ``placeholder``).
      doc: what it means, one or two sentences.
      range: the allowed numbers (a scalar, or each item of a tuple), or None.
      choices: the allowed values (strings), or None.
      resume: one of :data:`RESUME_RULES`.
      placeholder: the type of a field whose default is None (``ml_collections`` placeholder).
      optional: absent from :func:`defaults`; the config files that use it add it (a ``.*``
        field's prefix is there, empty).
    """

    default: Any
    doc: str
    range: Range | None = None
    choices: tuple[str, ...] | None = None
    resume: str = EQUAL
    placeholder: type | None = None
    optional: bool = False


#: The data placements of ``data_placement`` ("auto": on the devices when the split fits).
DATA_PLACEMENTS = ("auto", "device", "host")
#: ``seed_axis`` values: "auto" (the backend's measured form) or a form of the seed axis.
SEED_AXIS_CHOICES = ("auto",) + SEED_AXIS_MODES
#: ``compute_dtype`` values.
COMPUTE_DTYPES = ("float32", "bfloat16", "float16", "float64")
#: ``resume_policy`` values: "override" resumes with a changed config on purpose.
RESUME_POLICIES = ("strict", "override")

# Every field of a run config, in the order of config.json. Loss hyper-parameters the reference
# hard-codes are fields too; their defaults are the CIFAR-100 SLD recipe.
FIELDS: dict[str, Field] = {
    "name": Field("run", "Human-readable name of the run (used in the summary and plots).", resume=FREE),
    "seed": Field(
        0, "Seed of parameter init, data order and augmentation.", Range(0, 2**32 - 1, integer=True)
    ),
    "num_seeds": Field(
        1,
        "Seeds trained at once (seed, seed + 1, ...): each its own init, data order and augmentation, "
        "as separate runs would; summaries report mean ± std over them.",
        _POSITIVE_INT,
        resume=SHAPE,
    ),
    "seed_axis": Field(
        "auto",
        'How the seed axis is computed: "auto" (the backend\'s measured form: "unroll" on CPU; measured '
        'on the spot elsewhere, sld_jax.train.autotune), "vmap" (one batched program), "unroll" (one '
        'copy of the step per seed in one program) or "map" (a loop over the seeds).',
        choices=SEED_AXIS_CHOICES,
        resume=ROUNDING,
    ),
    "seed_axis_shares_data": Field(
        False,
        "All seeds see the same batches and views (those of `seed`), so the teacher runs once per "
        "step; the seeds then differ only in their initialisation (and dropout).",
    ),
    "steps_per_dispatch": Field(
        None,
        "Optimiser steps per compiled call (a lax.scan over a stack of batches); None: the backend's "
        "measured default (sld_jax.train.hardware.AUTO_STEPS_PER_DISPATCH), else measured on the spot.",
        _POSITIVE_INT,
        resume=ROUNDING,
        placeholder=int,
    ),
    "data_placement": Field(
        "auto",
        'Where the train split lives: "auto" (on the devices when held in memory and <= 2 GiB), '
        '"device" or "host" (batches assembled on the host each step; always for a streamed dataset).',
        choices=DATA_PLACEMENTS,
        resume=ROUNDING,
    ),
    "dataset.name": Field("cifar100", 'Dataset: "cifar100", "imagenet2012" or "digits" (offline, embedded).'),
    "dataset.data_dir": Field(
        None,
        "TFDS data directory (None: $TFDS_DATA_DIR or ~/tensorflow_datasets).",
        resume=FREE,
        placeholder=str,
    ),
    "dataset.download": Field(
        True,
        "Let TFDS download an absent dataset (needs internet; not imagenet2012).",
        resume=FREE,
    ),
    "dataset.limit_train": Field(0, "Use only the first N train examples (0 = all; smoke tests).", _COUNT),
    "dataset.limit_test": Field(0, "Use only the first N test examples (0 = all; smoke tests).", _COUNT),
    "model": Field("resnet8x4", "Student architecture (a name of sld_jax.models.MODELS)."),
    "compute_dtype": Field(
        "float32",
        'Compute dtype of the student and teacher ("float32", "bfloat16" or "float16"; params stay '
        'float32), or "float64" for exactness checks (params and statistics too; needs JAX_ENABLE_X64=1).',
        choices=COMPUTE_DTYPES,
    ),
    "num_devices": Field(0, "Use the first N devices of each process (0 = all).", _COUNT, resume=ROUNDING),
    "sync_batchnorm": Field(
        False, "Synchronise BatchNorm statistics across devices (reference: per device)."
    ),
    "teacher.arch": Field("resnet32x4", "The teacher's architecture (unused by the vanilla method)."),
    "teacher.checkpoint": Field(
        "",
        "The teacher: a vanilla run's workdir or an sld-import-teacher output directory.",
    ),
    "method": Field(
        "sld", "The method: a name of sld_jax.train.methods.METHODS (e.g. vanilla, kd, sld, dkd+sld)."
    ),
    "loss.ce_weight": Field(0.1, "Weight of the cross-entropy term.", _WEIGHT),
    "loss.kd_weight": Field(0.9, "Weight of the distillation term.", _WEIGHT),
    "loss.temperatures": Field(
        DEFAULT_TEMPERATURES,
        "SLD's temperatures (its KL terms are averaged over them).",
        Range(0, low_open=True, sequence=True),
    ),
    "loss.gamma": Field(150, "γ: the pseudo-teacher term is on for epochs > gamma (epochs from 1).", _COUNT),
    "loss.stop_gradient_pseudo_teacher": Field(
        False, "Stop the gradient through the pseudo-teacher (reference: it flows)."
    ),
    "loss.teacher_transform": Field(
        "swap", 'Teacher-side logit processing: "swap" (SLD) or an ablation variant.'
    ),
    "loss.teacher_transform_kwargs.*": Field(
        None,
        "The teacher transform's keyword arguments (e.g. alpha).",
        Range(),
        optional=True,
    ),
    "loss.kd_temperature": Field(4.0, 'Temperature of Hinton\'s KD (method "kd").', _TEMPERATURE),
    "loss.dkd.alpha": Field(1.0, "DKD's weight of the target-class term.", _WEIGHT),
    "loss.dkd.beta": Field(8.0, "DKD's weight of the non-target-class term.", _WEIGHT),
    "loss.dkd.temperature": Field(4.0, "DKD's temperature.", _TEMPERATURE),
    "loss.dkd.warmup": Field(20, "DKD's linear warm-up of its KD weight, in epochs.", _COUNT),
    "loss.mlkd.reference_quirks": Field(
        True, "MLKD's batch- and class-level terms as the reference computes them."
    ),
    "loss.mlkd.logit_standardization": Field(False, "Z-score MLKD's instance-level KD terms (LS-MLKD)."),
    "loss.mlkd.kd_weight": Field(
        None,
        "MLKD's KD weight (absent: 0.9; LS-MLKD sets it).",
        _WEIGHT,
        optional=True,
    ),
    "loss.mlkd.temperatures": Field(
        None,
        "MLKD's temperatures (absent: the objective's default (4, 3, 5, 2, 6); LS-MLKD sets them).",
        Range(0, low_open=True, sequence=True),
        optional=True,
    ),
    "loss.rkd.rkd_weight": Field(1.0, "Weight of the whole RKD term (on the pooled features).", _WEIGHT),
    "loss.rkd.distance_weight": Field(25.0, "RKD's distance-loss weight.", _WEIGHT),
    "loss.rkd.angle_weight": Field(50.0, "RKD's angle-loss weight.", _WEIGHT),
    "loss.rkd.eps": Field(1e-12, "RKD's floor of a squared distance.", _POSITIVE),
    "loss.rkd.squared": Field(False, "RKD on squared distances."),
    "optim.lr": Field(0.025, "Learning rate (PyTorch SGD).", _POSITIVE),
    "optim.momentum": Field(0.9, "SGD momentum.", Range(0, 1)),
    "optim.weight_decay": Field(5e-4, "SGD weight decay (coupled, on every parameter).", _WEIGHT),
    "optim.stages": Field(
        (150, 180, 210),
        "LR × decay_rate after each of these epochs (epochs from 1; set at the start of an epoch).",
        Range(0, integer=True, sequence=True, nonempty=False, ascending=True),
    ),
    "optim.decay_rate": Field(0.1, "The LR's factor at each stage.", _POSITIVE),
    "num_epochs": Field(240, "Epochs to train.", _POSITIVE_INT, resume=FREE),
    "batch_size": Field(
        64,
        "Global batch size (split over all devices; a last partial batch is masked).",
        _POSITIVE_INT,
    ),
    "eval_batch_size": Field(256, "Global evaluation batch size.", _POSITIVE_INT, resume=FREE),
    "checkpoint_every_epochs": Field(
        10,
        "Checkpoint every N epochs (and at the end and on SIGTERM).",
        _POSITIVE_INT,
        resume=FREE,
    ),
    "keep_checkpoints": Field(3, "Keep the last N checkpoints (and the best).", _POSITIVE_INT, resume=FREE),
    "log_every_steps": Field(
        100, "A progress line every N steps when not on a terminal.", _POSITIVE_INT, resume=FREE
    ),
    "on_nonfinite": Field(
        "stop",
        'On a non-finite loss/gradient: "stop" (exit with an error naming the step and the last good '
        'checkpoint) or "skip" (drop that update and go on).',
        choices=("stop", "skip"),
        resume=FREE,
    ),
    "max_steps": Field(0, "Stop after this many steps in total (0 = no limit).", _COUNT, resume=FREE),
    "resume_policy": Field(
        "strict",
        "Resuming a workdir whose config.json differs in a field that changes the computation: "
        '"strict" refuses (listing the fields), "override" resumes with the new values on purpose.',
        choices=RESUME_POLICIES,
        resume=FREE,
    ),
}


#: The numeric rules of :data:`FIELDS` (a view of it).
RANGES: dict[str, Range] = {k: f.range for k, f in FIELDS.items() if f.range is not None}


def resume_fields(rule: str) -> frozenset[str]:
    """The fields of :data:`FIELDS` whose resume rule is ``rule``.

    >>> sorted(resume_fields(SHAPE))
    ['num_seeds']
    """
    if rule not in RESUME_RULES:
        raise ValueError(f"unknown resume rule {rule!r}; one of {RESUME_RULES}.")
    return frozenset(k for k, f in FIELDS.items() if f.resume == rule)


def defaults() -> ml_collections.ConfigDict:
    """A run config holding every non-optional field of :data:`FIELDS` at its default (a new
    ``ConfigDict`` per call).

    >>> c = defaults()
    >>> (c.method, c.loss.gamma, c.optim.stages, c.steps_per_dispatch)
    ('sld', 150, (150, 180, 210), None)
    """
    config = ml_collections.ConfigDict()
    for key, field in FIELDS.items():
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            if part not in node:
                node[part] = ml_collections.ConfigDict()
            node = node[part]
        if leaf == "*" or field.optional:
            continue
        if field.default is None and field.placeholder is not None:
            node[leaf] = ml_collections.config_dict.placeholder(field.placeholder)
        else:
            node[leaf] = field.default
    return config
