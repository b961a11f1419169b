"""The seed axis: K seeds in one run equal K separate runs; several steps per dispatch equal one
step per call; resume, preemption, the corrupt-checkpoint fall-back and non-finite seeds with K = 2.

The reference for every comparison is the trainer's plain form: one compiled
:func:`sld_jax.train.step.train_step` per call on the host pipeline's batches, per seed.

What each comparison claims, and why it holds on any machine (``divergence`` is the largest
difference of a tensor relative to its largest value, tests/conftest.py):

- K seeds in one program, a scan over steps, seeds sharing data and the default one-seed path are
  each a *different* compiled program from the reference (another fusion, another order of a sum),
  and XLA promises no bit-identity between two programs. In float32 the last-bit differences grow
  over this high-LR run: measured on the 2-core EPYC development machine, one seed's K = 2
  parameters left the reference by 2e-8 after 2 steps, 3e-7 after 4, 3e-4 after 8 and 1e-1 after
  16 (a ReLU or max-pool decision flipped); with XLA limited to AVX the scan's left it by 2e-2
  after 11 steps. So:
- **float64 over the whole run** (``compute_dtype="float64"`` under ``jax.enable_x64``): each
  program equals the reference to :data:`TOL_FLOAT64` over all :data:`EPOCHS_FLOAT64` epochs
  (measured: <= 2.2e-15 with the suite's compile settings and with XLA's defaults, each also with
  XLA limited to AVX and to SSE4.2 code; margin > 1e5);
- **float32 over a short horizon**: within :data:`TOL_FLOAT32` of the float64 reference after
  :data:`HORIZON_FLOAT32` steps (measured in the same six settings: <= 2.8e-6; margin > 300);
- a real defect fails both by far: the parameters of a skipped step differ by >= 3e-2 at any step
  measured (0.48 after 4 steps), a seed trained on another seed's batches by >= 2.4 after 4 steps
  (:data:`DEFECT`, which the seeds-sharing-data test also asserts for its seed 1: 2.8).
- **bit-identity** only for a resume: the same compiled program (the resumed run compiles nothing,
  asserted) continued from bit-exact restored arrays gives the uninterrupted run's bits.
"""

import dataclasses
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
from sld_jax.train import evaluate, hardware, loop, preemption, setup, validation
from sld_jax.train import metrics as metrics_lib
from sld_jax.train.dispatch import compile_train_step
from sld_jax.train.mesh import mesh_for
from sld_jax.train.state import create_train_state

SPE = 8  # train_tiny_config.STEPS_PER_EPOCH
EPOCHS = 4  # the session's tiny run
# The float64 runs: 2 epochs (16 steps, across an epoch boundary; float64 steps are slow on a CPU).
EPOCHS_FLOAT64 = 2
RUN_STEPS_FLOAT64 = EPOCHS_FLOAT64 * SPE
STEPS_PER_DISPATCH = 3
# The equality bounds of the module docstring.
TOL_FLOAT64 = 1e-9
HORIZON_FLOAT32, TOL_FLOAT32 = 4, 1e-3
DEFECT = 1e-2


@pytest.fixture(scope="session")
def tiny_config(tiny_config_module, digits_data_dir):
    """``tiny_config(**fields)``: the session tiny run's config with fields replaced."""
    assert tiny_config_module.STEPS_PER_EPOCH == SPE

    def make(epochs=EPOCHS, **fields):
        config = tiny_config_module.get_config(str(epochs))
        config.dataset.data_dir = digits_data_dir
        for key, value in fields.items():
            config[key] = value
        return config

    return make


def of_seed(state, k):
    """Seed ``k``'s ``(params, batch_stats)`` of a K-seed state, on the host."""
    return jax.tree.map(lambda x: np.asarray(x)[k], jax.device_get((state.params, state.batch_stats)))


def run_one_step_per_call(config, data_dir, *, at_steps, seeds=(0, 1)):
    """``{seed: {step: (params, batch_stats)}}`` after each of ``at_steps``: one compiled train step
    per call on the host pipeline's batches (one compilation for every seed), in the config's
    compute dtype, stopping after the last of ``at_steps``."""
    mesh = mesh_for(config)
    built = setup.build(config, mesh)
    split = sources.load_in_memory("digits", "train", data_dir=data_dir, download=False)
    n = config.dataset.limit_train
    split = dataclasses.replace(split, images=split.images[:n], labels=split.labels[:n])
    step = compile_train_step(built.step_config(student_swap=False), mesh)
    init = models.get_model(config.model, num_classes=split.spec.num_classes)
    dtype = hardware.compute_dtype(config.compute_dtype)
    replicated = NamedSharding(mesh, P())
    out = {}
    for seed in seeds:
        variables = models.init_variables(init, jax.random.PRNGKey(seed), image_size=split.spec.image_size)
        variables = hardware.variables_in_compute_dtype(variables, dtype)
        state = jax.device_put(create_train_state(variables, built.tx), replicated)
        rng = jax.device_put(jax.random.PRNGKey(seed), replicated)
        out[seed] = {}
        for epoch in range(1, config.num_epochs + 1):
            for batch in pipeline.train_batches(
                split, global_batch_size=config.batch_size, seed=seed, epoch=epoch, mesh=mesh
            ):
                if len(out[seed]) == len(at_steps):
                    break
                state, _ = step(state, None, batch, rng)
                if int(state.step) in at_steps:
                    out[seed][int(state.step)] = jax.device_get((state.params, state.batch_stats))
    return out


def assert_within(divergence, got_state, want, *, seeds, bound, what):
    """Every seed of ``got_state`` (K-seed) is within ``bound`` of ``want[seed]``."""
    for k, seed in enumerate(seeds):
        measured = divergence(of_seed(got_state, k), want[seed])
        assert measured <= bound, f"{what}: seed {seed} differs by {measured:.3g} > {bound:g}"


# --- float64 over the whole run ------------------------------------------------------------------


@pytest.fixture(scope="session")
def float64_reference(tiny_config, digits_data_dir):
    """:func:`run_one_step_per_call` in float64 for seeds 0 and 1, after :data:`HORIZON_FLOAT32`
    steps (the float32 tests' reference) and after :data:`EPOCHS_FLOAT64` epochs."""
    config = tiny_config(epochs=EPOCHS_FLOAT64, compute_dtype="float64")
    with jax.enable_x64(True):
        return run_one_step_per_call(config, digits_data_dir, at_steps=(HORIZON_FLOAT32, RUN_STEPS_FLOAT64))


@pytest.mark.cross_program
@pytest.mark.parametrize(
    "fields",
    [
        {},  # K = 1, the default: the split on the devices, one step per dispatch
        # K = 2 unrolled seeds in a scan over stacks of 3 steps of batches stacked on the host:
        # stacks of 3, 3 and 2 (+1 inactive step) in every epoch.
        dict(num_seeds=2, steps_per_dispatch=STEPS_PER_DISPATCH, data_placement="host"),
    ],
    ids=["one_seed", "two_seeds_scan"],
)
def test_a_run_equals_one_step_per_call_in_float64(
    fields, tiny_config, tmp_path, float64_reference, divergence
):
    """The seed axis and the scan over steps equal one step per call per seed to
    :data:`TOL_FLOAT64` over the whole run (:data:`EPOCHS_FLOAT64` epochs)."""
    config = tiny_config(epochs=EPOCHS_FLOAT64, compute_dtype="float64", **fields)
    with jax.enable_x64(True):
        result = loop.run(config, str(tmp_path / "run"))
    assert {x.dtype for x in jax.tree.leaves(result["state"].params)} == {np.dtype("float64")}
    seeds = tuple(range(fields.get("num_seeds", 1)))
    assert [int(s) for s in np.asarray(result["state"].step)] == [RUN_STEPS_FLOAT64] * len(seeds)
    want = {seed: float64_reference[seed][RUN_STEPS_FLOAT64] for seed in seeds}
    assert_within(divergence, result["state"], want, seeds=seeds, bound=TOL_FLOAT64, what=str(fields))


def test_float64_needs_64_bit_jax(tiny_config):
    with jax.enable_x64(False), pytest.raises(ValueError, match="JAX_ENABLE_X64=1"):
        validation.validate(tiny_config(compute_dtype="float64"))


# --- float32 over a short horizon ----------------------------------------------------------------


@pytest.fixture(scope="session")
def two_seeds_short(tiny_config, tmp_path_factory):
    """K = 2 in float32 stopped after :data:`HORIZON_FLOAT32` steps (the program of ``two_seeds``)."""
    workdir = str(tmp_path_factory.mktemp("two_seeds_short") / "run")
    return loop.run(tiny_config(num_seeds=2, max_steps=HORIZON_FLOAT32), workdir)


@pytest.mark.cross_program
def test_two_seeds_and_a_scan_equal_one_step_per_call_in_float32_over_4_steps(
    tiny_config, tmp_path, two_seeds_short, float64_reference, divergence
):
    """The float32 programs users run: K = 2 and a scan of 3 steps (a full and a partial stack)
    stay within :data:`TOL_FLOAT32` of one step per call (in float64: what float32 rounding leaves
    of the exact trajectory) over :data:`HORIZON_FLOAT32` steps."""
    want = {seed: steps[HORIZON_FLOAT32] for seed, steps in float64_reference.items()}
    assert_within(divergence, two_seeds_short["state"], want, seeds=(0, 1), bound=TOL_FLOAT32, what="K = 2")
    config = tiny_config(
        num_seeds=2, steps_per_dispatch=STEPS_PER_DISPATCH, max_steps=HORIZON_FLOAT32, data_placement="host"
    )
    scan = loop.run(config, str(tmp_path / "scan"))
    assert int(np.asarray(scan["state"].step)[0]) == HORIZON_FLOAT32
    assert_within(divergence, scan["state"], want, seeds=(0, 1), bound=TOL_FLOAT32, what="scan")


# --- the K = 2 run's outputs, its resume and its evaluation (float32) ----------------------------


@pytest.fixture(scope="module")
def two_seeds(tiny_config, tmp_path_factory):
    """K = 2 (seeds 0 and 1) for the tiny run's 4 epochs (the split on the devices)."""
    workdir = str(tmp_path_factory.mktemp("two_seeds") / "run")
    return loop.run(tiny_config(num_seeds=2), workdir)


def test_two_seeds_report_each_seed_and_their_mean(two_seeds):
    result = two_seeds
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


def test_sld_eval_reports_every_seed_and_their_mean(two_seeds):
    config = ml_collections.ConfigDict(json.load(open(os.path.join(two_seeds["workdir"], "config.json"))))
    result = evaluate.evaluate(config, two_seeds["workdir"], which="last")
    last = [r["last"]["test_top1"] for r in two_seeds["seeds"]]
    np.testing.assert_allclose([s["top1"] for s in result["seeds"]], last, rtol=1e-6)
    np.testing.assert_allclose(result["top1"], np.mean(last), rtol=1e-6)
    assert result["top1_summary"]["n"] == 2


def test_two_seeds_resume_after_preemption_and_a_corrupt_checkpoint(
    tiny_config, digits_data_dir, tmp_path, monkeypatch, two_seeds, collect_orbax_leftovers
):
    """SIGTERM inside epoch 2 (saved at step 12), the newest checkpoint then corrupted: the resume
    falls back to epoch 1's checkpoint and finishes with the uninterrupted K = 2 run's bits (the
    same compiled program, shared in this process, continued from bit-exact restored arrays).

    The signal is real where the test runs in the main thread (the trainer's handler catches it);
    elsewhere no handler can be installed and the test sets the flag the handler would set."""
    workdir = str(tmp_path / "run")
    config = tiny_config(num_seeds=2)
    preemptions = []
    enter = preemption.Preemption.__enter__
    monkeypatch.setattr(
        preemption.Preemption, "__enter__", lambda self: preemptions.append(self) or enter(self)
    )
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
    assert resumed["compiled_variants"] == {False: 0}  # two_seeds' program, not a new one
    for k in (0, 1):
        assert [h["epoch"] for h in resumed["seeds"][k]["history"]] == list(range(1, EPOCHS + 1))
        jax.tree.map(
            np.testing.assert_array_equal, of_seed(resumed["state"], k), of_seed(two_seeds["state"], k)
        )


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
    monkeypatch.setattr(hardware, "device_memory_limit", lambda mesh: 1024)
    # The states alone would not fit either: that earlier check (tests/train/test_train_faults.py)
    # is off here, so that the compiled step's own check is the one that refuses.
    monkeypatch.setattr(hardware, "check_seeds_fit", lambda *args: None)
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
        ("seed_axis", "pmap", "seed_axis='pmap' is not one of auto/vmap/unroll/map"),
        ("data_placement", "disk", "data_placement='disk' is not one of auto/device/host"),
    ],
)
def test_bad_seed_fields_are_refused_before_any_work(field, value, message):
    config = configs_lib.digits_config("vanilla", None, "resnet_tiny").to_dict()
    config[field] = value  # as a config file could build it
    with pytest.raises(ValueError, match=message):
        validation.validate(ml_collections.ConfigDict(config))


@pytest.mark.cross_program
def test_seeds_sharing_data_see_the_first_seeds_batches(tiny_config, tmp_path, two_seeds_short, divergence):
    """With ``seed_axis_shares_data`` seed 0 is seed 0 of independent seeds (another program: within
    :data:`TOL_FLOAT32` over :data:`HORIZON_FLOAT32` steps); seed 1 differs from its independent
    self (same init, other data) by more than :data:`DEFECT` (measured: 0.2 and more)."""
    config = tiny_config(num_seeds=2, seed_axis_shares_data=True, max_steps=HORIZON_FLOAT32)
    shared = loop.run(config, str(tmp_path / "shared"))["state"]
    independent = two_seeds_short["state"]
    assert divergence(of_seed(shared, 0), of_seed(independent, 0)) <= TOL_FLOAT32
    assert divergence(of_seed(shared, 1), of_seed(independent, 1)) > DEFECT


def test_a_seed_run_can_be_copied_and_resumed_by_another_dispatch_size(two_seeds, tmp_path):
    """``steps_per_dispatch`` and ``data_placement`` may change on resume: a finished K = 2 run
    resumes with other values and has nothing left to do."""
    workdir = str(tmp_path / "copy")
    shutil.copytree(two_seeds["workdir"], workdir)
    config = ml_collections.ConfigDict(json.load(open(os.path.join(workdir, "config.json"))))
    config.steps_per_dispatch, config.data_placement = 4, "host"
    result = loop.run(config, workdir)
    assert [len(r["history"]) for r in result["seeds"]] == [EPOCHS, EPOCHS]
