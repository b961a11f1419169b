"""The stated range of every numeric config field, checked before any data is read or step compiled.

A zero batch size, checkpoint interval or eval batch would otherwise pass and fail only after a
full epoch (a division by zero, nothing saved). :data:`RANGES` names each numeric field of a run
config with its allowed interval; :func:`check_ranges` raises one :class:`~sld_jax.errors.ConfigError`
naming the field, its value, the range and the fix. The test suite enumerates the numeric fields
of every config file, so a new field without an entry here fails it.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Iterator

from sld_jax.errors import ConfigError

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

# Every numeric field of a run config (``sld_jax.configs_lib.base_config`` and the config files).
# A key ending in ``.*`` covers every numeric field below that prefix.
RANGES: dict[str, Range] = {
    "seed": Range(0, 2**32 - 1, integer=True),
    "num_seeds": _POSITIVE_INT,
    "dataset.limit_train": _COUNT,
    "dataset.limit_test": _COUNT,
    "num_devices": _COUNT,
    "loss.ce_weight": _WEIGHT,
    "loss.kd_weight": _WEIGHT,
    "loss.temperatures": Range(0, low_open=True, sequence=True),
    "loss.gamma": _COUNT,
    "loss.kd_temperature": _TEMPERATURE,
    "loss.dkd.alpha": _WEIGHT,
    "loss.dkd.beta": _WEIGHT,
    "loss.dkd.temperature": _TEMPERATURE,
    "loss.dkd.warmup": _COUNT,
    "loss.mlkd.kd_weight": _WEIGHT,
    "loss.mlkd.temperatures": Range(0, low_open=True, sequence=True),
    "loss.rkd.rkd_weight": _WEIGHT,
    "loss.rkd.distance_weight": _WEIGHT,
    "loss.rkd.angle_weight": _WEIGHT,
    "loss.rkd.eps": _POSITIVE,
    # Ablation processors check their own hyper-parameters; here: finite numbers.
    "loss.teacher_transform_kwargs.*": Range(),
    "optim.lr": Range(0, low_open=True),
    "optim.momentum": Range(0, 1),
    "optim.weight_decay": _WEIGHT,
    "optim.stages": Range(0, integer=True, sequence=True, nonempty=False, ascending=True),
    "optim.decay_rate": Range(0, low_open=True),
    "num_epochs": _POSITIVE_INT,
    "batch_size": _POSITIVE_INT,
    "eval_batch_size": _POSITIVE_INT,
    "checkpoint_every_epochs": _POSITIVE_INT,
    "keep_checkpoints": _POSITIVE_INT,
    "log_every_steps": _POSITIVE_INT,
    "max_steps": _COUNT,
}


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


def check_ranges(config: Any) -> None:
    """Raises :class:`ConfigError` for the first numeric field outside its stated range.

    Args:
      config: a run config (``ml_collections.ConfigDict`` or a nested dict).

    Raises:
      ConfigError: naming the field, its value, the allowed range and the override that fixes it.

    >>> check_ranges({"batch_size": 64, "eval_batch_size": 0})
    Traceback (most recent call last):
    ...
    sld_jax.errors.ConfigError: eval_batch_size=0 is out of range: it must be a whole number >= 1; set e.g. --config.eval_batch_size=1.
    """
    for key, value in flatten(config):
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
