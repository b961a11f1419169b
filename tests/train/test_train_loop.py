"""End-to-end trainer tests on the embedded digits set with a tiny model (CPU, seconds each)."""

import json
import os
import types

import jax
import numpy as np
import pytest

from sld_jax import configs_lib, models
from sld_jax.train import loop, setup
from sld_jax.train.mesh import mesh_for
from sld_jax.train.teacher import TeacherMismatchError


def tiny(method, *, data_dir, teacher=None, epochs=2, limit=128, **overrides):
    """A digits config shrunk to a few steps: resnet_tiny, 128 examples, batch 32."""
    c = configs_lib.digits_config(
        method, "resnet_tiny" if method != "vanilla" else None, "resnet_tiny", num_epochs=epochs
    )
    c.dataset.data_dir = data_dir
    c.dataset.limit_train = limit
    c.dataset.limit_test = 64
    c.batch_size = 32
    c.eval_batch_size = 64
    c.num_devices = 2
    c.loss.gamma = 1  # epoch 2 switches the student swap on
    c.checkpoint_every_epochs = 1
    if teacher is not None:
        c.teacher.checkpoint = teacher
    for key, value in overrides.items():
        node = c
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c


def params_of(result):
    return jax.device_get(result["state"].params)


def assert_trees_equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.fixture(scope="module")
def teacher_run(tiny_run):
    """The session's tiny vanilla run (resnet_tiny, 4 epochs of 8 steps), used as the teacher."""
    return tiny_run["workdir"], tiny_run


def test_vanilla_run_learns_and_writes_outputs(teacher_run):
    workdir, result = teacher_run
    history = result["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["test_count"] == 64  # every test example once, padding excluded
    assert result["best"]["test_top1"] == max(h["test_top1"] for h in history)
    for name in ("config.json", "metrics.jsonl", "summary.md", "accuracy.png"):
        assert os.path.exists(os.path.join(workdir, name)), name
    assert os.listdir(os.path.join(workdir, "tensorboard"))
    lines = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [line["epoch"] for line in lines] == [1, 2, 3, 4] and "test_top1" in lines[0]
    assert result["compiled_variants"] == {False: 1}  # one program compiled for the 4 epochs


def test_sld_resume_is_bit_identical_and_compiles_two_variants(teacher_run, digits_data_dir, tmp_path):
    """Bit-identity: the resumed run continues with the same compiled programs (shared in this
    process) from bit-exact restored arrays."""
    teacher_dir, _ = teacher_run
    full = loop.run(tiny("sld", data_dir=digits_data_dir, teacher=teacher_dir), str(tmp_path / "full"))
    # exactly two step variants (γ gate off, then on), each compiled once: no retrace per epoch
    assert full["compiled_variants"] == {False: 1, True: 1}
    assert full["history"][0]["teacher_swap_fraction"] >= 0.0
    assert "teacher_student_agreement" in full["history"][0]

    stopped = loop.run(
        tiny("sld", data_dir=digits_data_dir, teacher=teacher_dir, max_steps=3), str(tmp_path / "resumed")
    )
    assert int(stopped["state"].step[0]) == 3 and not stopped["history"]
    resumed = loop.run(tiny("sld", data_dir=digits_data_dir, teacher=teacher_dir), str(tmp_path / "resumed"))
    assert int(resumed["state"].step[0]) == int(full["state"].step[0]) == 8
    assert_trees_equal(params_of(resumed), params_of(full))
    assert_trees_equal(
        jax.device_get(resumed["state"].batch_stats), jax.device_get(full["state"].batch_stats)
    )
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    np.testing.assert_allclose(
        resumed["history"][0]["train_loss"], full["history"][0]["train_loss"], rtol=1e-6
    )


@pytest.mark.cross_program
def test_one_and_four_devices_give_the_same_parameters(digits_data_dir, tmp_path, divergence):
    """1 and 4 devices (synchronised BatchNorm) are two programs that sum in another order: float32
    equality over 3 steps to 1e-3 of each tensor's scale (measured: <= 1.2e-6 with the suite's and
    XLA's default settings, AVX and SSE4.2 code; a skipped step or another seed's data moves the
    parameters by >= 0.48 after 4 steps: tests/train/test_train_seeds.py)."""
    results = []
    for n in (1, 4):
        c = tiny("vanilla", data_dir=digits_data_dir, max_steps=3, sync_batchnorm=True, num_devices=n)
        results.append(loop.run(c, str(tmp_path / f"dev{n}")))
    assert divergence(params_of(results[0]), params_of(results[1])) <= 1e-3


def test_teacher_mismatch_is_reported_before_training(teacher_run, digits_data_dir, tmp_path):
    teacher_dir, _ = teacher_run
    c = tiny("sld", data_dir=digits_data_dir, teacher=teacher_dir)
    c.teacher.arch = "resnet8"
    with pytest.raises(TeacherMismatchError, match="resnet_tiny"):
        loop.run(c, str(tmp_path / "bad"))
    assert not os.path.exists(tmp_path / "bad" / "metrics.jsonl")


def test_bad_configs_fail_fast(digits_data_dir, tmp_path):
    c = tiny("vanilla", data_dir=digits_data_dir)
    c.method = "slld"
    with pytest.raises(ValueError, match="Did you mean 'sld'"):
        loop.run(c, str(tmp_path / "a"))
    with pytest.raises(ValueError, match="divisible by the number of devices"):
        loop.run(tiny("vanilla", data_dir=digits_data_dir, batch_size=31), str(tmp_path / "b"))
    c = tiny("sld", data_dir=digits_data_dir)
    c.teacher.checkpoint = ""
    with pytest.raises(ValueError, match="needs a teacher"):
        loop.run(c, str(tmp_path / "c"))


def test_nonfinite_loss_stops_with_the_step_and_last_checkpoint(digits_data_dir, tmp_path):
    c = tiny("vanilla", data_dir=digits_data_dir, **{"optim.lr": 1e30})
    with pytest.raises(loop.NonFiniteLossError, match=r"step \d+: the loss or a gradient is not finite"):
        loop.run(c, str(tmp_path / "nan"))
    # the same program as above (2 epochs), stopped after epoch 1's 4 steps
    c = tiny("vanilla", data_dir=digits_data_dir, on_nonfinite="skip", max_steps=4, **{"optim.lr": 1e30})
    result = loop.run(c, str(tmp_path / "skip"))
    assert int(result["state"].step[0]) == 4
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(params_of(result)))


def test_equal_configs_share_one_traced_step_in_a_process(digits_data_dir):
    """Two builds of one config (a resume, a repeated run) share the traced and compiled step, the
    eval step and the initialisation, each build through a dispatch wrapper of its own."""
    config = tiny("sld", data_dir=digits_data_dir, teacher="unused")
    mesh = mesh_for(config)
    teacher = models.init_variables(
        models.get_model("resnet_tiny", num_classes=10), jax.random.PRNGKey(1), image_size=16
    )
    hits = models._shared_init.cache_info().hits
    a, b = (setup.build(config, mesh, teacher_variables=teacher) for _ in range(2))
    assert models._shared_init.cache_info().hits > hits
    assert a.tx is b.tx
    for swap in (False, True):
        assert a.step_config(student_swap=swap) == b.step_config(student_swap=swap)
        fa, fb = a.dispatch(student_swap=swap), b.dispatch(student_swap=swap)
        assert fa is not fb and fa.__wrapped__ is fb.__wrapped__
    assert a.eval_step.__wrapped__ is b.eval_step.__wrapped__
    other = setup.build(
        tiny("sld", data_dir=digits_data_dir, teacher="unused", **{"optim.lr": 0.1}),
        mesh,
        teacher_variables=teacher,
    )
    assert other.dispatch(student_swap=False).__wrapped__ is not a.dispatch(student_swap=False).__wrapped__


def test_the_step_after_gamma_is_compiled_ahead_and_the_switch_compiles_nothing(
    teacher_run, digits_data_dir, tmp_path, monkeypatch
):
    """The γ-gate variant of epochs > γ is compiled in the background before the switch (here
    synchronously, once the first step is dispatched): the switch reuses that executable."""
    ahead = []
    monkeypatch.setattr(setup, "_in_background", lambda fn: ahead.append(fn.__name__) or fn())
    teacher_dir, _ = teacher_run
    config = tiny("sld", data_dir=digits_data_dir, teacher=teacher_dir, limit=64)
    result = loop.run(config, str(tmp_path / "run"))
    assert ahead == ["compile_later_variant"]
    assert result["compiled_variants"] == {False: 1, True: 1}  # compiled once each: ahead, not again
    # A run that does not cross γ (epochs 1..1, the gate opening at epoch 2) compiles nothing ahead.
    stub = types.SimpleNamespace(student_swap=lambda epoch: epoch > 1)
    assert setup.Run.compile_ahead(stub, 1, 1, ()) is None
