"""Every config file parses (as is and shrunk by ``runlocal``), locks, validates, documents its
paper row, and carries the reference values."""

import importlib.util
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

from sld_jax import configs_lib
from sld_jax.errors import ConfigError
from sld_jax.train import methods, validation

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[2] / "configs"
CONFIG_FILES = sorted(CONFIG_DIR.rglob("*.py"))


def config_module(path):
    spec = importlib.util.spec_from_file_location(f"cfg_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load(path, arg=None):
    return config_module(path).get_config(arg)


def _run_configs(config):
    if "suite" in config:
        return [config.runs[name] for name in config.suite]
    return [config]


def test_there_are_configs_for_every_paper_pair():
    for method in ("sld", "kd", "dkd", "mlkd", "vanilla"):
        for teacher, student in configs_lib.CIFAR_PAIRS:
            name = f"{teacher}_{student}.py" if method != "vanilla" else f"{student}.py"
            assert (CONFIG_DIR / "cifar100" / method / name).is_file(), (method, name)
    for teacher in configs_lib.CIFAR_TEACHERS:
        assert (CONFIG_DIR / "cifar100" / "vanilla" / f"{teacher}.py").is_file()


# Each config file as is and with the dry-run shrink (the conditional swap also with its α).
CONFIG_ARGS = [(p, arg) for p in CONFIG_FILES for arg in (None, "runlocal")] + [
    (CONFIG_DIR / "cifar100/ablation/conditional_swap.py", "0.3,runlocal")
]


@pytest.mark.parametrize(
    "path,arg",
    CONFIG_ARGS,
    ids=lambda x: str(x.relative_to(CONFIG_DIR)) if isinstance(x, pathlib.Path) else str(x),
)
def test_config_parses_validates_and_names_valid_pieces(path, arg):
    config = load(path, arg)
    config.lock()
    for run in _run_configs(config):
        method = methods.get_method(run.method)
        if method.uses_teacher and not run.teacher.checkpoint:
            run.teacher.checkpoint = "teachers/set-by-the-suite"  # the suite sets the teacher's workdir
        validation.validate(run)
        assert run.optim.lr > 0 and run.num_epochs > 0 and run.batch_size > 0
        if arg and "runlocal" in arg:
            assert (run.model, run.teacher.arch, run.max_steps, run.num_epochs) == (
                "resnet_tiny",
                "resnet_tiny",
                2,
                1,
            )
            assert run.dataset.limit_train == 16 and run.batch_size == 8
        with pytest.raises(AttributeError, match="Did you mean"):
            run.optim.lrr  # noqa: B018  (a mistyped key names the nearest valid one)
    if arg and "runlocal" in arg:
        assert config.name.endswith("_runlocal")  # its own default workdir
        # Only the sizes change: method, losses and schedule are those of the full config.
        full = load(path, arg.replace("runlocal", "").strip(",") or None)
        for run, full_run in zip(_run_configs(config), _run_configs(full)):
            assert (run.method, run.loss.to_dict(), run.optim.to_dict()) == (
                full_run.method,
                full_run.loss.to_dict(),
                full_run.optim.to_dict(),
            )


def test_config_argument_errors_name_the_valid_items():
    with pytest.raises(ValueError, match="unknown config argument 'runlocl'; this config takes runlocal"):
        load(CONFIG_DIR / "cifar100/sld/resnet32x4_resnet8x4.py", "runlocl")
    with pytest.raises(ValueError, match="takes alpha, runlocal"):
        load(CONFIG_DIR / "cifar100/ablation/conditional_swap.py", "beta=0.3")
    with pytest.raises(ValueError, match="must be a float"):
        load(CONFIG_DIR / "cifar100/ablation/conditional_swap.py", "alpha=high")


def test_cli_passes_the_argument_and_reports_a_bad_one_in_one_line():
    from sld_jax import cli

    fv = cli._load_config(
        [
            "sld-train",
            "--config",
            "configs/cifar100/ablation/conditional_swap.py:0.3,runlocal",
            "--config.seed=3",
        ]
    )
    assert (fv.config.loss.teacher_transform_kwargs.alpha, fv.config.model, fv.config.seed) == (
        0.3,
        "resnet_tiny",
        3,
    )
    with pytest.raises(ConfigError, match=r"^unknown config argument 'runlocl'; this config takes runlocal"):
        cli._load_config(["sld-train", "--config", "configs/cifar100/sld/resnet32x4_resnet8x4.py:runlocl"])


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_docstring_gives_row_top1_time_and_commands(path):
    """Each docstring names its paper row, the paper's top-1, the time, and its own commands."""
    doc = config_module(path).__doc__
    rel = path.relative_to(CONFIG_DIR)
    if rel.parts[0] != "digits":
        for label in ("Row: ", "Paper top-1: ", "Time: "):
            assert f"\n{label}" in doc, (rel, label)
        assert f"sld-train --config configs/{rel} --workdir " in doc or f"configs/{rel}:0.3 --workdir" in doc
    assert f"sld-train --config configs/{rel}:runlocal" in doc or f"configs/{rel}:0.3,runlocal" in doc


def test_docstring_top1_is_the_paper_number_of_its_row():
    """Spot checks against DESIGN.md's "The paper's reported numbers" (and their absence)."""
    expected = {
        "cifar100/sld/resnet32x4_resnet8x4.py": "77.69 %",
        "cifar100/mlkd/wrn_40_2_wrn_16_2.py": "76.63 %",
        "cifar100/ls_mlkd/resnet110_resnet32.py": "74.32 %",
        "imagenet/sld/r50_mv1.py": "73.27 %",
        "cifar100/ablation/kd_pa_lts.py": "75.15 %",
        "cifar100/rkd_sld/resnet32x4_resnet8x4.py": "72.28 %",
        "cifar100/kd/resnet32x4_resnet8x4.py": "not reported",
        "imagenet/reference_imagenet/r34_r18.py": "not reported",
        "cifar100/sld/vgg13_vgg8.py": "not reported",
    }
    for rel, top1 in expected.items():
        assert f"Paper top-1: {top1}" in config_module(CONFIG_DIR / rel).__doc__, rel
    measured = [p for p in CONFIG_FILES if "Time: measured" in config_module(p).__doc__]
    assert {str(p.relative_to(CONFIG_DIR)) for p in measured} == {
        "cifar100/sld/resnet32x4_resnet8x4.py",
        "cifar100/ablation/sld.py",
    }


def test_runlocal_shrinks_every_run_of_a_suite():
    demo = load(CONFIG_DIR / "digits/demo.py", "runlocal")
    assert demo.name == "digits_demo_runlocal"
    assert {demo.runs[n].model for n in demo.suite} == {"resnet_tiny"}
    assert {demo.runs[n].max_steps for n in demo.suite} == {2}


def test_every_numeric_field_of_every_config_has_a_stated_range():
    configs = [configs_lib.base_config()] + [run for path in CONFIG_FILES for run in _run_configs(load(path))]
    unchecked = {
        key
        for config in configs
        for key, value in validation.flatten(config)
        if validation.is_numeric(value) and validation.rule_for(key) is None
    }
    assert not unchecked, f"give these fields a range in sld_jax.train.fields.FIELDS: {sorted(unchecked)}"


def test_reference_hyper_parameters():
    c = load(CONFIG_DIR / "cifar100/sld/resnet32x4_resnet8x4.py")
    assert (c.optim.lr, c.batch_size, c.num_epochs, tuple(c.optim.stages)) == (
        0.025,
        64,
        240,
        (150, 180, 210),
    )
    assert (c.loss.ce_weight, c.loss.kd_weight, c.loss.gamma) == (0.1, 0.9, 150)
    assert tuple(c.loss.temperatures) == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
    assert (c.optim.momentum, c.optim.weight_decay) == (0.9, 5e-4)
    assert load(CONFIG_DIR / "cifar100/sld/vgg13_MobileNetV2.py").optim.lr == 0.008
    assert load(CONFIG_DIR / "cifar100/sld/wrn_40_2_ShuffleV1.py").optim.lr == 0.01
    assert load(CONFIG_DIR / "cifar100/kd/resnet32x4_ShuffleV2.py").optim.lr == 0.01
    assert load(CONFIG_DIR / "cifar100/kd/resnet56_resnet20.py").optim.lr == 0.05
    assert load(CONFIG_DIR / "cifar100/dkd/resnet56_resnet20.py").loss.dkd.beta == 2.0
    assert load(CONFIG_DIR / "cifar100/dkd/vgg13_vgg8.py").loss.dkd.beta == 6.0
    assert load(CONFIG_DIR / "cifar100/dkd/resnet32x4_resnet8x4.py").loss.dkd.beta == 8.0
    assert load(CONFIG_DIR / "cifar100/mlkd/resnet32x4_ShuffleV1.py").num_epochs == 960
    assert load(CONFIG_DIR / "cifar100/mlkd/resnet32x4_resnet8x4.py").num_epochs == 480
    paper = load(CONFIG_DIR / "imagenet/sld/r50_mv1.py")
    code = load(CONFIG_DIR / "imagenet/reference_imagenet/r50_mv1.py")
    assert paper.loss.gamma == 30 and code.loss.gamma == 150
    assert paper.model == "imagenet_mobilenet_v1"
    assert (paper.loss.ce_weight, paper.loss.kd_weight) == (1.0, 0.5)
    r18 = load(CONFIG_DIR / "imagenet/sld/r34_r18.py")
    assert (r18.loss.ce_weight, r18.loss.kd_weight, r18.batch_size, r18.optim.lr) == (0.5, 0.5, 512, 0.2)


# The rest of the paper's comparison grid: RKD, LS-MLKD, the ablation ladder.
GRID_DIRS = ("rkd", "rkd_sld", "ls_mlkd", "ls_mlkd_sld", "ablation")
GRID_FILES = sorted(p for d in GRID_DIRS for p in (CONFIG_DIR / "cifar100" / d).glob("*.py"))


def test_grid_covers_the_paper_rows():
    names = {str(p.relative_to(CONFIG_DIR / "cifar100")) for p in GRID_FILES}
    assert {"rkd/resnet32x4_resnet8x4.py", "rkd_sld/resnet32x4_resnet8x4.py"} <= names
    for teacher, student in configs_lib.LS_MLKD_PAPER:
        assert {f"ls_mlkd/{teacher}_{student}.py", f"ls_mlkd_sld/{teacher}_{student}.py"} <= names
    for step in (*configs_lib.ABLATION_LADDER, "conditional_swap"):
        assert f"ablation/{step}.py" in names


def test_grid_reference_values():
    rkd = load(CONFIG_DIR / "cifar100/rkd/resnet32x4_resnet8x4.py")
    assert (rkd.method, rkd.loss.ce_weight, rkd.optim.lr, rkd.num_epochs) == ("rkd", 1.0, 0.05, 240)
    assert (rkd.loss.rkd.rkd_weight, rkd.loss.rkd.distance_weight, rkd.loss.rkd.angle_weight) == (
        1.0,
        25.0,
        50.0,
    )
    both = load(CONFIG_DIR / "cifar100/rkd_sld/resnet32x4_resnet8x4.py")
    assert (both.loss.ce_weight, both.loss.kd_weight, both.loss.gamma, both.optim.lr) == (
        0.1,
        0.9,
        150,
        0.025,
    )
    assert both.loss.teacher_transform == "swap"
    for teacher, student in configs_lib.LS_MLKD_PAPER:
        ls = load(CONFIG_DIR / f"cifar100/ls_mlkd/{teacher}_{student}.py")
        mlkd = load(CONFIG_DIR / f"cifar100/mlkd/{teacher}_{student}.py")
        assert ls.method == "mlkd" and ls.loss.mlkd.logit_standardization
        assert tuple(ls.loss.mlkd.temperatures) == (2.0, 3.0, 5.0, 2.0, 6.0)
        # KD weight 9, except 6 for the ShuffleV2 run (logs/MLKD/mlkd,resnet32x4,ShuffleV2,2,6.txt).
        assert ls.loss.mlkd.kd_weight == {("resnet32x4", "ShuffleV2"): 6.0}.get((teacher, student), 9.0)
        assert (ls.optim.lr, ls.num_epochs, ls.loss.ce_weight) == (
            mlkd.optim.lr,
            mlkd.num_epochs,
            mlkd.loss.ce_weight,
        )
        ls_sld = load(CONFIG_DIR / f"cifar100/ls_mlkd_sld/{teacher}_{student}.py")
        assert ls_sld.method == "mlkd+sld" and ls_sld.loss.teacher_transform == "swap"
        assert ls_sld.loss.mlkd.to_dict() == ls.loss.mlkd.to_dict()
    rungs = {step: load(CONFIG_DIR / f"cifar100/ablation/{step}.py") for step in configs_lib.ABLATION_LADDER}
    assert {s: (c.method, c.loss.teacher_transform, c.loss.gamma) for s, c in rungs.items()} == {
        "kd_pa": ("sld", "none", 240),
        "kd_pa_lts": ("sld", "swap", 240),
        "kd_pa_lts_lss_nogamma": ("sld", "swap", 0),
        "sld": ("sld", "swap", 150),
    }
    assert all(c.loss.gamma >= c.num_epochs for s, c in rungs.items() if s in ("kd_pa", "kd_pa_lts"))
    assert rungs["sld"].to_dict() | {"name": ""} == load(
        CONFIG_DIR / "cifar100/sld/resnet32x4_resnet8x4.py"
    ).to_dict() | {"name": ""}


@pytest.mark.parametrize("alpha", configs_lib.CONDITIONAL_SWAP_ALPHAS)
def test_conditional_swap_sweep_argument(alpha):
    config = config_module(CONFIG_DIR / "cifar100/ablation/conditional_swap.py").get_config(str(alpha))
    config.lock()
    assert config.loss.teacher_transform == "conditional_swap"
    assert config.loss.teacher_transform_kwargs.alpha == alpha and config.loss.gamma == 150
    kwargs = dict(methods.objective_kwargs(methods.get_method(config.method), config.loss))
    assert kwargs["teacher_transform"].keywords == {"alpha": alpha}  # the transform and its α are valid
    named = config_module(CONFIG_DIR / "cifar100/ablation/conditional_swap.py").get_config(
        f"alpha={alpha},runlocal"
    )
    assert named.loss.teacher_transform_kwargs.alpha == alpha and named.model == "resnet_tiny"


def test_grid_objectives_run_on_tiny_logits(rng):
    """Each distinct (method, loss keywords) of the grid evaluates through the methods table."""
    seen = {}
    for path in GRID_FILES:
        config = load(path)
        method = methods.get_method(config.method)
        seen.setdefault((config.method, methods.objective_kwargs(method, config.loss)), (path, config))
    b, c = 8, 10
    y = jnp.asarray(rng.integers(0, c, b), jnp.int32)
    mask = jnp.asarray(np.arange(b) < b - 1)
    for (name, kwargs), (path, config) in seen.items():
        method = methods.get_method(name)
        views = 2 if method.two_views else 1
        logits = [jnp.asarray(rng.standard_normal((b, c)), jnp.float32) for _ in range(2 * views)]
        feats = [jnp.asarray(rng.standard_normal((b, 4)), jnp.float32) for _ in range(2 * views)]
        loss, terms = methods.apply(
            method,
            kwargs,
            logits[:views],
            logits[views:],
            y,
            mask,
            epoch=jnp.float32(1.0),
            student_swap=method.gamma_gated,
            student_embeddings=feats[:views],
            teacher_embeddings=feats[views:],
        )
        assert np.isfinite(float(loss)) and float(loss) > 0, path
        if name.startswith("rkd"):
            assert float(terms["rkd"]) > 0, path
    ls = dict(next(k for (n, k) in seen if n == "mlkd"))
    assert (ls["logit_standardization"], ls["kd_weight"], ls["temperatures"]) == (
        True,
        9.0,
        (2.0, 3.0, 5.0, 2.0, 6.0),
    )
