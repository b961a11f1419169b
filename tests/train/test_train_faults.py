"""Fault injection: each fault that could lose or silently corrupt a run ends in its stated behaviour.

Faults: a second process on a workdir (lock), a changed config on resume, random bytes in each
kind of checkpoint file, a NaN teacher, zero and out-of-range config values, empty / truncated /
text / random-bytes teacher files, and user errors on the command line. Most tests work on tiny
objects (a hand-made TrainState saved with the project's Checkpointer); the paths that need a real
workdir use a copy of the session's tiny training run (``tiny_run`` in tests/train/conftest.py).
"""

import glob
import importlib.util
import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sld_jax import configs_lib, models
from sld_jax.errors import ConfigError, UserError
from sld_jax.train import checkpoint as ckpt_lib
from sld_jax.train import evaluate, fields, hardware, loop, saved_runs, teacher, validation, workdir_lock
from sld_jax.train import workdir as workdir_lib
from sld_jax.train.state import create_train_state, pytorch_sgd

HERE = pathlib.Path(__file__).resolve().parent
TINY_CONFIG = HERE / "train_tiny_config.py"

# Orbax readers of a corrupt checkpoint leave failed coroutines behind: collected after each test
# that reads one (``collect_orbax_leftovers`` in tests/train/conftest.py: a full garbage collection,
# so only where needed), their warnings are ignored here.
READS_CORRUPT_CHECKPOINTS = pytest.mark.usefixtures("collect_orbax_leftovers")
pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. (<coroutine object _read_array_index|None)"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
]


def _load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_config(data_dir, epochs=1):
    c = _load_module(TINY_CONFIG, "train_tiny_config").get_config(str(epochs))
    c.dataset.data_dir = data_dir
    return c


# --- a tiny TrainState saved with the project's Checkpointer ------------------------------------


def _state(seed):
    rng = np.random.default_rng(seed)
    variables = {
        # The dense kernel (2.5 kB) is stored in a data file; orbax inlines arrays under 1 kB in
        # its index (the b-tree nodes).
        "params": {
            "conv": {"kernel": jnp.asarray(rng.normal(size=(3, 3, 3, 8)), jnp.float32)},
            "dense": {
                "kernel": jnp.asarray(rng.normal(size=(64, 10)), jnp.float32),
                "bias": jnp.asarray(rng.normal(size=(10,)), jnp.float32),
            },
        },
        "batch_stats": {"bn": {"mean": jnp.asarray(rng.normal(size=(8,)), jnp.float32)}},
    }
    return create_train_state(variables, pytorch_sgd(0.1))


def _host(tree):
    return jax.tree.map(np.asarray, jax.device_get(tree))


def _assert_same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(np.testing.assert_array_equal, _host(a), _host(b))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A workdir with checkpoints at steps 1 and 2 (2 is also ``best``); returns states by step."""
    workdir = str(tmp_path_factory.mktemp("saved") / "run")
    states = {1: _state(1).replace(step=jnp.int32(1)), 2: _state(2).replace(step=jnp.int32(2))}
    checkpointer = ckpt_lib.Checkpointer(workdir, keep=3)
    for step, state in states.items():
        checkpointer.save(step, state, {"history": [{"epoch": step, "test_top1": 0.5}]}, best=step == 2)
    checkpointer.close()
    return workdir, states


def _copy(saved, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(saved[0], workdir)
    return workdir


def _scribble(path, rng, n=64):
    """Overwrites ``n`` bytes in the middle of a file with random bytes (all of a shorter file)."""
    data = bytearray(pathlib.Path(path).read_bytes())
    start = max(0, len(data) // 2 - n // 2)
    end = min(len(data), start + n)
    data[start:end] = rng.integers(0, 256, end - start, dtype=np.uint8).tobytes()
    pathlib.Path(path).write_bytes(bytes(data))


def _largest(pattern):
    files = glob.glob(pattern)
    assert files, f"nothing matches {pattern}: has orbax's layout changed?"
    return max(files, key=os.path.getsize)


# Each kind of file of an orbax checkpoint step directory (relative glob, the largest match).
CHECKPOINT_FILES = {
    "step metadata": "_CHECKPOINT_METADATA",
    "run metadata JSON": "metadata/metadata",
    "tree metadata": "state/_METADATA",
    "sharding": "state/_sharding",
    "array metadata": "state/array_metadatas/*",
    "ocdbt manifest": "state/manifest.ocdbt",
    "process manifest": "state/ocdbt.process_*/manifest.ocdbt",
    "array data": "state/ocdbt.process_*/d/*",
    "b-tree node": "state/d/*",
    "commit marker": "commit_success.txt",
}
# Files whose damage must be detected (the others may be ignored by orbax, which is harmless).
MUST_DETECT = {"run metadata JSON", "array data", "b-tree node", "tree metadata"}


@READS_CORRUPT_CHECKPOINTS
@pytest.mark.parametrize("kind", list(CHECKPOINT_FILES))
def test_random_bytes_in_any_checkpoint_file_never_restore_silently(saved, kind, tmp_path):
    workdir = _copy(saved, tmp_path)
    _scribble(
        _largest(os.path.join(workdir, "checkpoints", "2", CHECKPOINT_FILES[kind])), np.random.default_rng(0)
    )
    checkpointer = ckpt_lib.Checkpointer(workdir, keep=3)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            state, _ = checkpointer.restore_latest(saved[1][2])
    finally:
        checkpointer.close()
    fell_back = [w for w in caught if "checkpoint 2 " in str(w.message) and "unreadable" in str(w.message)]
    step = int(state.step)
    # Either the newest checkpoint comes back bit for bit, or a warning names it and the previous
    # one comes back bit for bit: never different numbers without a word.
    assert (step, bool(fell_back)) in ((2, False), (1, True))
    _assert_same(state, saved[1][step])
    if kind in MUST_DETECT:
        assert step == 1


def test_a_replicated_state_is_written_from_one_device_and_restores_to_its_target(tmp_path):
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:2]), ("data",))
    state = jax.device_put(
        _state(3).replace(step=jnp.int32(5)), jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    )
    split = jax.device_put(
        jnp.arange(8.0), jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    )
    # One process: orbax gets each replicated array's first-device copy (no replica-parallel
    # slicing); an array split over the devices is left as it is.
    one = ckpt_lib._one_replica({"state": state, "split": split})
    assert all(len(x.sharding.device_set) == 1 for x in jax.tree.leaves(one["state"]))
    assert one["split"] is split
    checkpointer = ckpt_lib.Checkpointer(str(tmp_path / "run"), keep=1)
    try:
        checkpointer.save(5, state, {"history": []})
        restored, _ = checkpointer.restore_latest(state)
    finally:
        checkpointer.close()
    _assert_same(restored, state)
    assert [x.sharding for x in jax.tree.leaves(restored)] == [x.sharding for x in jax.tree.leaves(state)]


@READS_CORRUPT_CHECKPOINTS
def test_edited_metadata_values_and_nonfinite_arrays_fail_verification(saved, tmp_path):
    workdir = _copy(saved, tmp_path)
    path = pathlib.Path(workdir, "checkpoints", "2", "metadata", "metadata")
    meta = json.loads(path.read_text())
    meta["history"][0]["test_top1"] = 0.99  # valid JSON, different content
    path.write_text(json.dumps(meta))
    bad = saved[1][2].replace(step=jnp.int32(3))
    bad = bad.replace(
        params={
            **bad.params,
            "dense": {**bad.params["dense"], "bias": bad.params["dense"]["bias"].at[0].set(jnp.nan)},
        }
    )
    checkpointer = ckpt_lib.Checkpointer(workdir, keep=3)
    try:
        checkpointer.save(3, bad, {"history": []})  # a NaN state saved with valid checksums
        with pytest.warns(RuntimeWarning) as caught:
            state, meta = checkpointer.restore_latest(saved[1][2])
        # The "last good checkpoint" named after a non-finite loss is one that verifies.
        assert checkpointer.last_good_step() == 1
        with pytest.raises(loop.NonFiniteLossError, match="Last good checkpoint: step 1 in"):
            # step 9 (the 1 step dispatched after step 8) of the run's one seed was not finite
            loop._check_finite((8, 1, np.zeros((1, 1))), configs_lib.base_config(), checkpointer, [0])
    finally:
        checkpointer.close()
    messages = [str(w.message) for w in caught]
    assert any("checkpoint 3 " in m and "non-finite values in params.dense.bias" in m for m in messages)
    assert any("checkpoint 2 " in m and "metadata does not match" in m for m in messages)
    assert int(state.step) == 1 and "integrity" not in meta
    _assert_same(state, saved[1][1])


@READS_CORRUPT_CHECKPOINTS
def test_readers_verify_and_sld_eval_refuses_a_failing_checkpoint(saved, tmp_path):
    workdir = _copy(saved, tmp_path)
    _scribble(
        _largest(os.path.join(workdir, "checkpoints", "2", CHECKPOINT_FILES["array data"])),
        np.random.default_rng(1),
    )
    with pytest.raises(ckpt_lib.CheckpointError, match="checkpoint 2 in .* refusing to use it"):
        saved_runs.load_run_variables(workdir, which="last", fallback=False)
    with pytest.warns(RuntimeWarning, match="checkpoint 2 in .*unreadable"):
        variables, _ = saved_runs.load_run_variables(workdir, which="last")
    _assert_same(variables["params"], saved[1][1].params)
    with pytest.raises(ConfigError, match="--which must be one of best/last"):
        saved_runs.load_run_variables(workdir, which="bogus")


# --- the workdir lock ---------------------------------------------------------------------------

HOLD_LOCK = """
import fcntl, json, os, socket, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.write(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": "then"}).encode())
print("locked", flush=True)
time.sleep(120)
"""


def test_a_workdir_is_locked_against_other_processes_until_the_holder_dies(tmp_path):
    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, os.path.join(workdir, workdir_lock.LOCK_FILE)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(
            workdir_lock.WorkdirBusyError,
            match=rf"in use by another sld-train run \(host .*, pid {holder.pid}, started then\)",
        ):
            workdir_lock.WorkdirLock(workdir, enabled=True).acquire()
    finally:
        holder.kill()
        holder.wait()
    # The operating system released the dead holder's lock: no stale lock to clean up.
    with workdir_lock.WorkdirLock(workdir, enabled=True):
        holder_info = json.loads(pathlib.Path(workdir, workdir_lock.LOCK_FILE).read_text())
        assert holder_info["pid"] == os.getpid()
        # A second run in this same process is refused too (flock belongs to the open file).
        with pytest.raises(workdir_lock.WorkdirBusyError, match=f"pid {os.getpid()}"):
            workdir_lock.WorkdirLock(workdir, enabled=True).acquire()
    with workdir_lock.WorkdirLock(workdir, enabled=True):  # released on exit
        pass


# --- the same-run check on resume ---------------------------------------------------------------


def _workdir_with_run(tmp_path, config):
    workdir = tmp_path / "run"
    (workdir / "checkpoints" / "8").mkdir(parents=True)
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
    return str(workdir)


def test_resume_with_a_changed_computation_is_refused_unless_overridden(tmp_path, caplog):
    saved = configs_lib.digits_config("vanilla", None, "resnet_tiny", num_epochs=4)
    workdir = _workdir_with_run(tmp_path, saved)
    new = configs_lib.digits_config("vanilla", None, "resnet_tiny", num_epochs=4)
    # Harmless fields may differ: extend the run, log/save more often, move the data.
    new.num_epochs, new.log_every_steps, new.checkpoint_every_epochs = 8, 1, 2
    new.dataset.data_dir = "/elsewhere"
    workdir_lib.check_same_run(new, workdir)
    new.seed, new.optim.lr = 1, 0.01
    with pytest.raises(
        workdir_lib.RunMismatchError,
        match=r"differing fields: optim.lr \(0.05 -> 0.01\), seed \(0 -> 1\)\. .*"
        r"--config.resume_policy=override",
    ):
        workdir_lib.check_same_run(new, workdir)
    new.resume_policy = "override"
    with caplog.at_level(logging.WARNING, logger="sld_jax"):
        workdir_lib.check_same_run(new, workdir)
    assert "resume_policy=override" in caplog.text and "optim.lr, seed" in caplog.text
    new.resume_policy = "sometimes"
    with pytest.raises(ConfigError, match="resume_policy must be one of strict/override"):
        workdir_lib.check_same_run(new, workdir)
    # Nothing to resume (no checkpoint): any config may start there.
    shutil.rmtree(os.path.join(workdir, "checkpoints"))
    new.resume_policy = "strict"
    workdir_lib.check_same_run(new, workdir)


def test_every_declared_field_is_a_real_field():
    """fields.FIELDS (ranges, choices, resume rules) names fields of the configs only (the base
    config's, and LS-MLKD's own ``loss.mlkd``)."""
    mlkd = configs_lib.ls_mlkd_config("resnet32x4", "ShuffleV2")
    present = {k for c in (configs_lib.base_config(), mlkd) for k, _ in validation.flatten(c)}
    declared = {k for k in fields.FIELDS if not k.endswith(".*")}
    assert declared <= present, declared - present
    assert workdir_lib.RESUMABLE_FIELDS <= present and workdir_lib.SHAPE_FIELDS == {"num_seeds"}


def test_metrics_keep_one_line_per_epoch_on_resume_and_move_aside_on_a_fresh_start(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        "".join(json.dumps({"step": 8 * e, "epoch": e}) + "\n" for e in (1, 2, 3)) + '{"step": 32, "ep'
    )  # a line torn by a kill
    workdir_lib.reset_metrics(str(tmp_path), 16)
    assert [json.loads(line)["epoch"] for line in path.read_text().splitlines()] == [1, 2]
    workdir_lib.reset_metrics(str(tmp_path), None)
    assert not path.exists()
    (old,) = glob.glob(str(tmp_path / "metrics.jsonl.*.old"))
    assert len(pathlib.Path(old).read_text().splitlines()) == 2  # nothing lost


# --- validation ---------------------------------------------------------------------------------


def _bad_value(rule):
    if rule.sequence:
        return () if rule.nonempty else (-1,)
    if rule.low is not None:
        return rule.low if rule.low_open else rule.low - 1
    return float("nan")


@pytest.mark.parametrize("key", sorted(k for k, f in fields.FIELDS.items() if f.choices))
def test_a_value_outside_each_fields_choices_is_one_clear_error(key):
    config = configs_lib.base_config()
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = "bogus"
    with pytest.raises(ConfigError, match=rf"^{key}='bogus' is not one of .*--config\.{key}="):
        validation.check_fields(config)


@pytest.mark.parametrize("key", sorted(fields.RANGES))
def test_an_out_of_range_value_of_each_field_is_one_clear_error(key):
    config = configs_lib.base_config()
    if key.endswith(".*"):
        key = key[:-2] + ".alpha"
        config.loss.teacher_transform_kwargs.alpha = 0.5
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
        node = node[p]
    value = _bad_value(validation.rule_for(key))
    node[leaf] = value
    with pytest.raises(ConfigError, match=rf"^{key}=.* is out of range: it must be .*--config\.{key}="):
        validation.check_fields(config)


def test_zero_valued_fields_fail_before_any_data_is_read(digits_data_dir, tmp_path, monkeypatch):
    def no_data(*args, **kwargs):
        raise AssertionError("the dataset was opened before the config was checked")

    monkeypatch.setattr(loop, "open_datasets", no_data)
    for field in ("checkpoint_every_epochs", "eval_batch_size", "log_every_steps", "num_epochs"):
        config = tiny_config(digits_data_dir)
        config[field] = 0
        with pytest.raises(ConfigError, match=f"{field}=0 is out of range"):
            loop.run(config, str(tmp_path / field))
        assert not os.path.exists(tmp_path / field)  # nothing was created either


# --- teachers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_teacher():
    model = models.get_model("resnet_tiny", num_classes=10)
    variables = jax.jit(lambda k: model.init(k, jnp.zeros((1, 16, 16, 3)), train=False))(
        jax.random.PRNGKey(0)
    )
    return model, jax.device_get(variables)


def _with_nan(variables):
    """``variables`` with one NaN in its first parameter, and that parameter's dotted name."""
    target = jax.tree_util.tree_flatten_with_path(variables["params"])[0][0][0]

    def poison(path, x):
        x = np.array(x)
        if path == target:
            x.flat[0] = np.nan
        return x

    params = jax.tree_util.tree_map_with_path(poison, variables["params"])
    name = ".".join(["params"] + [str(k.key) for k in target])
    return {"params": params, "batch_stats": variables["batch_stats"]}, name


def test_a_nan_teacher_is_refused_on_load_and_its_logits_are_checked(tiny_teacher, tmp_path):
    from sld_jax.models import torch_import

    model, variables = tiny_teacher
    bad, name = _with_nan(variables)
    out = torch_import.save_teacher_dir(tmp_path / "t", bad, arch="resnet_tiny", num_classes=10)
    cfg = configs_lib.base_config().teacher
    cfg.arch, cfg.checkpoint = "resnet_tiny", out
    with pytest.raises(teacher.TeacherError, match=rf"non-finite \(NaN/Inf\) values in {name}"):
        teacher.load_teacher(cfg, num_classes=10, dtype=jnp.float32, image_size=16)
    images = {"image": jnp.full((4, 16, 16, 3), 128, jnp.uint8)}
    teacher.check_teacher_logits(model, variables, images, mean=(0.5,) * 3, std=(0.25,) * 3, where="t")
    with pytest.raises(teacher.TeacherError, match="non-finite logits on the first test images"):
        teacher.check_teacher_logits(model, bad, images, mean=(0.5,) * 3, std=(0.25,) * 3, where="t")


def _teacher_files(tmp_path, torch):
    good = tmp_path / "good.pth"
    torch.save({"model": {"fc.weight": torch.ones(10, 8), "fc.bias": torch.zeros(10)}}, good)
    data = good.read_bytes()
    files = {
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "text": b"hello world\nnot torch\n",
        "random bytes": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    }
    for name, content in files.items():
        (tmp_path / f"{name.replace(' ', '_')}.pth").write_bytes(content)
    return {name: tmp_path / f"{name.replace(' ', '_')}.pth" for name in files}


def test_corrupt_and_nan_teacher_files_give_one_line_errors(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from sld_jax.models import torch_import

    for name, path in _teacher_files(tmp_path, torch).items():
        with pytest.raises(torch_import.TeacherFileError, match="is not a PyTorch checkpoint") as e:
            torch_import.read_state_dict(path)
        assert "\n" not in str(e.value), name
        assert (
            torch_import.main(
                ["--arch", "resnet8", "--checkpoint", str(path), "--out", str(tmp_path / "out")]
            )
            == 2  # a user error: one line, exit status 2
        )
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "not a PyTorch checkpoint" in err, (name, err)
    nan = tmp_path / "nan.pth"
    torch.save(
        {"model": {"conv1.weight": torch.full((2, 2), float("nan")), "bn1.running_var": torch.ones(2)}}, nan
    )
    with pytest.raises(torch_import.TeacherFileError, match=r"NaN/Inf values \(conv1.weight\)"):
        torch_import.read_state_dict(nan)
    assert not (tmp_path / "out").exists()


# --- the command line ---------------------------------------------------------------------------


def _keep_process_settings(cli, monkeypatch):
    """The CLI configures logging and JAX for its process; not for the test process."""
    monkeypatch.setattr(cli, "_init_runtime", lambda fv: None)
    monkeypatch.setattr(cli, "_quiet_libraries", lambda: None)
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)


def test_user_errors_are_one_line_with_exit_status_2(digits_data_dir, tmp_path, capsys, monkeypatch):
    from sld_jax import cli

    monkeypatch.setattr(loop, "open_datasets", lambda *a, **k: pytest.fail("data opened"))
    monkeypatch.setenv(cli.VERBOSE_ENV, "")  # restored after the test (--verbose sets it)
    _keep_process_settings(cli, monkeypatch)
    base = [
        "--config",
        str(TINY_CONFIG),
        f"--config.dataset.data_dir={digits_data_dir}",
        "--workdir",
        str(tmp_path / "w"),
    ]
    cases = {
        "eval_batch_size=0 is out of range": ["--config.eval_batch_size=0"],
        "unknown config key 'optim.lrr'": ["--config.optim.lrr=0.1"],
        "unknown method 'slld'": ["--config.method=slld"],
        "unknown dataset 'bogus'": ["--config.dataset.name=bogus"],
        "batch_size=100000 is larger than the training set (256 examples": ["--config.batch_size=100000"],
    }
    for expected, extra in cases.items():
        assert cli.train_main(base + extra) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "w").exists()  # refused before anything is created
    assert cli.eval_main(["--workdir", str(tmp_path / "absent")]) == 2
    assert "--workdir must name an sld-train run directory" in capsys.readouterr().err
    torn = tmp_path / "torn"
    torn.mkdir()
    for text, expected in (('{"model": "resn', "is unreadable (Unterminated"), ("[1]", "holds no config")):
        (torn / "config.json").write_text(text)
        assert cli.eval_main(["--workdir", str(torn)]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err
    with pytest.raises(ConfigError):  # --verbose: the traceback is back
        cli.train_main(base + ["--config.eval_batch_size=0", "--verbose"])
    monkeypatch.setenv(cli.VERBOSE_ENV, "")
    # Ctrl-C outside training (or a second one during it): one line and the shell's status 130.
    monkeypatch.setattr(loop, "run", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    assert cli.train_main(base) == cli.INTERRUPTED_EXIT == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "rerun the same command to resume" in err and err.count("\n") == 1
    # An internal bug is not a user error: it keeps its traceback.
    assert cli._user_error_message(KeyError("x")) is None
    data_loss = type("DataLossError", (Exception,), {})("corrupted record at 12\nmore")
    assert "a dataset record is corrupt (corrupted record at 12)" in cli._user_error_message(data_loss)
    assert isinstance(ckpt_lib.CheckpointError("x"), UserError)


# --- on a copy of the session's tiny training run (tests/train/conftest.py) ---------------------


@pytest.fixture
def trained(tiny_run, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(tiny_run["workdir"], workdir)
    return workdir, tiny_run


def test_a_second_run_or_a_changed_config_cannot_touch_a_run(trained, digits_data_dir, monkeypatch):
    workdir, result = trained
    before = {name: pathlib.Path(workdir, name).read_text() for name in ("config.json", "metrics.jsonl")}
    monkeypatch.setattr(loop, "open_datasets", lambda *a, **k: pytest.fail("data opened"))
    changed = tiny_config(digits_data_dir, epochs=8)
    changed.seed, changed.optim.lr = 1, 0.01
    with pytest.raises(workdir_lib.RunMismatchError, match="optim.lr .*seed"):
        loop.run(changed, workdir)
    with workdir_lock.WorkdirLock(workdir, enabled=True):
        with pytest.raises(workdir_lock.WorkdirBusyError, match=f"pid {os.getpid()}"):
            loop.run(tiny_config(digits_data_dir, epochs=8), workdir)
    after = {name: pathlib.Path(workdir, name).read_text() for name in before}
    assert after == before
    assert len(result["history"]) == 4


@READS_CORRUPT_CHECKPOINTS
def test_sld_eval_refuses_a_corrupt_checkpoint_and_a_foreign_config(
    trained, digits_data_dir, tmp_path, capsys, monkeypatch
):
    workdir = trained[0]
    config = tiny_config(digits_data_dir)
    ok = evaluate.evaluate(config, workdir, which="last")
    assert ok["count"] == 64 and np.isfinite(ok["loss"])
    other = tiny_config(digits_data_dir)
    other.model = "resnet8"
    with pytest.raises(ckpt_lib.CheckpointError, match="does not fit its config.json"):
        evaluate.evaluate(other, workdir, which="last")
    step = max(int(n) for n in os.listdir(os.path.join(workdir, "checkpoints")) if n.isdigit())
    _scribble(
        _largest(os.path.join(workdir, "checkpoints", str(step), CHECKPOINT_FILES["array data"])),
        np.random.default_rng(2),
    )
    with pytest.raises(ckpt_lib.CheckpointError, match=f"checkpoint {step} in .*refusing to use it"):
        evaluate.evaluate(config, workdir, which="last")
    from sld_jax import cli

    monkeypatch.setenv(cli.VERBOSE_ENV, "")
    _keep_process_settings(cli, monkeypatch)
    for which in ("last", "bogus"):
        assert cli.eval_main(["--workdir", workdir, f"--which={which}"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("refusing to use it" in err or "best/last" in err), err


# --- loss edge cases: an empty batch, negative labels under jit ---------------------------------


def test_every_method_is_zero_with_finite_gradients_when_every_example_is_masked():
    from sld_jax.train import methods

    rng = np.random.default_rng(0)
    s = tuple(jnp.asarray(rng.normal(size=(4, 5)), jnp.float32) for _ in range(2))
    t = tuple(jnp.asarray(rng.normal(size=(4, 5)), jnp.float32) for _ in range(2))
    y, empty = jnp.asarray(rng.integers(0, 5, 4)), jnp.zeros(4, bool)
    features = tuple(jnp.asarray(rng.normal(size=(4, 6)), jnp.float32) for _ in range(2))
    loss_cfg = configs_lib.base_config().loss
    variants = [
        (name, swap)
        for name, method in methods.METHODS.items()
        for swap in ((False, True) if method.gamma_gated else (False,))
    ]

    def loss(s, t, name, swap):
        method = methods.METHODS[name]
        views = 2 if method.two_views else 1
        return methods.apply(
            method,
            methods.objective_kwargs(method, loss_cfg),
            s[:views],
            t[:views] if method.uses_teacher else None,
            y,
            empty,
            epoch=jnp.float32(200),
            student_swap=swap,
            student_embeddings=features[:views],
            teacher_embeddings=features[:views],
        )

    @jax.jit  # every variant in one compiled function: one compilation
    def all_variants(s, t):
        return {v: jax.value_and_grad(loss, has_aux=True)(s, t, *v) for v in variants}

    for variant, ((value, terms), grads) in all_variants(s, t).items():
        assert float(value) == 0.0, variant
        assert all(np.isfinite(float(v)) for v in terms.values()), (variant, terms)
        assert all(np.isfinite(g).all() and not g.any() for g in grads), variant


def test_negative_labels_under_jit_wrap_silently_unless_checked():
    from jax.experimental import checkify

    from sld_jax import losses

    s = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3)), jnp.float32)
    # As documented in sld_jax.losses.validation: inside jit a label in [-C, 0) reads class C + y,
    # a finite but wrong value...
    wrapped = jax.jit(losses.cross_entropy)(s, jnp.array([0, -1]))
    np.testing.assert_allclose(wrapped, losses.cross_entropy(s, jnp.array([0, 2])), rtol=1e-6)
    # ...which checked_labels under checkify turns into an error on the host.
    checked = jax.jit(checkify.checkify(lambda s, y: losses.cross_entropy(s, losses.checked_labels(y, 3))))
    err, _ = checked(s, jnp.array([0, -1]))
    with pytest.raises(checkify.JaxRuntimeError, match=r"labels must lie in \[0, 3\); got min -1"):
        err.throw()


def test_num_seeds_is_bounded_by_memory_before_the_states_are_created(monkeypatch):
    """On the CPU the host's available memory bounds K (every local device holds the K states,
    three copies during a step); an accelerator's own memory where it reports one."""
    from sld_jax.train.mesh import mesh_for

    config = configs_lib.digits_config("vanilla", None, "resnet_tiny")
    config.num_devices = 1
    mesh = mesh_for(config)
    monkeypatch.setattr(hardware, "device_memory_limit", lambda mesh: None)
    monkeypatch.setattr(hardware, "host_memory_available", lambda: 2**30)
    per_seed = 2**20  # 1 MiB of state: 3 MiB during a step
    hardware.check_seeds_fit(300, per_seed, mesh)
    with pytest.raises(
        ConfigError, match=r"num_seeds=400 needs about 1\.2 GiB.*host has 1\.0 GiB.*num_seeds=341 "
    ):
        hardware.check_seeds_fit(400, per_seed, mesh)
    monkeypatch.setattr(hardware, "device_memory_limit", lambda mesh: 2**29)
    with pytest.raises(ConfigError, match=r"a device has 0\.5 GiB.*num_seeds=170 "):
        hardware.check_seeds_fit(300, per_seed, mesh)
    monkeypatch.setattr(hardware, "host_memory_available", lambda: None)
    monkeypatch.setattr(hardware, "device_memory_limit", lambda mesh: None)
    hardware.check_seeds_fit(10**9, per_seed, mesh)  # nothing known: nothing refused
    monkeypatch.undo()
    if sys.platform == "linux":
        assert hardware.host_memory_available() > 0
