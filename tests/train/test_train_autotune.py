"""Autotuning of ``seed_axis="auto"`` and ``steps_per_dispatch=None`` where the backend's table has no
measured entry: pretended on the CPU by emptying the tables."""

import json
import logging
import os

import pytest

from sld_jax.train import autotune, hardware, loop


@pytest.fixture
def no_table(monkeypatch):
    monkeypatch.setattr(hardware, "AUTO_SEED_AXIS", {})
    monkeypatch.setattr(hardware, "AUTO_STEPS_PER_DISPATCH", {})
    # Two forms and two step counts keep the test's compilations few.
    monkeypatch.setattr(autotune, "SEED_AXIS_CANDIDATES", ("vmap", "unroll"))
    monkeypatch.setattr(autotune, "STEPS_CANDIDATES", (1, 2))
    monkeypatch.setattr(autotune, "TIMED_CALLS", 1)


def _config(tiny_config_module, data_dir, **fields):
    config = tiny_config_module.get_config("1")
    config.dataset.data_dir = data_dir
    config.num_devices = 1
    config.log_every_steps = 100
    for key, value in fields.items():
        config[key] = value
    return config


def test_what_is_tuned_follows_the_table(no_table, tiny_config_module, digits_data_dir, monkeypatch):
    config = _config(tiny_config_module, digits_data_dir, num_seeds=2)
    assert autotune.wanted(config) == ("seed_axis", "steps_per_dispatch")
    config.seed_axis, config.steps_per_dispatch = "vmap", 1
    assert autotune.wanted(config) == ()  # set by the user: nothing to tune
    assert autotune.wanted(_config(tiny_config_module, digits_data_dir)) == (
        "steps_per_dispatch",
    )  # one seed
    monkeypatch.setattr(hardware, "AUTO_SEED_AXIS", {"cpu": "unroll"})
    monkeypatch.setattr(hardware, "AUTO_STEPS_PER_DISPATCH", {"cpu": 1})
    assert autotune.wanted(_config(tiny_config_module, digits_data_dir, num_seeds=2)) == ()


def test_a_run_tunes_records_and_a_resume_reuses_the_record(
    no_table, tiny_config_module, digits_data_dir, tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(autotune, "MAX_FRACTION", 1e9)  # this tiny run would not pay for tuning
    config = _config(tiny_config_module, digits_data_dir, num_seeds=2, max_steps=4)
    workdir = str(tmp_path / "run")
    with caplog.at_level(logging.INFO, logger="sld_jax"):
        result = loop.run(config, workdir)
    record = json.loads((tmp_path / "run" / autotune.RECORD_FILE).read_text())
    tried = {(t["seed_axis"], t["steps_per_dispatch"]) for t in record["timings"]}
    assert {("vmap", 1), ("unroll", 1)} <= tried and len(tried) == 3  # both forms, then S = 2 with the faster
    fastest = min(record["timings"], key=lambda t: t["step_ms"])
    assert (record["seed_axis"], record["steps_per_dispatch"]) == (
        fastest["seed_axis"],
        fastest["steps_per_dispatch"],
    )
    assert record["backend"] == "cpu" and record["stopped_early"] is None
    assert "autotune: chose seed_axis=" in caplog.text
    assert int(result["state"].step[0]) == 4
    # A resume in the same workdir measures nothing and runs the recorded program.
    monkeypatch.setattr(autotune, "_time_candidate", lambda *a: pytest.fail("tuned again"))
    config.max_steps = 8
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sld_jax"):
        loop.run(config, workdir)
    assert f"using {autotune.RECORD_FILE}'s choice" in caplog.text


def test_a_short_run_stops_tuning_within_its_budget(
    no_table, tiny_config_module, digits_data_dir, tmp_path, monkeypatch
):
    """The run's default form is timed first, with the run's own step (compiled once, not again for
    training); a run this short pays for no second candidate."""
    monkeypatch.setattr(hardware, "DEFAULT_SEED_AXIS", "unroll")  # not the candidates' first
    monkeypatch.setattr(
        autotune, "compile_dispatch", lambda *a, **k: pytest.fail("a second copy of the step")
    )
    config = _config(tiny_config_module, digits_data_dir, num_seeds=2, max_steps=2)
    loop.run(config, str(tmp_path / "run"))
    record = json.loads((tmp_path / "run" / autotune.RECORD_FILE).read_text())
    assert len(record["timings"]) == 1 and "would take tuning past 3%" in record["stopped_early"]
    assert (record["timings"][0]["seed_axis"], record["timings"][0]["steps_per_dispatch"]) == ("unroll", 1)
    assert os.path.exists(tmp_path / "run" / "config.json")


def test_a_record_never_overrides_a_field_the_config_sets(
    no_table, tiny_config_module, digits_data_dir, tmp_path
):
    """A record that tuned both fields is not reused once the config sets one of them: the set value
    runs, and the other field is tuned anew (and recorded as such)."""
    config = _config(tiny_config_module, digits_data_dir, num_seeds=2)
    workdir = tmp_path / "run"
    workdir.mkdir()
    stale = dict(autotune._identity(), fields=["seed_axis", "steps_per_dispatch"], seed_axis="vmap")
    stale.update(steps_per_dispatch=2, timings=[], stopped_early=None, tuning_s=0.0)
    (workdir / autotune.RECORD_FILE).write_text(json.dumps(stale))
    config.steps_per_dispatch = 1
    assert autotune.read_record(str(workdir), autotune.wanted(config)) is None
    assert autotune.read_record(str(workdir), ("seed_axis", "steps_per_dispatch")) == stale

    class Run:  # what apply reads and replaces
        seed_axis, steps_per_dispatch = "unroll", 1

    only_axis = dict(stale, fields=["seed_axis"], seed_axis="unroll")
    assert autotune.apply(Run, only_axis) is Run  # steps_per_dispatch stays the run's 1, not the record's 2
