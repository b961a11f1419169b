"""Checks of a run config, once, before any data is read or step compiled.

:func:`validate` checks a run config: every field against its declaration
(:mod:`sld_jax.train.fields`), then what the fields mean together (a method's teacher, the model
names, the dataset's constraints, the batch over the devices). A zero batch size or an unknown
``seed_axis`` fails at once, naming the field, its value, the rule and the fix. The resume check
(:mod:`sld_jax.train.workdir`) reads the same declarations.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterator

import ml_collections

from sld_jax import models
from sld_jax.data import sources
from sld_jax.errors import ConfigError
from sld_jax.train import hardware, methods
from sld_jax.train import mesh as mesh_lib
from sld_jax.train.fields import FIELDS, RANGES, Range

# The checkpoints sld-eval can evaluate.
WHICH_CHOICES = ("best", "last")


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


def describe(rule: Range) -> str:
    """The allowed values of ``rule`` in words (for an error message)."""
    kind = "whole number" if rule.integer else "finite number"
    low, high = _fmt(rule.low), _fmt(rule.high)
    if rule.low is not None and rule.high is not None:
        bound = f"in {'(' if rule.low_open else '['}{low}, {high}]"
    elif rule.low is not None:
        bound = f"{'>' if rule.low_open else '>='} {low}"
    elif rule.high is not None:
        bound = f"<= {high}"
    else:
        bound = ""
    what = f"a {kind} {bound}".rstrip()
    if rule.sequence:
        order = ", in increasing order" if rule.ascending else ""
        size = "non-empty " if rule.nonempty else ""
        return f"a {size}tuple of {kind}s {bound}{order}".replace("  ", " ")
    return what


def contains(rule: Range, value: Any) -> bool:
    """Whether the number ``value`` lies in ``rule`` (a scalar rule: one item of a sequence)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    if not math.isfinite(value) or (rule.integer and value != int(value)):
        return False
    if rule.low is not None and (value <= rule.low if rule.low_open else value < rule.low):
        return False
    return rule.high is None or value <= rule.high


def _fmt(x: float | None) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() else f"{x:g}" if x is not None else ""


def _problem(rule: Range, value: Any) -> bool:
    if not rule.sequence:
        return not contains(rule, value)
    if not isinstance(value, (tuple, list)) or (rule.nonempty and not value):
        return True
    if not all(contains(rule, v) for v in value):
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
                f"{key}={value!r} is out of range: it must be {describe(rule)}; set e.g. "
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


def validate(config: ml_collections.ConfigDict) -> None:
    """Cheap checks of a run config's values, before any data, model or compilation.

    Raises:
      ConfigError: naming the field, what was wrong and the fix (a ``ValueError``).
    """
    try:
        _validate(config)
    except ConfigError:
        raise
    except ValueError as e:  # the checks' plain ValueErrors are config errors too
        raise ConfigError(str(e)) from e


def _validate(config: ml_collections.ConfigDict) -> None:
    check_fields(config)  # ranges and choices of every field
    _check_dataset(config)
    method = methods.get_method(config.method)  # unknown method -> error with suggestion
    models.check_name(config.model)
    if method.uses_teacher:
        models.check_name(config.teacher.arch)
        if not config.teacher.checkpoint:
            raise ValueError(
                f"method {config.method!r} needs a teacher: set --config.teacher.checkpoint to a "
                "vanilla run's workdir or an sld-import-teacher output directory."
            )
    hardware.compute_dtype(config.compute_dtype)
    n = mesh_lib.num_devices(config)
    if config.batch_size % n:
        raise ValueError(
            f"batch_size {config.batch_size} must be divisible by the number of devices ({n}); "
            f"use e.g. --config.batch_size={max(n, config.batch_size // n * n)}."
        )
    methods.objective_kwargs(method, config.loss)  # an unknown teacher transform fails here


def _check_dataset(config: ml_collections.ConfigDict) -> None:
    """The dataset's own constraints, each a :class:`ConfigError`: an unknown name; a batch larger
    than the training set (one padded batch per epoch, all but a few of its rows masked: compute
    and memory for nothing); a placement on the devices of a dataset streamed from the host."""
    spec = sources.get_spec(config.dataset.name)
    limit = config.dataset.get("limit_train") or 0
    num_train = min(limit, spec.train_size) if limit else spec.train_size
    if config.batch_size > num_train:
        raise ConfigError(
            f"batch_size={config.batch_size} is larger than the training set ({num_train} examples of "
            f"{spec.name}{' after dataset.limit_train' if limit else ''}): an epoch would be one batch "
            f"padded to {config.batch_size} rows; use --config.batch_size={min(num_train, 64)} or "
            "another value <= the number of training examples."
        )
    if config.get("data_placement", "auto") == "device" and not spec.in_memory:
        raise ConfigError(
            f"data_placement='device' needs an in-memory dataset; {spec.name} is streamed from the "
            "host: use --config.data_placement=host (or auto)."
        )
