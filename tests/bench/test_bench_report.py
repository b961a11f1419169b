"""``python -m sld_jax.bench report``: its sections run within the budget, their tables land in
report.json and report.md, and the defaults follow the seed tables (speed is measured, not tested)."""

import json

import pytest

from sld_jax.bench import report


def test_report_runs_its_sections_writes_both_files_and_skips_past_the_budget(tmp_path, monkeypatch, capsys):
    tiny = [
        ("lm", "lm", ["--divergences", "jsd", "--sizes", "8x16", "--hidden", "4", "--token-chunk", "4", "--repeats", "1"]),
        ("loss", "loss", ["--no-torch", "--repeats", "1", "--min-time", "0", "--sizes", "4x5"]),
    ]  # fmt: skip
    monkeypatch.setattr(report, "sections", lambda backend, quick=False: tiny)
    assert report.main(["--out", str(tmp_path), "--budget-min", "10"]) == 0
    saved = json.loads((tmp_path / "report.json").read_text())
    assert [s["name"] for s in saved["sections"]] == ["lm", "loss"]
    assert all(s["status"] == "ok" and s["rows"] for s in saved["sections"])
    assert saved["sections"][0]["rows"][0]["loss"] == "jsd"
    assert "## lm" in (tmp_path / "report.md").read_text()
    assert "defaults for cpu" in capsys.readouterr().out
    # A spent budget runs nothing and says so.
    report.run_report(0, str(tmp_path / "none"))
    saved = json.loads((tmp_path / "none" / "report.json").read_text())
    assert all(s["status"].startswith("skipped") for s in saved["sections"])


def test_a_budget_under_a_minute_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        report.main(["--budget-min", "0.5"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--budget-min 0.5 is too short: give at least 1 minute" in err


def test_defaults_take_the_fastest_form_per_k_and_the_steps_that_win_most():
    def row(form, k, ms, s):
        return {"seed axis": form, "K": str(k), "ms/step (all seeds)": str(ms), "steps_per_dispatch": str(s)}

    rows = [
        row("one seed (plain step)", 1, 90, 1),
        row("unroll", 2, 170, 1),
        row("vmap", 2, 250, 1),
        row("unroll", 2, 160, 4),
        row("vmap", 2, 200, 4),
        row("vmap", 4, 300, 4),
        row("unroll", 4, 360, 1),
    ]
    assert report.choose_defaults(rows) == {
        "seed_axis_by_num_seeds": {2: "unroll", 4: "vmap"},
        "steps_per_dispatch": 4,
    }


def test_the_seed_table_of_the_step_benchmark_runs(capsys, monkeypatch):
    """The table's own logic (a stand-in step: nothing is compiled)."""
    from sld_jax.bench import step

    monkeypatch.setattr(step, "jax_step", lambda batch, num_seeds=1, **kw: lambda: None)
    argv = "--num-seeds 1,2 --seed-axis unroll,auto --models resnet_tiny,resnet_tiny --dataset digits --batch-sizes 8"
    assert step.main(argv.split() + ["--min-time", "0"]) == 0
    rows = report.parse_tables(capsys.readouterr().out)
    assert [(r["seed axis"], r["K"]) for r in rows] == [
        ("one seed (plain step)", "1"),
        ("unroll", "2"),
        ("auto (unroll)", "2"),
    ]
