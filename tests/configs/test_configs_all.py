"""Every config file parses, locks, names valid models/methods, and carries the reference values."""

import importlib.util
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

from sld_jax import configs_lib, models
from sld_jax.train import methods

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[2] / "configs"
CONFIG_FILES = sorted(CONFIG_DIR.rglob("*.py"))


def config_module(path):
    spec = importlib.util.spec_from_file_location(f"cfg_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load(path):
    return config_module(path).get_config()


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


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_config_parses_and_names_valid_pieces(path):
    config = load(path)
    config.lock()
    for run in _run_configs(config):
        method = methods.get_method(run.method)
        methods.objective_kwargs(method, run.loss)
        models.get_model(run.model, num_classes=10)
        if method.uses_teacher:
            models.get_model(run.teacher.arch, num_classes=10)
        assert run.optim.lr > 0 and run.num_epochs > 0 and run.batch_size > 0
        with pytest.raises(AttributeError, match="Did you mean"):
            run.optim.lrr  # noqa: B018  (a mistyped key names the nearest valid one)


def test_reference_hyper_parameters():
    c = load(CONFIG_DIR / "cifar100/sld/resnet32x4_resnet8x4.py")
    assert (c.optim.lr, c.batch_size, c.num_epochs, tuple(c.optim.stages)) == (0.025, 64, 240, (150, 180, 210))
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


@pytest.mark.parametrize("path", GRID_FILES, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_grid_docstring_gives_paper_row_and_own_command(path):
    doc = config_module(path).__doc__
    assert "Paper:" in doc and f"sld-train --config configs/{path.relative_to(CONFIG_DIR)}" in doc


def test_grid_reference_values():
    rkd = load(CONFIG_DIR / "cifar100/rkd/resnet32x4_resnet8x4.py")
    assert (rkd.method, rkd.loss.ce_weight, rkd.optim.lr, rkd.num_epochs) == ("rkd", 1.0, 0.05, 240)
    assert (rkd.loss.rkd.rkd_weight, rkd.loss.rkd.distance_weight, rkd.loss.rkd.angle_weight) == (1.0, 25.0, 50.0)
    both = load(CONFIG_DIR / "cifar100/rkd_sld/resnet32x4_resnet8x4.py")
    assert (both.loss.ce_weight, both.loss.kd_weight, both.loss.gamma, both.optim.lr) == (0.1, 0.9, 150, 0.025)
    assert both.loss.teacher_transform == "swap"
    for teacher, student in configs_lib.LS_MLKD_PAPER:
        ls = load(CONFIG_DIR / f"cifar100/ls_mlkd/{teacher}_{student}.py")
        mlkd = load(CONFIG_DIR / f"cifar100/mlkd/{teacher}_{student}.py")
        assert ls.method == "mlkd" and ls.loss.mlkd.logit_standardization
        assert tuple(ls.loss.mlkd.temperatures) == (2.0, 3.0, 5.0, 2.0, 6.0) and ls.loss.mlkd.kd_weight == 9.0
        assert (ls.optim.lr, ls.num_epochs, ls.loss.ce_weight) == (mlkd.optim.lr, mlkd.num_epochs, mlkd.loss.ce_weight)
        ls_sld = load(CONFIG_DIR / f"cifar100/ls_mlkd_sld/{teacher}_{student}.py")
        assert ls_sld.method == "mlkd+sld" and ls_sld.loss.teacher_transform == "swap"
        assert ls_sld.loss.mlkd.to_dict() == ls.loss.mlkd.to_dict()
    rungs = {step: load(CONFIG_DIR / f"cifar100/ablation/{step}.py") for step in configs_lib.ABLATION_LADDER}
    assert {s: (c.method, c.loss.teacher_transform, c.loss.gamma) for s, c in rungs.items()} == {
        "kd_pa": ("sld", "none", 240), "kd_pa_lts": ("sld", "swap", 240),
        "kd_pa_lts_lss_nogamma": ("sld", "swap", 0), "sld": ("sld", "swap", 150)}
    assert all(c.loss.gamma >= c.num_epochs for s, c in rungs.items() if s in ("kd_pa", "kd_pa_lts"))
    assert rungs["sld"].to_dict() | {"name": ""} == load(
        CONFIG_DIR / "cifar100/sld/resnet32x4_resnet8x4.py").to_dict() | {"name": ""}


@pytest.mark.parametrize("alpha", configs_lib.CONDITIONAL_SWAP_ALPHAS)
def test_conditional_swap_sweep_argument(alpha):
    config = config_module(CONFIG_DIR / "cifar100/ablation/conditional_swap.py").get_config(str(alpha))
    config.lock()
    assert config.loss.teacher_transform == "conditional_swap"
    assert config.loss.teacher_transform_kwargs.alpha == alpha and config.loss.gamma == 150
    kwargs = dict(methods.objective_kwargs(methods.get_method(config.method), config.loss))
    assert kwargs["teacher_transform"].keywords == {"alpha": alpha}  # the transform and its α are valid


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
            method, kwargs, logits[:views], logits[views:], y, mask, epoch=jnp.float32(1.0),
            student_swap=method.student_swap_gated, pseudo_teacher=methods.pseudo_teacher_kwargs(config.loss),
            student_embeddings=feats[:views], teacher_embeddings=feats[views:])
        assert np.isfinite(float(loss)) and float(loss) > 0, path
        if name.startswith("rkd"):
            assert float(terms["rkd"]) > 0, path
    ls = dict(next(k for (n, k) in seen if n == "mlkd"))
    assert (ls["logit_standardization"], ls["kd_weight"], ls["temperatures"]) == (True, 9.0, (2.0, 3.0, 5.0, 2.0, 6.0))
