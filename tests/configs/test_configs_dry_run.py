"""One config per method dry-runs through the trainer's set-up and an abstract train step.

Each method's CIFAR-100 config is loaded with ``runlocal``, built by ``sld_jax.train.setup.build``
(on synthetic data and a freshly initialised tiny teacher, as ``python -m sld_jax.bench step`` builds
a run) and its shard_mapped train step is traced with ``jax.eval_shape`` for every value of the γ
gate: the whole objective wiring (views, teacher, features, the method's keyword arguments, the
pseudo-teacher term, the diagnostics and the update) is checked in seconds, without compiling.
Compiled steps run elsewhere: tests/configs/test_configs_smoke.py (dkd, rkd, rkd+sld) and
tests/train (vanilla, kd, sld).
"""

import importlib.util
import pathlib

import jax
import numpy as np
import pytest

from sld_jax import losses, models
from sld_jax.data import pipeline, sources
from sld_jax.train import mesh as mesh_lib
from sld_jax.train import methods, setup, validation
from sld_jax.train.data_io import RunData

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[2] / "configs"
TEACHER, STUDENT = "resnet32x4", "resnet8x4"
SPEC = sources.get_spec("cifar100")
BATCH, DEVICES = 8, 2
# Every step reports these (sums over the global batch) besides the objective's own terms.
STEP_METRICS = {"loss", "correct", "count", "finite", "student_swap_fraction"}
TEACHER_METRICS = {"teacher_swap_fraction", "teacher_student_agreement"}


def config_path(method: str) -> pathlib.Path:
    if method == "vanilla":
        return CONFIG_DIR / "cifar100" / "vanilla" / f"{STUDENT}.py"
    return CONFIG_DIR / "cifar100" / method.replace("+", "_") / f"{TEACHER}_{STUDENT}.py"


def load_runlocal(method: str):
    path = config_path(method)
    spec = importlib.util.spec_from_file_location(f"cfg_{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config("runlocal")


@pytest.fixture(scope="module")
def mesh():
    return mesh_lib.make_mesh(jax.local_devices()[:DEVICES])


@pytest.fixture(scope="module")
def teacher_variables():
    """The runlocal teacher (resnet_tiny, 100 classes), initialised once for every method."""
    teacher = models.get_model("resnet_tiny", num_classes=SPEC.num_classes)
    return models.init_variables(teacher, jax.random.PRNGKey(1), image_size=SPEC.image_size)


@pytest.fixture(scope="module")
def batch(mesh):
    rng = np.random.default_rng(0)
    host = {
        "image": rng.integers(0, 256, (BATCH, 32, 32, 3), dtype=np.uint8),
        "label": rng.integers(0, SPEC.num_classes, BATCH).astype(np.int32),
        "mask": np.arange(BATCH) < BATCH - 1,
        "index": np.arange(BATCH, dtype=np.int32),
    }
    return pipeline.to_global(host, mesh, BATCH)


def test_every_method_has_a_dry_run_config():
    for method in methods.METHODS:
        config = load_runlocal(method)
        assert config.method == method and config.model == "resnet_tiny", method


@pytest.mark.parametrize("method", sorted(methods.METHODS))
def test_config_builds_and_traces_its_train_steps(method, mesh, teacher_variables, batch):
    config = load_runlocal(method)
    config.num_devices = DEVICES
    method_row = methods.get_method(method)
    if method_row.uses_teacher:
        config.teacher.checkpoint = "in-memory"  # the teacher's variables are handed to build
    validation.validate(config)
    data = RunData(
        spec=SPEC,
        num_train=config.dataset.limit_train,
        steps_per_epoch=pipeline.steps_per_epoch(config.dataset.limit_train, config.batch_size),
        host_crops=False,
        train_batches=None,
        eval_batches=None,
    )
    built = setup.build(
        config, mesh, data=data, teacher_variables=teacher_variables if method_row.uses_teacher else None
    )
    assert (built.teacher is None) == (not method_row.uses_teacher)
    feed = jax.tree.map(lambda x: x[None, None], batch)  # one step of one seed
    gates = (False, True) if method_row.gamma_gated else (False,)
    for student_swap in gates:
        step = built.dispatch(student_swap=student_swap)
        new_state, metrics = jax.eval_shape(
            step, built.state, built.teacher_variables, feed, built.split, built.rngs, built.active(1)
        )
        shapes = jax.tree.map(lambda x: (x.shape, x.dtype), built.state)
        assert jax.tree.map(lambda x: (x.shape, x.dtype), new_state) == shapes, (method, student_swap)
        assert all(m.shape == (1, 1) and m.dtype == np.float32 for m in metrics.values()), metrics
        expected = STEP_METRICS | (TEACHER_METRICS if method_row.uses_teacher else set())
        if method_row.uses_features:
            expected |= {"rkd"}
        plus_sld = method_row.objective in (losses.dkd_sld_objective, losses.mlkd_sld_objective)
        if plus_sld and student_swap:
            expected |= {"pseudo_teacher"}
        assert expected <= set(metrics), (method, student_swap, sorted(metrics))
        if plus_sld and not student_swap:
            assert "pseudo_teacher" not in metrics
