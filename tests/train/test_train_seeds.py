"""The seed axis: K seeds in one run equal K separate runs; several steps per dispatch equal one
step per call; resume, preemption, the corrupt-checkpoint fall-back and non-finite seeds with K = 2.

The reference for every comparison is the trainer's plain form: one compiled
:func:`sld_jax.train.step.train_step` per call on the host pipeline's batches, per seed.
"""

import dataclasses
import functools
import json
import logging
import os
import shutil
import signal
import threading

import jax
import ml_collections
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from sld_jax import configs_lib, models
from sld_jax.data import pipeline, sources
from sld_jax.errors import ConfigError
from sld_jax.train import loop, setup
from sld_jax.train import metrics as metrics_lib
from sld_jax.train.mesh import mesh_for
from sld_jax.train.state import create_train_state
from sld_jax.train.step import compile_train_step

# tests/conftest.py's XLA setting that test_one_seed_is_bit_identical_to_one_step_per_call undoes.
LEGACY_EMITTERS = "--xla_cpu_use_fusion_emitters=false"
SPE = 8  # train_tiny_config.STEPS_PER_EPOCH
EPOCHS = 4  # the session's tiny run
# 3 steps per dispatch up to step 11: stacks of 3, 3 and 2 (+1 inactive) in epoch 1, 3 in epoch 2.
SCAN_STEPS, STEPS_PER_DISPATCH = 11, 3


@pytest.fixture(scope="module")
def tiny_config(tiny_config_module, digits_data_dir):
    """``tiny_config(**fields)``: the session tiny run's config with fields replaced."""
    assert tiny_config_module.STEPS_PER_EPOCH == SPE

    def make(**fields):
        config = tiny_config_module.get_config(str(EPOCHS))
        config.dataset.data_dir = digits_data_dir
        for key, value in fields.items():
            config[key] = value
        return config

    return make


def params_of_seed(params, k):
    return jax.tree.map(lambda x: np.asarray(x)[k], jax.device_get(params))


def run_one_step_per_call(config, data_dir, seeds=(0, 1)):
    """``{seed: {steps: (params, batch_stats)}}`` after ``SCAN_STEPS`` steps and after ``config``'s
    epochs: one compiled train step per call on the host pipeline's batches (one compilation for
    every seed)."""
    mesh = mesh_for(config)
    built = setup.build(config, mesh)
    split = sources.load_in_memory("digits", "train", data_dir=data_dir, download=False)
    n = config.dataset.limit_train
    split = dataclasses.replace(split, images=split.images[:n], labels=split.labels[:n])
    step = compile_train_step(built.step_config(student_swap=False), mesh)
    init = models.get_model(config.model, num_classes=split.spec.num_classes)
    replicated = NamedSharding(mesh, P())
    out = {}
    for seed in seeds:
        variables = models.init_variables(init, jax.random.PRNGKey(seed), image_size=split.spec.image_size)
        state = jax.device_put(create_train_state(variables, built.tx), replicated)
        rng = jax.device_put(jax.random.PRNGKey(seed), replicated)
        out[seed] = {}
        for epoch in range(1, config.num_epochs + 1):
            for batch in pipeline.train_batches(
                split, global_batch_size=config.batch_size, seed=seed, epoch=epoch, mesh=mesh
            ):
                state, _ = step(state, None, batch, rng)
                if int(state.step) in (SCAN_STEPS, config.num_epochs * SPE):
                    out[seed][int(state.step)] = jax.device_get((state.params, state.batch_stats))
    return out


@pytest.fixture(scope="module")
def one_step_per_call(tiny_config, digits_data_dir):
    """:func:`run_one_step_per_call` for seeds 0 and 1 over the session tiny run's 4 epochs."""
    return run_one_step_per_call(tiny_config(), digits_data_dir)


def test_one_seed_is_bit_identical_to_one_step_per_call(tiny_config, digits_data_dir, tmp_path, monkeypatch):
    """K = 1 (the default: device-resident split, one step per dispatch) changes no bit.

    Bit-identity depends on how XLA fuses the two programs, so both sides are compiled here with
    XLA's default CPU fusion emitters, as users' programs are (the rest of the suite compiles with
    the legacy emitters, in half the time: tests/conftest.py).
    """
    if LEGACY_EMITTERS in os.environ.get("XLA_FLAGS", ""):
        monkeypatch.setattr(
            jax, "jit", functools.partial(jax.jit, compiler_options={"xla_cpu_use_fusion_emitters": True})
        )
    state = loop.run(tiny_config(), str(tmp_path / "run"))["state"]
    want_params, want_stats = run_one_step_per_call(tiny_config(), digits_data_dir, seeds=(0,))[0][
        EPOCHS * SPE
    ]
    for got, want in ((state.params, want_params), (state.batch_stats, want_stats)):
        got = params_of_seed(got, 0)
        jax.tree.map(np.testing.assert_array_equal, got, want)
    assert int(np.asarray(state.step)[0]) == EPOCHS * SPE


@pytest.fixture(scope="module")
def two_seeds(tiny_config, tmp_path_factory):
    """K = 2 (seeds 0 and 1) for the tiny run's 4 epochs (the split on the devices)."""
    workdir = str(tmp_path_factory.mktemp("two_seeds") / "run")
    return loop.run(tiny_config(num_seeds=2), workdir)


def assert_seed_equals(state, k, want, *, rtol, atol):
    for got, expected in zip((state.params, state.batch_stats), want):
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=rtol, atol=atol),
            params_of_seed(got, k),
            expected,
        )


def test_two_seeds_in_one_run_equal_two_runs(two_seeds, one_step_per_call):
    result = two_seeds
    for k in (0, 1):
        assert_seed_equals(result["state"], k, one_step_per_call[k][EPOCHS * SPE], rtol=1e-6, atol=1e-7)
    assert [r["seed"] for r in result["seeds"]] == [0, 1]
    assert all(len(r["history"]) == EPOCHS for r in result["seeds"])
    summary = result["summary"]["best_top1"]
    assert summary["n"] == 2 and summary["min"] <= summary["mean"] <= summary["max"]
    np.testing.assert_allclose(
        summary["mean"], np.mean([r["best"]["test_top1"] for r in result["seeds"]]), rtol=1e-12
    )
    lines = [json.loads(x) for x in open(os.path.join(result["workdir"], "metrics.jsonl"))]
    assert sorted((x["epoch"], x["seed"]) for x in lines) == [
        (e, s) for e in range(1, EPOCHS + 1) for s in (0, 1)
    ]
    text = open(os.path.join(result["workdir"], "summary.md")).read()
    assert "2 seeds (0, 1)" in text and "±" in text and "## Seed 1" in text


def test_several_steps_per_dispatch_equal_one_step_per_call(tiny_config, tmp_path, one_step_per_call):
    """A scan over stacks of 3 steps (a partial stack at the epoch's end, across an epoch
    boundary) of batches stacked on the host gives the parameters of one step per call, to float
    rounding."""
    config = tiny_config(
        num_seeds=2, steps_per_dispatch=STEPS_PER_DISPATCH, max_steps=SCAN_STEPS, data_placement="host"
    )
    result = loop.run(config, str(tmp_path / "scan"))
    assert int(np.asarray(result["state"].step)[0]) == SCAN_STEPS
    for k in (0, 1):
        assert_seed_equals(result["state"], k, one_step_per_call[k][SCAN_STEPS], rtol=1e-5, atol=1e-6)


def test_sld_eval_reports_every_seed_and_their_mean(two_seeds):
    config = ml_collections.ConfigDict(json.load(open(os.path.join(two_seeds["workdir"], "config.json"))))
    result = loop.evaluate(config, two_seeds["workdir"], which="last")
    last = [r["last"]["test_top1"] for r in two_seeds["seeds"]]
    np.testing.assert_allclose([s["top1"] for s in result["seeds"]], last, rtol=1e-6)
    np.testing.assert_allclose(result["top1"], np.mean(last), rtol=1e-6)
    assert result["top1_summary"]["n"] == 2


def test_two_seeds_resume_after_preemption_and_a_corrupt_checkpoint(
    tiny_config, digits_data_dir, tmp_path, monkeypatch, one_step_per_call, collect_orbax_leftovers
):
    """SIGTERM inside epoch 2 (saved at step 12), the newest checkpoint then corrupted: the resume
    falls back to epoch 1's checkpoint and finishes with the parameters of two separate runs.

    The signal is real where the test runs in the main thread (the trainer's handler catches it);
    elsewhere no handler can be installed and the test sets the flag the handler would set."""
    workdir = str(tmp_path / "run")
    config = tiny_config(num_seeds=2)
    preemptions = []
    enter = loop._Preemption.__enter__
    monkeypatch.setattr(loop._Preemption, "__enter__", lambda self: preemptions.append(self) or enter(self))
    update = metrics_lib.Progress.update

    def update_then_preempt(self, *args, **kwargs):
        update(self, *args, **kwargs)
        if self.epoch == 2 and self._done == SPE // 2:
            if threading.current_thread() is threading.main_thread():
                signal.raise_signal(signal.SIGTERM)
            else:
                preemptions[-1].requested = True

    monkeypatch.setattr(metrics_lib.Progress, "update", update_then_preempt)
    first = loop.run(config, workdir)
    assert first["preempted"] and int(np.asarray(first["state"].step)[0]) == SPE + SPE // 2
    monkeypatch.undo()

    newest = os.path.join(workdir, "checkpoints", str(SPE + SPE // 2))
    for root, _, files in os.walk(newest):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"not a checkpoint")
    with pytest.warns(RuntimeWarning, match="unreadable"):
        resumed = loop.run(config, workdir)
    assert not resumed["preempted"]
    for k in (0, 1):
        assert [h["epoch"] for h in resumed["seeds"][k]["history"]] == list(range(1, EPOCHS + 1))
        assert_seed_equals(resumed["state"], k, one_step_per_call[k][EPOCHS * SPE], rtol=1e-6, atol=1e-7)


def _with_nan_seed(monkeypatch, index):
    """Makes ``setup.build`` start seed ``index`` from NaN parameters."""
    build = setup.build

    def build_with_nan(*args, **kwargs):
        built = build(*args, **kwargs)
        built.state = built.state.replace(
            params=jax.tree.map(lambda x: x.at[index].set(np.nan), built.state.params)
        )
        return built

    monkeypatch.setattr(setup, "build", build_with_nan)


def test_a_nonfinite_seed_is_named_and_the_others_train_on(
    tiny_config, digits_data_dir, tmp_path, monkeypatch, caplog
):
    _with_nan_seed(monkeypatch, 1)
    config = tiny_config(num_seeds=2, on_nonfinite="skip", max_steps=2)
    with caplog.at_level(logging.WARNING, logger="sld_jax"):
        result = loop.run(config, str(tmp_path / "skip"))
    assert "step 1 (seed 1)" in caplog.text and "(seed 0)" not in caplog.text
    params = jax.device_get(result["state"].params)
    assert all(np.isfinite(x[0]).all() for x in jax.tree.leaves(params))
    assert all(np.isnan(x[1]).all() for x in jax.tree.leaves(params))  # frozen, never updated

    config.on_nonfinite = "stop"
    with pytest.raises(loop.NonFiniteLossError, match=r"step 1 \(seed 1\)"):
        loop.run(config, str(tmp_path / "stop"))


def test_a_step_that_does_not_fit_in_device_memory_is_refused_before_training(
    tiny_config, digits_data_dir, tmp_path, monkeypatch
):
    monkeypatch.setattr(setup, "device_memory_limit", lambda mesh: 1024)
    config = tiny_config(num_seeds=2, max_steps=1)
    with pytest.raises(ConfigError, match=r"num_seeds=2 .* needs about .* GiB per device"):
        loop.run(config, str(tmp_path / "run"))
    assert not os.path.isdir(os.path.join(tmp_path, "run", "checkpoints", "1"))


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("num_seeds", 0, "num_seeds=0 is out of range"),
        ("num_seeds", "2", "num_seeds='2' is out of range"),
        ("num_seeds", 1.5, "num_seeds=1.5 is out of range"),
        ("steps_per_dispatch", 0, "steps_per_dispatch=0 is out of range"),
        ("seed_axis", "pmap", "seed_axis must be"),
        ("data_placement", "disk", "data_placement must be"),
    ],
)
def test_bad_seed_fields_are_refused_before_any_work(field, value, message):
    config = configs_lib.digits_config("vanilla", None, "resnet_tiny").to_dict()
    config[field] = value  # as a config file could build it
    with pytest.raises(ValueError, match=message):
        setup.validate(ml_collections.ConfigDict(config))


def test_seeds_sharing_data_see_the_first_seeds_batches(tiny_config, tmp_path, two_seeds):
    """With ``seed_axis_shares_data`` seed 0 is exactly seed 0 of independent seeds; seed 1 differs
    from its independent self (same init, other data)."""
    shared = loop.run(tiny_config(num_seeds=2, seed_axis_shares_data=True), str(tmp_path / "shared"))
    a, b = jax.device_get(shared["state"].params), jax.device_get(two_seeds["state"].params)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x[0], y[0], rtol=1e-6, atol=1e-7), a, b)
    assert any(not np.allclose(x[1], y[1]) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_a_seed_run_can_be_copied_and_resumed_by_another_dispatch_size(two_seeds, tmp_path):
    """``steps_per_dispatch`` and ``data_placement`` may change on resume: a finished K = 2 run
    resumes with other values and has nothing left to do."""
    workdir = str(tmp_path / "copy")
    shutil.copytree(two_seeds["workdir"], workdir)
    config = ml_collections.ConfigDict(json.load(open(os.path.join(workdir, "config.json"))))
    config.steps_per_dispatch, config.data_placement = 4, "host"
    result = loop.run(config, workdir)
    assert [len(r["history"]) for r in result["seeds"]] == [EPOCHS, EPOCHS]
