"""A suite's pictures and side tables: ``comparison.png``, ``comparisons.json`` and a sweep's
``sweep.png`` and table (the suite's own table is :func:`sld_jax.train.suite.format_table`).

- ``comparison.png``: per grid row (one row for a plain suite), on the left the mean test top-1
  over epochs of each run with a ± std band over its seeds, on the right the best test top-1 of
  every seed as dots with the mean and its 95 % interval (t over seeds; none for one seed).
- ``comparisons.json``: :func:`comparisons_json` of the suite's comparisons.
- For a sweep (``config.sweep``: ``field``, ``grid`` (its values) and ``runs``, :func:`sld_jax.configs_lib.sweep_suite`):
  a markdown table and ``sweep.png`` of best test top-1 against the field's value, mean and 95 %
  interval over seeds.
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

import ml_collections

from sld_jax.train import comparisons as comparisons_lib
from sld_jax.train import report, seeds, stats


def mean_ci(values: Sequence[float]) -> tuple[float, float | None, float | None]:
    """``(mean, low, high)``: the mean and its 95 % t interval over ``values`` (no interval, None,
    for fewer than two values).

    >>> m, lo, hi = mean_ci([0.90, 0.92, 0.94])
    >>> round(m, 4), round(lo, 4), round(hi, 4)
    (0.92, 0.8703, 0.9697)
    """
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None, None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def _rows(config: ml_collections.ConfigDict, results: dict[str, list[dict]]) -> dict[str, list[str]]:
    """Row name ("" for a plain suite) -> its runs with results, in suite order."""
    rows: dict[str, list[str]] = {}
    for name in config.suite:
        if results.get(name):
            rows.setdefault(name.rsplit("/", 1)[0] if "/" in name else "", []).append(name)
    return rows


def _best_values(per_seed: list[dict]) -> list[float]:
    return [r["best"]["test_top1"] for r in per_seed if r["best"] is not None]


def plot_comparison(config: ml_collections.ConfigDict, results: dict[str, list[dict]], path: str) -> str:
    """Writes ``comparison.png`` (see the module docstring); returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = _rows(config, results)
    fig, axes = plt.subplots(len(rows), 2, figsize=(11, 3.6 * len(rows)), dpi=100, squeeze=False)
    for (row, names), (curves, dots) in zip(rows.items(), axes):
        for i, name in enumerate(names):
            color, label = f"C{i % 10}", comparisons_lib.short_name(name)
            histories = [r["history"] for r in results[name] if r["history"]]
            if not histories:
                continue
            length = min(len(h) for h in histories)
            top1 = 100 * np.array([[e["test_top1"] for e in h[:length]] for h in histories])
            epochs = [e["epoch"] for e in histories[0][:length]]
            mean = top1.mean(0)
            curves.plot(
                epochs,
                mean,
                color=color,
                label=f"{label} ({len(histories)} seed{'s' if len(histories) != 1 else ''})",
            )
            if len(histories) > 1:
                std = top1.std(0, ddof=1)
                curves.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
            best = [100 * v for v in _best_values(results[name])]
            dots.scatter([i] * len(best), best, color=color, s=18, alpha=0.7)
            m, lo, hi = mean_ci(best)
            if lo is None:
                dots.plot([i], [m], marker="_", markersize=18, color=color)
            else:
                dots.errorbar(
                    [i], [m], yerr=[[m - lo], [hi - m]], fmt="_", markersize=18, capsize=5, color=color
                )
        curves.set_xlabel("epoch")
        curves.set_ylabel("test top-1 (%)")
        curves.set_title(f"{row + ': ' if row else ''}mean ± std over seeds")
        curves.grid(alpha=0.3)
        curves.legend(fontsize="small")
        dots.set_xticks(range(len(names)), [comparisons_lib.short_name(n) for n in names], rotation=20)
        dots.set_ylabel("best test top-1 (%)")
        dots.set_title("per seed; mean and 95 % interval")
        dots.grid(alpha=0.3, axis="y")
    return report.save_figure(fig, path)


def sweep_points(config: ml_collections.ConfigDict, results: dict[str, list[dict]]) -> list[dict[str, Any]]:
    """Per value of the sweep with results: ``{"value", "run", "n", "mean", "low", "high", "values"}``
    of best test top-1 (fractions)."""
    sweep = config.sweep
    points = []
    for name, value in zip(sweep.runs, sweep.grid):
        best = _best_values(results.get(name) or [])
        if best:
            mean, lo, hi = mean_ci(best)
            points.append(
                {
                    "value": value,
                    "run": name,
                    "n": len(best),
                    "mean": mean,
                    "low": lo,
                    "high": hi,
                    "values": best,
                }
            )
    return points


def format_sweep(config: ml_collections.ConfigDict, points: list[dict[str, Any]]) -> str:
    """The sweep's markdown table: value, seeds, best test top-1 mean ± std and its 95 % interval."""
    field = config.sweep.field
    lines = [f"| {field} | seeds | best test top-1 (%) | 95 % interval (%) |", "| --- | --- | --- | --- |"]
    for p in points:
        interval = (
            "1 seed: no interval" if p["low"] is None else f"{100 * p['low']:.2f}–{100 * p['high']:.2f}"
        )
        lines.append(f"| {p['value']:g} | {p['n']} | {seeds.format_mean_std(p['values'])} | {interval} |")
    return "\n".join(lines)


def plot_sweep(config: ml_collections.ConfigDict, points: list[dict[str, Any]], path: str) -> str:
    """Writes ``sweep.png``: best test top-1 against the swept value, mean and 95 % interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for p in points:
        ax.scatter([p["value"]] * p["n"], [100 * v for v in p["values"]], color="C0", s=14, alpha=0.5)
    xs = [p["value"] for p in points]
    ms = [100 * p["mean"] for p in points]
    err = [[m - 100 * (p["low"] if p["low"] is not None else p["mean"]) for m, p in zip(ms, points)],
           [100 * (p["high"] if p["high"] is not None else p["mean"]) - m for m, p in zip(ms, points)]]  # fmt: skip
    ax.errorbar(xs, ms, yerr=err, color="C1", marker="o", capsize=4, label="mean, 95 % interval")
    ax.set_xlabel(config.sweep.field)
    ax.set_ylabel("best test top-1 (%)")
    ax.set_title(config.get("description") or config.name, fontsize="small")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return report.save_figure(fig, path)


def write_comparisons(comparisons: list[comparisons_lib.Comparison], path: str) -> str:
    """Writes ``comparisons.json`` atomically; returns ``path``."""
    return report.write_output(path, json.dumps(comparisons_json(comparisons), indent=1))


def format_cell(c: comparisons_lib.Comparison) -> str:
    """A table cell: ``+0.84 [-0.52, +2.20] p=0.12 not resolved (≈9 seeds)``, in percentage points.

    >>> c = comparisons_lib.Comparison("a", "b", "best_top1", "paired t", [0, 1], [0, 1], [0.9, 0.92], [0.9, 0.9],
    ...                [0.0, 0.02], 0.01, (-0.117, 0.137), 1, 1.0, 0.5, 0.5, "not resolved", 40)
    >>> format_cell(c)
    '+1.00 [-11.70, +13.70] p=0.5 not resolved (≈40 seeds)'
    """
    if c.ci95 is None:
        return f"{100 * c.mean_difference:+.2f} ({c.verdict})"
    lo, hi = c.ci95
    p = c.p_holm if c.p_holm is not None else c.p_value
    text = f"{100 * c.mean_difference:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}] p={p:.2g} {c.verdict}"
    if c.verdict == "not resolved":
        more = (
            f"≈{c.seeds_to_resolve} seeds"
            if c.seeds_to_resolve
            else ("no difference" if c.mean_difference == 0 else f">{stats.MAX_SEEDS} seeds")
        )
        text += f" ({more})"
    return text


METHOD_TEXT = (
    "Paired t-test on per-seed differences where seed k of both runs shares initialisation and data "
    "order (same student, data and batch), Welch's t-test otherwise; two-sided, 95 % intervals "
    "(unadjusted); verdicts at 5 % after Holm's correction over the suite's comparisons of each "
    "metric; seeds to resolve at 80 % power (noncentral t). Differences in percentage points of "
    "test top-1. See sld_jax/train/comparisons.py."
)


def comparisons_json(comparisons: Sequence[comparisons_lib.Comparison]) -> dict[str, Any]:
    """``comparisons.json``'s content: the method, the settings and every comparison."""
    return {
        "method": METHOD_TEXT,
        "alpha": stats.ALPHA,
        "power": stats.POWER,
        "correction": "holm (per metric, over all comparisons of the suite)",
        "units": "fractions of test examples (as metrics.jsonl); table cells are percentage points",
        "comparisons": [c.to_json() for c in comparisons],
    }
