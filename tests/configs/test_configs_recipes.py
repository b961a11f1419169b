"""Every config equals, field for field, the recipe of the file it names as its source.

``recipes.csv`` (beside this file) has one row per recipe field per config: ``config`` (the path
under ``configs/``; ``path::run`` for a run of a suite config), ``field`` (a dotted config path),
``value`` (a Python literal) and ``source``: ``<repository>:<path> <key or constant>`` for a value
read from a file, or ``composed: <why>`` for a choice a composition makes where no file has one.
The repositories are the SLD authors' ``Swapped-Logit-Distillation`` (yamls merged over its copy of
``mdistiller/engine/cfg.py``, and its distillers' constants), ``mdistiller`` (megvii-research) and
Sun et al.'s ``logit-standardization-KD`` (its yamls, logs, README and ``CTKD/train_teacher.py``).
The values were read from those files, not from the configs: a config that drifts from its source
fails here, naming the field, both values and the source.
"""

import ast
import csv
import functools
import importlib.util
import inspect
import pathlib
import re

import pytest

from sld_jax.train import methods

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[2] / "configs"
CONFIG_FILES = sorted(CONFIG_DIR.rglob("*.py"))
TABLE = pathlib.Path(__file__).with_name("recipes.csv")
REPOSITORIES = ("Swapped-Logit-Distillation", "mdistiller", "logit-standardization-KD")
FILE_SOURCE = re.compile(rf"^({'|'.join(REPOSITORIES)}):(\S+) ")


def _read_table():
    with TABLE.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and set(rows[0]) == {"config", "field", "value", "source"}
    return rows


ROWS = _read_table()
ROWS_BY_CONFIG: dict[str, list[dict[str, str]]] = {}
for _row in ROWS:
    ROWS_BY_CONFIG.setdefault(_row["config"].partition("::")[0], []).append(_row)


@functools.cache
def config_module(rel):
    path = CONFIG_DIR / rel
    spec = importlib.util.spec_from_file_location(f"cfg_recipe_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def load(rel):
    return config_module(rel).get_config(None)


def _objective_default(run, field):
    """An objective keyword a config leaves to the objective (MLKD's temperatures): its default."""
    name = field.rsplit(".", 1)[-1]
    parameter = inspect.signature(methods.get_method(run.method).objective).parameters.get(name)
    if parameter is None or parameter.default is inspect.Parameter.empty:
        raise KeyError(field)
    return parameter.default


def actual_value(run, field):
    value = run
    try:
        for key in field.split("."):
            value = value[key]
    except KeyError:
        if not field.startswith("loss.mlkd."):
            raise
        value = _objective_default(run, field)
    return tuple(value) if isinstance(value, list) else value


def _mismatch(row, actual, expected):
    return (
        f"{row['config']}: {row['field']} is {actual!r}, its source says {expected!r} "
        f"(source: {row['source']})"
    )


def mismatches(rel, config):
    """The fields of ``config`` (the config file ``rel``) that differ from its rows, as messages."""
    wrong = []
    for row in ROWS_BY_CONFIG[rel]:
        _, _, run_name = row["config"].partition("::")
        run = config.runs[run_name] if run_name else config
        expected = ast.literal_eval(row["value"])
        try:
            actual = actual_value(run, row["field"])
        except KeyError:
            wrong.append(_mismatch(row, "<absent>", expected))
            continue
        if type(actual) is not type(expected) or actual != expected:
            wrong.append(_mismatch(row, actual, expected))
    return wrong


@pytest.mark.parametrize("rel", sorted(ROWS_BY_CONFIG))
def test_config_equals_its_source_recipe(rel):
    wrong = mismatches(rel, load(rel))
    assert not wrong, "\n".join(wrong)


def test_the_table_is_well_formed():
    keys = [(r["config"], r["field"]) for r in ROWS]
    assert len(keys) == len(set(keys)), "a (config, field) pair appears twice in recipes.csv"
    for row in ROWS:
        assert (CONFIG_DIR / row["config"].partition("::")[0]).is_file(), row["config"]
        ast.literal_eval(row["value"])
        assert row["source"].startswith("composed: ") or FILE_SOURCE.match(row["source"]), (
            f"{row['config']} {row['field']}: a source is '<repository>:<path> <key>' with a repository "
            f"of {REPOSITORIES}, or 'composed: <why>'; got {row['source']!r}"
        )


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_every_config_names_its_source(path):
    """A config with rows names each of their files; one without rows says it has no source."""
    rel = str(path.relative_to(CONFIG_DIR))
    doc = config_module(rel).__doc__
    assert "\nSource: " in doc, f"{rel}: its docstring needs a 'Source: ...' paragraph"
    rows = ROWS_BY_CONFIG.get(rel, [])
    if not rows:
        assert "\nSource: none" in doc, f"{rel} has no rows in recipes.csv and does not say 'Source: none'"
        return
    flat = " ".join(doc.split())
    missing = sorted(
        {m.group(2) for r in rows if (m := FILE_SOURCE.match(r["source"])) and m.group(2) not in flat}
    )
    assert not missing, f"{rel}: its docstring does not name these source files of its recipe: {missing}"
    if any(r["source"].startswith("composed: ") for r in rows):
        paragraph = doc[doc.index("\nSource: ") :].split("\n\n")[0]
        assert "none" in paragraph or "composed" in paragraph, (
            f"{rel} composes some fields; its Source paragraph must say what it composed ('none' or 'composed')"
        )
    config = load(rel)
    if "suite" in config:
        covered = {r["config"].partition("::")[2] for r in rows}
        assert covered == set(config.suite), f"{rel}: runs without rows: {set(config.suite) - covered}"


def test_a_changed_field_is_reported_with_config_field_values_and_source():
    rel = "cifar100/ls_mlkd/resnet32x4_ShuffleV2.py"
    changed = load(rel).copy_and_resolve_references()
    changed.loss.mlkd.kd_weight = 9.0
    del changed.loss.ce_weight
    assert mismatches(rel, changed) == [
        "cifar100/ls_mlkd/resnet32x4_ShuffleV2.py: loss.ce_weight is '<absent>', its source says 0.1 "
        "(source: logit-standardization-KD:mdistiller/engine/cfg.py KD.LOSS.CE_WEIGHT (default); "
        "read by mdistiller/distillers/MLKD.py)",
        "cifar100/ls_mlkd/resnet32x4_ShuffleV2.py: loss.mlkd.kd_weight is 9.0, its source says 6.0 "
        "(source: logit-standardization-KD:logs/MLKD/mlkd,resnet32x4,ShuffleV2,2,6.txt (file name: "
        "KD_WEIGHT 6, README naming rule; tools/train.py --kd-weight sets KD.LOSS.KD_WEIGHT))",
    ]
