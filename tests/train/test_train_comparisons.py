"""Comparisons a user can trust: the statistics against scipy and hand-computed values, the
verdicts on constructed suites, bad input, ``comparisons.json`` recomputed from what it records,
and sweeps.

The suite tests replace ``loop.run`` by a fake that returns chosen per-seed top-1 values (no
training): what is checked is the comparison of those values.
"""

import importlib.util
import json
import math
import pathlib

import numpy as np
import pytest
from scipy import stats

from sld_jax import configs_lib
from sld_jax.errors import ConfigError
from sld_jax.train import comparisons, loop, suite, validation
from sld_jax.train import stats as stats_lib

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[2] / "configs"


def load(rel, arg=None):
    path = CONFIG_DIR / rel
    spec = importlib.util.spec_from_file_location(f"cfg_cmp_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


# --- the statistics ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 5, 12])
def test_paired_and_welch_tests_equal_scipy(n):
    rng = np.random.default_rng(n)
    a, b = rng.normal(0.9, 0.01, n), rng.normal(0.895, 0.02, n)
    ours = stats_lib.paired_t(a, b)
    ref = stats.ttest_rel(a, b)
    assert ours["df"] == ref.df
    np.testing.assert_allclose([ours["t"], ours["p"]], [ref.statistic, ref.pvalue], rtol=1e-10)
    np.testing.assert_allclose(ours["ci95"], tuple(ref.confidence_interval(0.95)), rtol=1e-10)
    b2 = rng.normal(0.89, 0.03, n + 1)  # unpaired: another size
    ours = stats_lib.welch_t(a, b2)
    ref = stats.ttest_ind(a, b2, equal_var=False)
    np.testing.assert_allclose(
        [ours["t"], ours["p"], ours["df"]], [ref.statistic, ref.pvalue, ref.df], rtol=1e-10
    )
    np.testing.assert_allclose(ours["ci95"], tuple(ref.confidence_interval(0.95)), rtol=1e-10)


def test_paired_t_by_hand():
    # d = (0.01, 0.02, 0.01): mean 0.04/3, sd 0.01/sqrt(3), se 0.01/3, t = 4, df = 2;
    # t(0.975, 2) = 4.302653 (tables); with 2 df P(T > t) = 1/2 - t / (2 sqrt(2 + t^2)), so
    # p = 1 - 4 / sqrt(18) = 0.057191.
    r = stats_lib.paired_t([0.91, 0.93, 0.92], [0.90, 0.91, 0.91])
    assert r["df"] == 2 and math.isclose(r["t"], 4.0, rel_tol=1e-9)
    assert math.isclose(r["p"], 1 - 4 / math.sqrt(18), rel_tol=1e-9)
    half = 4.302653 * 0.01 / 3
    np.testing.assert_allclose(r["ci95"], (0.04 / 3 - half, 0.04 / 3 + half), rtol=1e-6)


def test_holm_power_and_seeds_to_resolve_by_hand():
    # Holm: sorted 0.01 x 3, 0.03 x 2, 0.04 x 1 -> running maxima 0.03, 0.06, 0.06.
    assert stats_lib.holm([0.01, 0.04, 0.03]) == [0.03, 0.06, 0.06]
    assert stats_lib.holm([0.5, 0.9]) == [1.0, 1.0]
    # Paired, effect size d = 1 with 10 pairs: power 0.8031 (the noncentral t value G*Power gives).
    assert math.isclose(stats_lib.power(0.01, 0.01, 0.0, 10, paired=True), 0.8031, abs_tol=5e-4)
    assert stats_lib.seeds_to_resolve(0.01, 0.01, paired=True) == 10
    # Far in the tail (where scipy's noncentral t gives NaN) the power is 1, not NaN.
    assert stats_lib.power(0.01, 0.01, 0.0, 100, paired=True) == pytest.approx(1.0)
    assert stats_lib.seeds_to_resolve(0.0, 0.01, paired=True) is None
    assert stats_lib.seeds_to_resolve(1e-6, 0.05, paired=True) is None  # > MAX_SEEDS
    # Welch with equal spreads needs more seeds per run than the paired test at the same spread.
    assert stats_lib.seeds_to_resolve(0.01, 0.01, 0.01, paired=False) > 10


# --- suites -----------------------------------------------------------------------------------


class ChosenLoop:
    """Stands in for ``loop.run``: each run's per-seed best top-1 is ``values[run name]``."""

    def __init__(self, values):
        self.values = values

    def __call__(self, config, workdir):
        validation.validate(config)
        name = pathlib.Path(workdir).name
        per_seed = []
        for k, v in enumerate(self.values.get(name, [0.5] * config.get("num_seeds", 1))):
            h = [{"epoch": 1, "test_top1": v - 0.01}, {"epoch": 2, "test_top1": v}]
            per_seed.append({"seed": config.seed + k, "history": h, "best": h[1], "last": h[1]})
        return {"seeds": per_seed, "history": per_seed[0]["history"], "preempted": False, "workdir": workdir}


def run_demo(monkeypatch, tmp_path, values, **fields):
    config = load("digits/demo.py", "runlocal")
    for key, value in fields.items():
        config[key] = value
    monkeypatch.setattr(loop, "run", ChosenLoop(values))
    suite.run_suite(config, str(tmp_path))
    return json.loads((tmp_path / "comparisons.json").read_text())


def find(record, run, baseline, metric="best_top1"):
    return next(
        c for c in record["comparisons"] if (c["run"], c["baseline"], c["metric"]) == (run, baseline, metric)
    )


def test_a_clear_difference_is_better_identical_seeds_are_not_resolved(monkeypatch, tmp_path):
    vanilla = [0.900, 0.920, 0.880]
    values = {
        "vanilla": vanilla,
        "kd": list(vanilla),  # the same per seed: difference 0
        "sld": [v + d for v, d in zip(vanilla, (0.030, 0.031, 0.029))],  # +3 pp, paired spread 0.1 pp
    }
    record = run_demo(monkeypatch, tmp_path, values)
    same = find(record, "kd", "vanilla")
    assert same["test"] == "paired t" and same["mean_difference"] == 0
    assert same["verdict"] == "not resolved" and same["seeds_to_resolve"] is None
    better = find(record, "sld", "vanilla")
    assert better["verdict"] == "better" and better["test"] == "paired t"
    assert better["seeds"] == [0, 1, 2] and better["p_holm"] < 0.05
    # Unpaired, the seed-to-seed spread (2 pp) would hide the same 3 pp.
    assert stats.ttest_ind(values["sld"], vanilla, equal_var=False).pvalue > 0.05
    # The reversed pair (vanilla vs kd) is not compared twice; sld vs kd is.
    pairs = {(c["run"], c["baseline"]) for c in record["comparisons"]}
    assert pairs == {("kd", "vanilla"), ("sld", "vanilla"), ("sld", "kd")}
    below = [v - d for v, d in zip(vanilla, (0.030, 0.031, 0.029))]
    worse = run_demo(monkeypatch, tmp_path / "w", {**values, "sld": below})
    assert find(worse, "sld", "kd")["verdict"] == "worse"
    text = (tmp_path / "summary.md").read_text()
    assert "better" in text and "Holm" in text and (tmp_path / "comparison.png").stat().st_size > 0


def test_comparisons_json_is_recomputable_from_what_it_records(monkeypatch, tmp_path):
    values = {"vanilla": [0.90, 0.92, 0.88], "kd": [0.91, 0.925, 0.89], "sld": [0.93, 0.92, 0.905]}
    record = run_demo(monkeypatch, tmp_path, values)
    family = [c for c in record["comparisons"] if c["metric"] == "best_top1"]
    raw = []
    for c in family:
        ref = stats.ttest_rel(c["values"], c["baseline_values"])
        assert c["values"] == values[c["run"]] and c["baseline_values"] == values[c["baseline"]]
        assert math.isclose(c["p_value"], ref.pvalue, rel_tol=1e-9)
        raw.append(ref.pvalue)
    np.testing.assert_allclose([c["p_holm"] for c in family], stats_lib.holm(raw), rtol=1e-9)
    assert record["alpha"] == 0.05 and "holm" in record["correction"]


def test_different_students_are_compared_unpaired_and_one_seed_has_no_interval(monkeypatch, tmp_path):
    config = load("digits/demo.py", "runlocal")
    config.runs.kd.model = "resnet8"  # another architecture: seed k shares nothing with vanilla's
    pairs = dict(comparisons.pairs(config))
    c = comparisons.compare(
        "kd",
        "vanilla",
        {
            name: [{"seed": k, "best": {"test_top1": v}, "last": {"test_top1": v}} for k, v in enumerate(vs)]
            for name, vs in {"kd": [0.91, 0.93, 0.92], "vanilla": [0.90, 0.91, 0.91, 0.92]}.items()
        },
        config,
        "best_top1",
    )
    assert pairs["kd"] == "vanilla" and c.test == "Welch t" and c.differences == []
    assert math.isclose(
        c.p_value, stats.ttest_ind([0.91, 0.93, 0.92], [0.90, 0.91, 0.91, 0.92], equal_var=False).pvalue
    )
    run_demo(monkeypatch, tmp_path, {"vanilla": [0.9], "kd": [0.95], "sld": [0.97]})
    text = (tmp_path / "summary.md").read_text()
    one = next(line for line in text.splitlines() if line.startswith("| sld |"))
    assert "1 seed: no interval" in one and "±" not in one.split("|")[5]


def test_bad_comparisons_are_one_error_before_any_training(monkeypatch, tmp_path):
    monkeypatch.setattr(loop, "run", lambda *a: pytest.fail("trained"))
    config = load("digits/demo.py", "runlocal")
    config.baselines = ("kdd",)
    with pytest.raises(ConfigError, match=r"baselines \['kdd'\] are not runs"):
        suite.run_suite(config, str(tmp_path))
    config = load("digits/demo.py", "runlocal")
    config.comparisons = (("sld", "bogus"),)
    with pytest.raises(ConfigError, match=r"comparisons \[\('sld', 'bogus'\)\]"):
        suite.run_suite(config, str(tmp_path))
    config = load("digits/demo.py", "runlocal")
    config.runs.sld.seed = 10  # seeds 10..12 vs 0..2 of the same student: nothing to pair
    with pytest.raises(ConfigError, match=r"share no seed \(\[10, 11, 12\] vs \[0, 1, 2\]\)"):
        suite.run_suite(config, str(tmp_path))
    config = load("digits/demo.py", "runlocal")
    config.baselines = ()
    assert comparisons.pairs(config) == []
    assert not tmp_path.joinpath("summary.md").exists()


def test_the_ablation_table_compares_each_rung_with_the_previous():
    config = load("cifar100/tables/ablation_resnet32x4_resnet8x4.py")
    assert comparisons.pairs(config) == [
        ("kd_pa_lts", "kd_pa"),
        ("kd_pa_lts_lss_nogamma", "kd_pa_lts"),
        ("sld", "kd_pa_lts_lss_nogamma"),
    ]
    assert dict(config.paper) == {
        "kd_pa": 73.33,
        "kd_pa_lts": 75.15,
        "kd_pa_lts_lss_nogamma": 75.87,
        "sld": 77.69,
    }


# --- sweeps -----------------------------------------------------------------------------------


def test_a_sweep_trains_one_run_per_value_and_writes_its_table_and_plot(monkeypatch, tmp_path):
    config = load("digits/sweep_gamma.py", "runlocal")
    assert list(config.suite) == ["teacher", "gamma=0", "gamma=2", "gamma=5", "gamma=8"]
    assert [config.runs[n].loss.gamma for n in config.suite[1:]] == [0, 2, 5, 8]
    values = {f"gamma={g}": [0.80 + g / 100, 0.82 + g / 100, 0.81 + g / 100] for g in (0, 2, 5, 8)}
    monkeypatch.setattr(loop, "run", ChosenLoop(values))
    suite.run_suite(config, str(tmp_path))
    text = (tmp_path / "summary.md").read_text()
    assert "Sweep of loss.gamma" in text and (tmp_path / "sweep.png").stat().st_size > 0
    line = next(x for x in text.splitlines() if x.startswith("| 5 |"))
    # Seeds 85 / 87 / 86 %: mean 86, std 1, interval 86 ± t(0.975, 2) / sqrt(3).
    half = 4.302653 / math.sqrt(3)
    assert line == f"| 5 | 3 | 86.00 ± 1.00 | {86 - half:.2f}–{86 + half:.2f} |"
    assert not (tmp_path / "comparisons.json").exists()  # a sweep has no baseline by default


@pytest.mark.parametrize(
    ("field", "values", "message"),
    [
        ("loss.gama", (1, 2), "has no field 'loss.gama'"),
        ("method", (1, 2), "not a number"),
        ("loss.temperatures", (1, 2), "not a number"),
        ("loss.gamma", (), "non-empty tuple of numbers"),
        ("loss.gamma", ("a",), "non-empty tuple of numbers"),
        ("loss.gamma", (1, 1), "repeat a value"),
        ("loss.gamma", (1.5,), "whole number"),
    ],
)
def test_a_bad_sweep_is_one_error_when_the_config_is_built(field, values, message):
    base = configs_lib.digits_config("sld", "resnet20", "resnet8")
    with pytest.raises(ConfigError, match=message):
        configs_lib.sweep_suite(base, field=field, values=values)
