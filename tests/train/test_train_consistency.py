"""Nothing silently wrong after a kill or a failed write: ``best/`` always holds the best epoch,
a run is finished only once its outputs are written, and a changed teacher is never mixed in.

Kills are simulated in this process at the trainer's named kill points
(:mod:`sld_jax.train.kill_points`, raising :class:`~sld_jax.train.kill_points.SimulatedKill`
where ``SLD_JAX_KILL_AT`` would SIGKILL the process): what is on disk at that moment is what a
real kill leaves. Each rerun is compared bit for bit with the session's uninterrupted tiny run
(``tiny_run``): the same config, so the same compiled program, resumed from bit-exact arrays.
"""

import errno
import json
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from sld_jax.train import checkpoint as ckpt_lib
from sld_jax.train import kill_points, loop, saved_runs, setup, suite
from sld_jax.train import teacher as teacher_lib
from sld_jax.train import workdir as workdir_lib
from sld_jax.train.preemption import Preemption
from sld_jax.train.teacher import TeacherError

SPE = 8  # train_tiny_config.STEPS_PER_EPOCH


@pytest.fixture(scope="module")
def reference(tiny_run):
    """The uninterrupted 4-epoch tiny run, its finished record and its best epoch's step."""
    record = workdir_lib.read_finished(tiny_run["workdir"])
    assert record is not None and record["best_step"] is not None, record
    return {**tiny_run, "record": record}


def tiny(tiny_config_module, data_dir, **fields):
    config = tiny_config_module.get_config("4")
    config.dataset.data_dir = data_dir
    for key, value in fields.items():
        config[key] = value
    return config


def kill_at(monkeypatch, point, step=None):
    """Makes the trainer die (SimulatedKill) at ``point`` (at ``step`` only, when given), once."""
    real = kill_points.reached
    fired = []

    def reached(p, s=None):
        if p == point and (step is None or s == step) and not fired:
            fired.append(s)
            raise kill_points.SimulatedKill(p)
        real(p, s)

    monkeypatch.setattr(kill_points, "reached", reached)
    return fired


def assert_same_as_reference(workdir, result, reference):
    """The rerun's state, best/ and finished record are the uninterrupted run's."""
    for got, want in zip(
        jax.tree.leaves(jax.device_get(result["state"])), jax.tree.leaves(reference["state"])
    ):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert workdir_lib.read_finished(workdir) == reference["record"]
    got, _ = saved_runs.load_run_variables(workdir, which="best")
    want, _ = saved_runs.load_run_variables(reference["workdir"], which="best")
    jax.tree.map(np.testing.assert_array_equal, got, want)
    for name in ("summary.md", "accuracy.png"):
        assert os.path.exists(os.path.join(workdir, name)), name


def test_a_kill_between_best_and_its_checkpoint_resumes_to_the_uninterrupted_best(
    tiny_config_module, digits_data_dir, reference, tmp_path, monkeypatch
):
    """With one checkpoint kept (the previous best epoch's checkpoint is long gone), a kill right
    after ``best/<e>`` is written: ``best/`` still holds the previous best beside it, readers read
    the recorded one, and the rerun ends where the uninterrupted run ended."""
    workdir = str(tmp_path / "run")
    best = reference["record"]["best_step"]
    assert best > SPE, "the tiny run's best epoch must not be its first for this test"
    fired = kill_at(monkeypatch, "best_saved", best)
    with pytest.raises(kill_points.SimulatedKill):
        loop.run(tiny(tiny_config_module, digits_data_dir, keep_checkpoints=1), workdir)
    assert fired == [best]
    checkpointer = ckpt_lib.Checkpointer(workdir, keep=1)
    held, kept = checkpointer.best_steps(), checkpointer.all_steps()
    checkpointer.close()
    assert len(held) == 2 and held[-1] == best and kept == [best - SPE], (held, kept)
    _, recorded = saved_runs.recorded_best_step(workdir)
    assert recorded == held[0]
    saved_runs.load_run_variables(workdir, which="best")  # the recorded best, not the newer one
    assert workdir_lib.read_finished(workdir) is None
    monkeypatch.undo()
    result = loop.run(tiny(tiny_config_module, digits_data_dir, keep_checkpoints=1), workdir)
    assert_same_as_reference(workdir, result, reference)


def test_a_best_ahead_of_every_checkpoint_is_dropped_when_its_epoch_is_not_trained_again(
    tiny_config_module, digits_data_dir, reference, tmp_path, monkeypatch
):
    """Killed between ``best/`` and its checkpoint, then resumed with a ``max_steps`` that stops
    before that epoch: ``best/`` goes back to the best epoch the checkpoints record."""
    workdir = str(tmp_path / "run")
    best = reference["record"]["best_step"]
    assert best > SPE, "the tiny run's best epoch must not be its first for this test"
    kill_at(monkeypatch, "best_saved", best)
    with pytest.raises(kill_points.SimulatedKill):
        loop.run(tiny(tiny_config_module, digits_data_dir), workdir)
    monkeypatch.undo()
    loop.run(tiny(tiny_config_module, digits_data_dir, max_steps=best - SPE), workdir)
    known, recorded = saved_runs.recorded_best_step(workdir)
    assert known and recorded < best
    checkpointer = ckpt_lib.Checkpointer(workdir)
    assert checkpointer.best_steps() == [recorded]
    checkpointer.close()
    assert workdir_lib.read_finished(workdir)["best_step"] == recorded
    saved_runs.load_run_variables(workdir, which="best")


def test_a_missing_best_is_copied_back_from_its_checkpoint_on_the_rerun(
    tiny_config_module, digits_data_dir, reference, tmp_path
):
    """``best/`` emptied (a failed write of an older version): the rerun of the finished run copies
    the recorded best epoch from ``checkpoints/``."""
    workdir = str(tmp_path / "run")
    shutil.copytree(reference["workdir"], workdir)
    shutil.rmtree(os.path.join(workdir, "best"))
    result = loop.run(tiny(tiny_config_module, digits_data_dir), workdir)
    assert_same_as_reference(workdir, result, reference)


def test_a_failed_best_save_resumes_to_the_uninterrupted_best(
    tiny_config_module, digits_data_dir, reference, tmp_path, monkeypatch
):
    """A ``best/`` that cannot be written (a full disk, a read-only directory) stops the run before
    any checkpoint names that epoch as the best; the rerun writes it."""
    workdir = str(tmp_path / "run")
    best = reference["record"]["best_step"]
    real_save = ocp.CheckpointManager.save

    def save(self, step, *args, **kwargs):
        if step == best and os.path.basename(str(self.directory)) == "best":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_save(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    with pytest.raises(ckpt_lib.CheckpointError, match=rf"step {best} .*Read-only file system"):
        loop.run(tiny(tiny_config_module, digits_data_dir), workdir)
    monkeypatch.undo()
    checkpointer = ckpt_lib.Checkpointer(workdir)
    assert max(checkpointer.all_steps()) < best  # no checkpoint claims an unwritten best
    checkpointer.close()
    result = loop.run(tiny(tiny_config_module, digits_data_dir), workdir)
    assert_same_as_reference(workdir, result, reference)


def test_a_run_killed_before_its_summary_is_finished_only_by_the_rerun(
    tiny_config_module, digits_data_dir, reference, tmp_path, monkeypatch
):
    workdir = str(tmp_path / "run")
    kill_at(monkeypatch, "before_summary")
    with pytest.raises(kill_points.SimulatedKill):
        loop.run(tiny(tiny_config_module, digits_data_dir), workdir)
    assert workdir_lib.read_finished(workdir) is None
    assert not os.path.exists(os.path.join(workdir, "summary.md"))
    monkeypatch.undo()
    result = loop.run(tiny(tiny_config_module, digits_data_dir), workdir)
    assert_same_as_reference(workdir, result, reference)


def test_a_workdir_of_an_older_version_resumes_and_finishes(
    tiny_config_module, digits_data_dir, reference, tmp_path, monkeypatch
):
    """Checkpoints that record no best step and no teacher (written before those records
    existed): the resume takes ``best/`` as it is and the run finishes consistent."""
    workdir = str(tmp_path / "run")
    real_save = ckpt_lib.Checkpointer.save

    def old_save(self, step, state, metadata, *, best=False):
        old = {k: v for k, v in metadata.items() if k not in ("best_step", "teacher")}
        return real_save(self, step, state, old, best=best)

    monkeypatch.setattr(ckpt_lib.Checkpointer, "save", old_save)
    loop.run(tiny(tiny_config_module, digits_data_dir, max_steps=2 * SPE), workdir)
    monkeypatch.undo()
    assert saved_runs.recorded_best_step(workdir) == (False, None)
    result = loop.run(tiny(tiny_config_module, digits_data_dir), workdir)
    assert_same_as_reference(workdir, result, reference)


def test_readers_refuse_a_best_that_is_not_the_recorded_best_epoch(reference, tmp_path):
    """A teacher, ``sld-eval`` or a suite reading ``best/`` of a run whose newest checkpoint records
    another best epoch get an error, never another epoch's variables."""
    workdir = str(tmp_path / "run")
    shutil.copytree(reference["workdir"], workdir)
    shutil.rmtree(os.path.join(workdir, "best"))  # what an interrupted best/ save leaves, at worst
    with pytest.raises(ckpt_lib.CheckpointError, match=r"best/ of .* holds steps \[\] .* records step"):
        saved_runs.load_run_variables(workdir, which="best")
    with pytest.raises((ckpt_lib.CheckpointError, TeacherError), match="best/ of"):
        teacher_lib.fingerprint(workdir)
    saved_runs.load_run_variables(workdir, which="last")  # the last checkpoint is still readable


def test_a_teacher_fingerprint_names_the_variables_it_holds(reference, tmp_path):
    workdir = str(tmp_path / "teacher")
    shutil.copytree(reference["workdir"], workdir)
    assert teacher_lib.fingerprint(workdir) == teacher_lib.fingerprint(reference["workdir"])
    # A new best epoch (other variables) changes it.
    checkpointer = ckpt_lib.Checkpointer(workdir, keep=4)
    state, meta = checkpointer.restore_latest(reference["state"])
    step = int(state.step[0]) + 1
    state = state.replace(step=state.step + 1, params=jax.tree.map(lambda x: x + 1.0, state.params))
    meta = {**{k: v for k, v in meta.items() if k != "integrity"}, "best_step": step}
    checkpointer.save(step, state, meta, best=True)
    checkpointer.close()
    assert teacher_lib.fingerprint(workdir) != teacher_lib.fingerprint(reference["workdir"])


def test_a_resume_from_another_teacher_is_refused_unless_overridden(
    tiny_config_module, digits_data_dir, reference, tmp_path, monkeypatch
):
    config = tiny(tiny_config_module, digits_data_dir, method="kd", num_epochs=1, max_steps=2)
    config.teacher.arch, config.teacher.checkpoint = config.model, reference["workdir"]
    workdir = str(tmp_path / "student")
    loop.run(config, workdir)  # stopped after 2 steps, its teacher recorded
    monkeypatch.setattr(setup, "variables_fingerprint", lambda variables: "a retrained teacher")
    config.max_steps = 0  # the whole epoch
    with pytest.raises(workdir_lib.RunMismatchError, match="another teacher"):
        loop.run(config, workdir)
    config.resume_policy = "override"
    assert int(loop.run(config, workdir)["state"].step[0]) == SPE
    assert workdir_lib.read_finished(workdir)["teacher"] == "a retrained teacher"
    monkeypatch.undo()
    # A suite does not reuse the finished student either: its teacher is not the one it recorded.
    with pytest.raises(workdir_lib.RunMismatchError, match="another teacher"):
        suite.finished(workdir, config)


def test_the_finished_record_is_json_and_removed_while_a_run_trains(reference, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(reference["workdir"], workdir)
    with open(os.path.join(workdir, workdir_lib.FINISHED_FILE)) as f:
        assert json.load(f) == reference["record"]
    workdir_lib.clear_finished(workdir)
    assert workdir_lib.read_finished(workdir) is None


def _saved_run(tmp_path, **fields):
    """A workdir with a checkpoint directory and the config.json of a run with ``fields``."""
    from sld_jax import configs_lib

    config = configs_lib.digits_config("vanilla", None, "resnet_tiny")
    for key, value in fields.items():
        config[key] = value
    workdir = tmp_path / "run"
    (workdir / "checkpoints" / "8").mkdir(parents=True)
    (workdir / workdir_lib.CONFIG_FILE).write_text(config.to_json())
    return str(workdir), config


def test_the_number_of_seeds_cannot_change_on_resume_under_any_policy(tmp_path):
    workdir, config = _saved_run(tmp_path, num_seeds=1)
    config.num_seeds, config.resume_policy = 4, "override"
    with pytest.raises(workdir_lib.RunMismatchError, match=r"num_seeds=1.*cannot resume with num_seeds=4"):
        workdir_lib.check_same_run(config, workdir)


def test_a_resume_with_another_dispatch_form_warns_that_results_change_by_rounding(tmp_path, caplog):
    workdir, config = _saved_run(tmp_path)
    config.seed_axis, config.steps_per_dispatch, config.data_placement = "vmap", 4, "host"
    with caplog.at_level("WARNING", logger="sld_jax"):
        workdir_lib.check_same_run(config, workdir)  # allowed
    assert "data_placement, seed_axis, steps_per_dispatch" in caplog.text and "rounding" in caplog.text


def test_a_run_stopped_before_its_first_epoch_ends_reads_its_last_checkpoint_as_best(
    tiny_config_module, digits_data_dir, tmp_path
):
    """No epoch ended: no best epoch is recorded and ``best/`` is empty; a reader of "best" gets
    the last checkpoint (as a dry run's tiny teacher is read)."""
    workdir = str(tmp_path / "run")
    loop.run(tiny(tiny_config_module, digits_data_dir, max_steps=2), workdir)
    assert saved_runs.recorded_best_step(workdir) == (True, None)
    _, meta = saved_runs.load_run_variables(workdir, which="best")
    assert meta["best_step"] is None


def test_a_full_disk_at_the_summary_is_one_error_and_the_rerun_finishes_the_run(
    tiny_config_module, digits_data_dir, reference, tmp_path, monkeypatch
):
    """The plot or summary cannot be written (ENOSPC): a user error naming the file, no torn file,
    no ``finished.json``; the rerun trains nothing and writes them. (The run is the uninterrupted
    one, copied, at the moment its last checkpoint is written.)"""
    import matplotlib.figure

    from sld_jax.train import report

    workdir = str(tmp_path / "run")
    shutil.copytree(reference["workdir"], workdir)
    for name in (workdir_lib.FINISHED_FILE, "summary.md", "accuracy.png"):
        os.remove(os.path.join(workdir, name))

    def full_disk(self, path, **kwargs):
        with open(path, "wb") as f:
            f.write(b"\x89PNG half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full_disk)
    with pytest.raises(report.ReportWriteError, match=r"accuracy\.png \(No space left on device\).*rerun"):
        loop.run(tiny(tiny_config_module, digits_data_dir), workdir)
    monkeypatch.undo()
    assert sorted(n for n in os.listdir(workdir) if n.endswith(".png") or ".tmp-" in n) == []
    assert workdir_lib.read_finished(workdir) is None
    result = loop.run(tiny(tiny_config_module, digits_data_dir), workdir)
    assert result["compiled_variants"] == {}  # nothing left to train
    assert_same_as_reference(workdir, result, reference)


def test_a_first_ctrl_c_saves_like_sigterm_and_a_second_aborts():
    """The trainer's handler: the first Ctrl-C (SIGINT) sets the stop flag (the step in flight
    finishes, a checkpoint is saved, the run returns ``stopped_by="Ctrl-C"``), a second one raises
    ``KeyboardInterrupt`` at once; both signals' previous handlers are back afterwards."""
    import signal

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with Preemption() as preemption:
        signal.raise_signal(signal.SIGINT)
        assert preemption.requested and preemption.signal_name == "Ctrl-C"
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    with Preemption() as preemption:
        signal.raise_signal(signal.SIGTERM)
        assert preemption.signal_name == "SIGTERM"
        signal.raise_signal(signal.SIGTERM)  # a second SIGTERM only repeats the request
    assert preemption.requested


def test_a_ctrl_c_inside_an_epoch_saves_that_step_and_the_rerun_equals_the_uninterrupted_run(
    tiny_config_module, digits_data_dir, reference, tmp_path, monkeypatch
):
    import signal

    from sld_jax.train import metrics as metrics_lib

    workdir = str(tmp_path / "run")
    update = metrics_lib.Progress.update

    def update_then_interrupt(self, *args, **kwargs):
        update(self, *args, **kwargs)
        if self.epoch == 2 and self._done == 3:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(metrics_lib.Progress, "update", update_then_interrupt)
    first = loop.run(tiny(tiny_config_module, digits_data_dir), workdir)
    monkeypatch.undo()
    assert first["preempted"] and first["stopped_by"] == "Ctrl-C"
    checkpointer = ckpt_lib.Checkpointer(workdir)
    assert max(checkpointer.all_steps()) == SPE + 3
    checkpointer.close()
    result = loop.run(tiny(tiny_config_module, digits_data_dir), workdir)
    assert_same_as_reference(workdir, result, reference)


def test_orbax_leftovers_of_a_failed_save_are_hidden_and_other_unraisables_are_not(monkeypatch):
    import types

    from sld_jax import cli

    seen = []
    monkeypatch.setattr("sys.__unraisablehook__", seen.append)
    closed = types.SimpleNamespace(exc_value=RuntimeError("Event loop is closed"), object=None)
    other = types.SimpleNamespace(exc_value=RuntimeError("something else"), object=None)
    cli._drop_orbax_leftovers(closed)
    cli._drop_orbax_leftovers(other)
    assert seen == [other]
