"""What each config field may hold and whether a resume may change it: one declaration per field.

:data:`FIELDS` names the run-config fields that have a rule (a dotted key, or ``prefix.*`` for
every numeric field below a prefix) with a :class:`Field`: the allowed interval of a number
(:class:`Range`), the allowed values of a string, and how the field may change on a resume. The
config's defaults are :func:`sld_jax.configs_lib.base_config`; validation
(:func:`check_fields`, before any data is read or step compiled: a zero batch size or an unknown
``seed_axis`` fails at once, naming the field, its value, the rule and the fix), the resume check
(:mod:`sld_jax.train.workdir`) and the tests read these rules from here. The test suite
enumerates the numeric fields of every config file, so a new numeric field without a range fails it.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Iterator

from sld_jax.errors import ConfigError
from sld_jax.train.seed_axis import SEED_AXIS_MODES

# The checkpoints sld-eval can evaluate.
WHICH_CHOICES = ("best", "last")


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

    def describe(self) -> str:
        kind = "whole number" if self.integer else "finite number"
        low, high = _fmt(self.low), _fmt(self.high)
        if self.low is not None and self.high is not None:
            bound = f"in {'(' if self.low_open else '['}{low}, {high}]"
        elif self.low is not None:
            bound = f"{'>' if self.low_open else '>='} {low}"
        elif self.high is not None:
            bound = f"<= {high}"
        else:
            bound = ""
        what = f"a {kind} {bound}".rstrip()
        if self.sequence:
            order = ", in increasing order" if self.ascending else ""
            size = "non-empty " if self.nonempty else ""
            return f"a {size}tuple of {kind}s {bound}{order}".replace("  ", " ")
        return what

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if not math.isfinite(value) or (self.integer and value != int(value)):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high


def _fmt(x: float | None) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() else f"{x:g}" if x is not None else ""


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
    """The rules of one config field.

    Attributes:
      range: the allowed numbers (a scalar, or each item of a tuple), or None.
      choices: the allowed values (strings), or None.
      resume: one of :data:`RESUME_RULES`.
    """

    range: Range | None = None
    choices: tuple[str, ...] | None = None
    resume: str = EQUAL


#: The data placements of ``data_placement`` ("auto": on the devices when the split fits).
DATA_PLACEMENTS = ("auto", "device", "host")
#: ``seed_axis`` values: "auto" (the backend's measured form) or a form of the seed axis.
SEED_AXIS_CHOICES = ("auto",) + SEED_AXIS_MODES
#: ``compute_dtype`` values.
COMPUTE_DTYPES = ("float32", "bfloat16", "float16", "float64")
#: ``resume_policy`` values: "override" resumes with a changed config on purpose.
RESUME_POLICIES = ("strict", "override")

# Every run-config field with a rule (sld_jax.configs_lib.base_config and the config files). A key
# ending in ``.*`` covers every numeric field below that prefix.
FIELDS: dict[str, Field] = {
    "name": Field(resume=FREE),
    "seed": Field(Range(0, 2**32 - 1, integer=True)),
    "num_seeds": Field(_POSITIVE_INT, resume=SHAPE),
    "seed_axis": Field(choices=SEED_AXIS_CHOICES, resume=ROUNDING),
    "steps_per_dispatch": Field(_POSITIVE_INT, resume=ROUNDING),
    "data_placement": Field(choices=DATA_PLACEMENTS, resume=ROUNDING),
    "num_devices": Field(_COUNT, resume=ROUNDING),
    "compute_dtype": Field(choices=COMPUTE_DTYPES),
    "on_nonfinite": Field(choices=("stop", "skip"), resume=FREE),
    "resume_policy": Field(choices=RESUME_POLICIES, resume=FREE),
    "dataset.limit_train": Field(_COUNT),
    "dataset.limit_test": Field(_COUNT),
    "dataset.data_dir": Field(resume=FREE),
    "dataset.download": Field(resume=FREE),
    "loss.ce_weight": Field(_WEIGHT),
    "loss.kd_weight": Field(_WEIGHT),
    "loss.temperatures": Field(Range(0, low_open=True, sequence=True)),
    "loss.gamma": Field(_COUNT),
    "loss.kd_temperature": Field(_TEMPERATURE),
    "loss.dkd.alpha": Field(_WEIGHT),
    "loss.dkd.beta": Field(_WEIGHT),
    "loss.dkd.temperature": Field(_TEMPERATURE),
    "loss.dkd.warmup": Field(_COUNT),
    "loss.mlkd.kd_weight": Field(_WEIGHT),
    "loss.mlkd.temperatures": Field(Range(0, low_open=True, sequence=True)),
    "loss.rkd.rkd_weight": Field(_WEIGHT),
    "loss.rkd.distance_weight": Field(_WEIGHT),
    "loss.rkd.angle_weight": Field(_WEIGHT),
    "loss.rkd.eps": Field(_POSITIVE),
    # Ablation processors check their own hyper-parameters; here: finite numbers.
    "loss.teacher_transform_kwargs.*": Field(Range()),
    "optim.lr": Field(Range(0, low_open=True)),
    "optim.momentum": Field(Range(0, 1)),
    "optim.weight_decay": Field(_WEIGHT),
    "optim.stages": Field(Range(0, integer=True, sequence=True, nonempty=False, ascending=True)),
    "optim.decay_rate": Field(Range(0, low_open=True)),
    "num_epochs": Field(_POSITIVE_INT, resume=FREE),
    "max_steps": Field(_COUNT, resume=FREE),
    "batch_size": Field(_POSITIVE_INT),
    "eval_batch_size": Field(_POSITIVE_INT, resume=FREE),
    "checkpoint_every_epochs": Field(_POSITIVE_INT, resume=FREE),
    "keep_checkpoints": Field(_POSITIVE_INT, resume=FREE),
    "log_every_steps": Field(_POSITIVE_INT, resume=FREE),
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


def is_numeric(value: Any) -> bool:
    """True for an int/float (not a bool) or a tuple/list holding at least one such number."""
    if isinstance(value, (tuple, list)):
        return any(is_numeric(v) for v in value)
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def flatten(config: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` for every leaf of a ConfigDict or dict, depth first."""
    for key in config.keys():
        value = config[key]
        dotted = f"{prefix}{key}"
        if hasattr(value, "keys"):
            yield from flatten(value, dotted + ".")
        else:
            yield dotted, value


def rule_for(key: str) -> Range | None:
    """The :class:`Range` of a dotted config key (exact entry, else the nearest ``prefix.*``)."""
    if key in RANGES:
        return RANGES[key]
    parts = key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        wildcard = ".".join(parts[:i]) + ".*"
        if wildcard in RANGES:
            return RANGES[wildcard]
    return None


def _problem(rule: Range, value: Any) -> bool:
    if not rule.sequence:
        return not rule.contains(value)
    if not isinstance(value, (tuple, list)) or (rule.nonempty and not value):
        return True
    if not all(rule.contains(v) for v in value):
        return True
    return rule.ascending and any(b < a for a, b in zip(value, value[1:]))


def check_fields(config: Any) -> None:
    """Raises :class:`ConfigError` for the first field outside its rule in :data:`FIELDS`.

    Args:
      config: a run config (``ml_collections.ConfigDict`` or a nested dict).

    Raises:
      ConfigError: naming the field, its value, the allowed range or values and the override that
        fixes it.

    >>> check_fields({"batch_size": 64, "eval_batch_size": 0})
    Traceback (most recent call last):
    ...
    sld_jax.errors.ConfigError: eval_batch_size=0 is out of range: it must be a whole number >= 1; set e.g. --config.eval_batch_size=1.
    >>> check_fields({"seed_axis": "vamp"})
    Traceback (most recent call last):
    ...
    sld_jax.errors.ConfigError: seed_axis='vamp' is not one of auto/vmap/unroll/map; set e.g. --config.seed_axis=auto.
    """
    for key, value in flatten(config):
        choices = FIELDS[key].choices if key in FIELDS else None
        if choices is not None and value not in choices:
            raise ConfigError(
                f"{key}={value!r} is not one of {'/'.join(choices)}; set e.g. --config.{key}={choices[0]}."
            )
        rule = rule_for(key)
        if rule is None or value is None:
            continue
        if _problem(rule, value):
            example = _example(rule)
            raise ConfigError(
                f"{key}={value!r} is out of range: it must be {rule.describe()}; set e.g. "
                f"--config.{key}={example}."
            )


def _example(rule: Range) -> str:
    low = rule.low if rule.low is not None else 0
    value = (
        (int(low) + 1 if rule.low_open else int(low))
        if rule.integer
        else (low * 2 if rule.low_open and low else (0.1 if rule.low_open else low))
    )
    if rule.high is not None:
        value = min(value, rule.high)
    return f"({value},)" if rule.sequence else str(value)


def check_which(which: str) -> str:
    """``which`` if it is one of ``best``/``last``; else a :class:`ConfigError`.

    >>> check_which("last")
    'last'
    """
    if which not in WHICH_CHOICES:
        raise ConfigError(
            f"--which must be one of {'/'.join(WHICH_CHOICES)}, got {which!r}; "
            "use --which=best or --which=last."
        )
    return which
