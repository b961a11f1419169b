"""Resilience of sld-train: preemption by SIGTERM and SIGKILL, corrupt checkpoints, full disks.

The preemption tests run ``python -m sld_jax.cli`` on the tiny digits config
(``tests/train/train_tiny_config.py``) in a subprocess and signal it at a step drawn from a seeded
generator, reading the step from its per-step progress lines. Everything else runs the loop in this
process. Final states are compared bit for bit with an uninterrupted run: the claim holds because
a resumed run executes the same compiled program as the uninterrupted one (the same configuration,
the same compile settings: the subprocess inherits the suite's XLA_FLAGS) from bit-exact restored
arrays, and XLA's CPU programs are deterministic. Two *different* programs would promise no bits
(tests/train/test_train_seeds.py).
"""

import errno
import glob
import importlib.util
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from sld_jax import atomic
from sld_jax.train import checkpoint as ckpt_lib
from sld_jax.train import loop, saved_runs
from sld_jax.train.seeds import per_seed

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TINY_CONFIG = os.path.join(HERE, "train_tiny_config.py")
EPOCHS = 4
# One launch of the CLI (imports, data, compilation from the persistent cache, 32 tiny steps)
# takes 30-40 s of CPU time; the limit only guards against a hung process.
LAUNCH_TIMEOUT_S = 900


def _load_tiny_config():
    spec = importlib.util.spec_from_file_location("train_tiny_config", TINY_CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Orbax's readers of a corrupt checkpoint leave failed coroutines (and callbacks into a closed
# event loop) behind; every test here collects them (tests/train/conftest.py) so that this noise is
# reported, and ignored, here rather than in whichever test runs next.
pytestmark = [
    pytest.mark.usefixtures("collect_orbax_leftovers"),
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. (<coroutine object _read_array_index|None)"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
]

TINY = _load_tiny_config()
SPE = TINY.STEPS_PER_EPOCH
TOTAL_STEPS = SPE * EPOCHS


def tiny(data_dir):
    """The same config as ``--config train_tiny_config.py:4 --config.dataset.data_dir=data_dir``."""
    c = TINY.get_config(str(EPOCHS))
    c.dataset.data_dir = data_dir
    return c


def cli_command(workdir, data_dir):
    return [
        sys.executable,
        "-m",
        "sld_jax.cli",
        "--config",
        f"{TINY_CONFIG}:{EPOCHS}",
        f"--config.dataset.data_dir={data_dir}",
        "--workdir",
        workdir,
    ]


def host(tree):
    return jax.tree.map(np.asarray, jax.device_get(tree))


def assert_trees_equal(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    jax.tree.map(np.testing.assert_array_equal, actual, expected)


def assert_same_run(workdir, result, reference):
    """The resumed run ended in exactly the reference's state, on device and on disk."""
    assert_trees_equal(host(result["state"]), host(reference["state"]))
    saved, meta = saved_runs.load_run_variables(workdir, which="last")
    expected, _ = saved_runs.load_run_variables(reference["workdir"], which="last")
    assert_trees_equal(saved, expected)
    assert [h["epoch"] for h in per_seed(meta)[0]["history"]] == list(range(1, EPOCHS + 1))
    # One metrics line per epoch: lines written after the checkpoint resumed from are dropped.
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        assert [json.loads(line)["epoch"] for line in f] == list(range(1, EPOCHS + 1))
    for got, want in zip(result["history"], reference["history"]):
        np.testing.assert_allclose(got["train_loss"], want["train_loss"], rtol=1e-6)
        assert got["test_top1"] == want["test_top1"]


def checkpoint_steps(workdir):
    """Steps of the finalised checkpoints in ``workdir/checkpoints``, ascending."""
    names = os.listdir(os.path.join(workdir, "checkpoints"))
    return sorted(int(n) for n in names if n.isdigit())


def unreadable_checkpoints(directory):
    """``{step: error}`` for every finalised checkpoint in ``directory`` that cannot be restored."""
    handlers = {"state": ocp.StandardCheckpointHandler(), "metadata": ocp.JsonCheckpointHandler()}
    sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    errors = {}
    with ocp.CheckpointManager(directory, item_handlers=handlers) as manager:
        for step in manager.all_steps():
            try:
                saved = manager.item_metadata(step)["state"]
                target = jax.tree.map(
                    lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding), saved
                )
                restored = manager.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(target), metadata=ocp.args.JsonRestore()
                    ),
                )
                assert int(restored["state"]["step"][0]) == step
            except Exception as e:  # noqa: BLE001 - any failure is the finding
                errors[step] = f"{type(e).__name__}: {e}"
    return errors


class CliRun:
    """``python -m sld_jax.cli`` in a subprocess, signalled at a step by a thread reading output.

    The thread sends ``signum`` as soon as a progress line shows global step ``>= signal_at``, so
    the test process may do other work meanwhile.
    """

    PROGRESS = re.compile(r"epoch (\d+)/\d+ step (\d+)/\d+")

    def __init__(self, workdir, data_dir, *, signal_at, signum):
        self.lines = []
        self.signal_at, self.signum, self.signalled_at = signal_at, signum, None
        self.proc = subprocess.Popen(
            cli_command(workdir, data_dir),
            cwd=REPO,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._deadline = time.monotonic() + LAUNCH_TIMEOUT_S
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            m = self.PROGRESS.search(line)
            if m and self.signalled_at is None:
                step = (int(m[1]) - 1) * SPE + int(m[2])
                if step >= self.signal_at:
                    self.proc.send_signal(self.signum)
                    self.signalled_at = step

    def finish(self):
        """Waits for the end of the run; returns its exit code."""
        self._reader.join(timeout=max(self._deadline - time.monotonic(), 1))
        if self._reader.is_alive():
            self.kill()
            pytest.fail(f"sld-train did not finish within {LAUNCH_TIMEOUT_S} s:\n{self.tail()}")
        rc = self.proc.wait(timeout=60)
        if self.signalled_at is None:
            pytest.fail(
                f"the run ended (exit code {rc}) before step {self.signal_at}, so it was "
                f"never signalled:\n{self.tail()}"
            )
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def output(self):
        return "".join(self.lines)

    def tail(self, n=40):
        return "".join(self.lines[-n:])


@pytest.fixture(scope="module")
def reference(tiny_run):
    """The uninterrupted run, in this process (``tiny(data_dir)``; shared with other modules)."""
    result, workdir = tiny_run, tiny_run["workdir"]
    assert int(result["state"].step[0]) == TOTAL_STEPS
    assert checkpoint_steps(workdir) == [SPE, 2 * SPE, 3 * SPE, 4 * SPE]
    return {**result, "workdir": workdir}


@pytest.fixture(scope="module")
def preempted(digits_data_dir, tmp_path_factory, request):
    """A CLI run stopped by SIGTERM at a random step, rerun, then SIGKILLed at a later random step.

    Returns what was observed, including the state of the workdir right after the SIGKILL.
    """
    rng = np.random.default_rng(0)
    workdir = str(tmp_path_factory.mktemp("preempted") / "run")
    term_at = int(rng.integers(2, SPE + 3))  # late in epoch 1 or early in epoch 2
    first = CliRun(workdir, digits_data_dir, signal_at=term_at, signum=signal.SIGTERM)
    try:
        request.getfixturevalue("reference")  # uses the second core while the subprocess starts
        term_rc = first.finish()
    finally:
        first.kill()
    stopped = re.search(r"stopped by SIGTERM after saving step (\d+)", first.output())
    assert term_rc == 0 and stopped, (
        f"SIGTERM at step {first.signalled_at}: exit code {term_rc}, expected 0 and a saved "
        f"step:\n{first.tail()}"
    )
    stop = int(stopped[1])
    steps_after_term = checkpoint_steps(workdir)
    _, meta_after_term = saved_runs.load_run_variables(workdir, which="last")

    # Leave >= 1.5 epochs after the kill so that it lands before the run ends, even when slow.
    kill_at = int(rng.integers(stop + 1, max(stop + 2, TOTAL_STEPS - SPE - SPE // 2)))
    second = CliRun(workdir, digits_data_dir, signal_at=kill_at, signum=signal.SIGKILL)
    try:
        kill_rc = second.finish()
    finally:
        second.kill()
    checkpoints = os.path.join(workdir, "checkpoints")
    return dict(
        workdir=workdir,
        term_at=term_at,
        term_signalled_at=first.signalled_at,
        term_rc=term_rc,
        stop=stop,
        term_output=first.output(),
        steps_after_term=steps_after_term,
        meta_after_term=meta_after_term,
        kill_at=kill_at,
        killed_at=second.signalled_at,
        kill_rc=kill_rc,
        kill_output=second.output(),
        steps_after_kill=checkpoint_steps(workdir),
        tmp_after_kill=[n for n in os.listdir(checkpoints) if ".orbax-checkpoint-tmp" in n],
        unreadable_after_kill={
            **unreadable_checkpoints(checkpoints),
            **unreadable_checkpoints(os.path.join(workdir, "best")),
        },
    )


def test_sigterm_finishes_the_step_saves_and_exits_zero(preempted):
    p = preempted
    assert "SIGTERM received" in p["term_output"]
    assert p["term_at"] <= p["term_signalled_at"] <= p["stop"] < TOTAL_STEPS, p
    # The newest checkpoint is the step where the run stopped, even inside an epoch.
    assert p["steps_after_term"][-1] == p["stop"], p["steps_after_term"]
    # It holds the finished epochs and, when stopped inside an epoch, that epoch's running sums.
    meta = p["meta_after_term"]
    assert len(per_seed(meta)[0]["history"]) == p["stop"] // SPE
    assert (meta["epoch_sums"] is not None) == (p["stop"] % SPE != 0)


def test_rerun_resumes_from_the_sigterm_checkpoint(preempted):
    assert f"resumed from step {preempted['stop']} " in preempted["kill_output"], preempted["kill_output"][
        -3000:
    ]


def test_sigkill_leaves_only_complete_readable_checkpoints(preempted):
    p = preempted
    assert p["kill_rc"] == -signal.SIGKILL, (
        f"expected the run to be killed at step >= {p['kill_at']}, exit code {p['kill_rc']}:\n"
        f"{p['kill_output'][-3000:]}"
    )
    # Every checkpoint the killed run left (in checkpoints/ and best/) restores completely; a
    # save cut short can only leave a *.orbax-checkpoint-tmp-* directory, which is not a step.
    assert p["unreadable_after_kill"] == {}
    assert p["stop"] <= p["steps_after_kill"][-1] < TOTAL_STEPS, p


def test_resume_after_sigkill_equals_the_uninterrupted_run(preempted, reference, digits_data_dir, caplog):
    last_saved = preempted["steps_after_kill"][-1]
    with caplog.at_level(logging.INFO, logger="sld_jax"):
        result = loop.run(tiny(digits_data_dir), preempted["workdir"])
    assert f"resumed from step {last_saved} " in caplog.text
    assert not result["preempted"]
    assert_same_run(preempted["workdir"], result, reference)


# --- corrupt, partial and leftover checkpoints --------------------------------------------------


def _rewrite(path, fn):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(fn(data))


def _array_files(step_dir):
    files = glob.glob(os.path.join(step_dir, "state", "ocdbt.process_*", "d", "*"))
    assert files, f"no array data files under {step_dir}: has orbax's layout changed?"
    return files


def _truncate_arrays(step_dir):
    for path in _array_files(step_dir):
        _rewrite(path, lambda b: b[: len(b) // 2])


def _overwrite_arrays(step_dir):
    rng = np.random.default_rng(0)
    for path in _array_files(step_dir):
        _rewrite(path, lambda b: rng.integers(0, 256, len(b), dtype=np.uint8).tobytes())


def _cut_metadata_json(step_dir):
    _rewrite(os.path.join(step_dir, "metadata", "metadata"), lambda b: b[: len(b) // 2])


def _remove_state(step_dir):
    shutil.rmtree(os.path.join(step_dir, "state"))


def _empty_step_dir(step_dir):
    shutil.rmtree(step_dir)
    os.makedirs(step_dir)


CORRUPTIONS = {
    "array data cut short": _truncate_arrays,
    "array data overwritten": _overwrite_arrays,
    "metadata JSON cut short": _cut_metadata_json,
    "state item missing": _remove_state,
    "empty step directory": _empty_step_dir,
}


def _copy_run(reference, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(reference["workdir"], workdir)
    return workdir


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_unreadable_latest_checkpoint_warns_and_falls_back(reference, corruption, tmp_path):
    workdir = _copy_run(reference, tmp_path)
    CORRUPTIONS[corruption](os.path.join(workdir, "checkpoints", str(TOTAL_STEPS)))
    checkpointer = ckpt_lib.Checkpointer(workdir, keep=4)
    try:
        with pytest.warns(RuntimeWarning, match=rf"checkpoint {TOTAL_STEPS} .* is unreadable"):
            state, meta = checkpointer.restore_latest(reference["state"])
    finally:
        checkpointer.close()
    assert int(state.step[0]) == TOTAL_STEPS - SPE
    assert [h["epoch"] for h in per_seed(meta)[0]["history"]] == list(range(1, EPOCHS))
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(host(state.params)))


def test_resume_past_a_corrupt_latest_checkpoint_equals_the_uninterrupted_run(
    reference, digits_data_dir, tmp_path
):
    workdir = _copy_run(reference, tmp_path)
    _truncate_arrays(os.path.join(workdir, "checkpoints", str(TOTAL_STEPS)))
    with pytest.warns(RuntimeWarning, match="falling back to the previous checkpoint"):
        result = loop.run(tiny(digits_data_dir), workdir)
    assert_same_run(workdir, result, reference)
    assert unreadable_checkpoints(os.path.join(workdir, "checkpoints")) == {}


def test_leftover_temporary_checkpoint_directory_is_ignored(reference, tmp_path):
    workdir = _copy_run(reference, tmp_path)
    # What a save interrupted by a crash leaves: a half-written directory under a temporary name.
    leftover = os.path.join(
        workdir, "checkpoints", f"{TOTAL_STEPS + SPE}.orbax-checkpoint-tmp-1764000000000000"
    )
    shutil.copytree(os.path.join(workdir, "checkpoints", str(TOTAL_STEPS)), leftover)
    _truncate_arrays(leftover)
    # A reader (sld-eval, a student loading its teacher) skips it and leaves it alone: it may be
    # the save in progress of a run that is still training.
    _, meta = saved_runs.load_run_variables(workdir, which="last")
    assert len(per_seed(meta)[0]["history"]) == EPOCHS and os.path.isdir(leftover)
    # The trainer, starting on this workdir, ignores it.
    checkpointer = ckpt_lib.Checkpointer(workdir, keep=4)
    try:
        assert checkpointer.all_steps()[-1] == TOTAL_STEPS
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no fall-back warning either
            state, _ = checkpointer.restore_latest(reference["state"])
    finally:
        checkpointer.close()
    assert int(state.step[0]) == TOTAL_STEPS
    assert_trees_equal(host(state.params), host(reference["state"].params))


# --- unwritable workdirs and failed saves -------------------------------------------------------


def _no_data(*args, **kwargs):
    raise AssertionError("the dataset was opened before the workdir was checked")


def test_workdir_under_a_regular_file_fails_before_training(digits_data_dir, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    monkeypatch.setattr(loop, "open_datasets", _no_data)
    with pytest.raises(ckpt_lib.CheckpointError, match="is not writable.*choose another --workdir"):
        loop.run(tiny(digits_data_dir), str(blocker / "run"))


def test_full_disk_at_start_fails_before_training(digits_data_dir, tmp_path, monkeypatch):
    def full_disk_open(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    # The workdir's write probe is sld_jax.atomic's (its open fails as on a full disk).
    monkeypatch.setattr(atomic, "open", full_disk_open, raising=False)
    monkeypatch.setattr(loop, "open_datasets", _no_data)
    with pytest.raises(ckpt_lib.CheckpointError, match="No space left on device.*free space"):
        loop.run(tiny(digits_data_dir), str(tmp_path / "run"))


def test_failed_save_mid_run_keeps_the_previous_checkpoint(reference, digits_data_dir, tmp_path, monkeypatch):
    fail_at = 3 * SPE
    real_save = ocp.CheckpointManager.save

    def save_on_a_full_disk(self, step, *args, **kwargs):
        if step < fail_at:
            return real_save(self, step, *args, **kwargs)
        # The disk fills up half-way through writing the checkpoint.
        partial = os.path.join(str(self.directory), f"{step}.orbax-checkpoint-tmp-1764000000000000")
        os.makedirs(os.path.join(partial, "state"), exist_ok=True)
        with open(os.path.join(partial, "state", "_METADATA"), "w") as f:
            f.write('{"tree_metadata": {')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ocp.CheckpointManager, "save", save_on_a_full_disk)
    workdir = str(tmp_path / "run")
    with pytest.raises(
        ckpt_lib.CheckpointError,
        match=rf"step {fail_at} .*No space left on device.*previous checkpoint "
        rf"\(step {fail_at - SPE}\) is intact",
    ):
        loop.run(tiny(digits_data_dir), workdir)
    monkeypatch.undo()

    assert checkpoint_steps(workdir) == [SPE, 2 * SPE]
    assert unreadable_checkpoints(os.path.join(workdir, "checkpoints")) == {}
    _, meta = saved_runs.load_run_variables(workdir, which="last")
    assert [h["epoch"] for h in per_seed(meta)[0]["history"]] == [1, 2]
    # Once there is space again, rerunning resumes from that checkpoint and ends where the
    # uninterrupted run ended.
    result = loop.run(tiny(digits_data_dir), workdir)
    assert_same_run(workdir, result, reference)
