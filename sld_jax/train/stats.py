"""The statistics of :mod:`sld_jax.train.comparisons`: Student's paired t, Welch's t, the power of
the test and the seeds it needs, and Holm's correction. Pure functions of lists of floats (scipy
for the t and noncentral t distributions, imported when called).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

ALPHA = 0.05  # two-sided level of the tests (after Holm's correction for the verdict)
POWER = 0.8  # the power at which seeds_to_resolve detects the observed difference
MAX_SEEDS = 1000  # seeds_to_resolve searches up to this many seeds per run


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """``(mean, sample standard deviation)`` of n >= 2 values."""
    n = len(values)
    mean = sum(values) / n
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def _t_test(mean: float, se: float, df: float) -> tuple[float, float, tuple[float, float]]:
    """``(t, two-sided p, 95 % interval)`` of a mean with standard error ``se`` and ``df``."""
    from scipy import stats

    half = float(stats.t.ppf(1 - ALPHA / 2, df)) * se
    if se == 0:
        t = 0.0 if mean == 0 else math.copysign(math.inf, mean)
        return t, 1.0 if mean == 0 else 0.0, (mean, mean)
    t = mean / se
    return t, float(2 * stats.t.sf(abs(t), df)), (mean - half, mean + half)


def paired_t(values: Sequence[float], baseline: Sequence[float]) -> dict[str, Any]:
    """Student's t on the per-seed differences ``values - baseline`` (two-sided, 95 % interval).

    Args:
      values, baseline: the metric per seed, the same seeds in the same order (n >= 2).

    Returns:
      ``{"differences", "mean", "sd", "se", "df", "t", "p", "ci95"}``.

    >>> r = paired_t([0.91, 0.93, 0.92], [0.90, 0.91, 0.91])
    >>> round(r["mean"], 4), r["df"], round(r["t"], 3), round(r["p"], 4)
    (0.0133, 2, 4.0, 0.0572)
    """
    if len(values) != len(baseline) or len(values) < 2:
        raise ValueError(
            f"paired_t needs two equal-length sequences of >= 2 values, got {len(values)}, {len(baseline)}."
        )
    diffs = [float(a) - float(b) for a, b in zip(values, baseline)]
    mean, sd = mean_sd(diffs)
    se = sd / math.sqrt(len(diffs))
    t, p, ci = _t_test(mean, se, len(diffs) - 1)
    return {
        "differences": diffs,
        "mean": mean,
        "sd": sd,
        "se": se,
        "df": len(diffs) - 1,
        "t": t,
        "p": p,
        "ci95": ci,
    }


def welch_t(values: Sequence[float], baseline: Sequence[float]) -> dict[str, Any]:
    """Welch's unequal-variance t on two independent samples (two-sided, 95 % interval).

    Returns:
      ``{"mean" (difference of the means), "se", "df" (Welch–Satterthwaite), "t", "p", "ci95"}``.

    >>> r = welch_t([0.91, 0.93, 0.92], [0.90, 0.91, 0.91, 0.92])
    >>> round(r["mean"], 4), round(r["df"], 2), round(r["p"], 4)
    (0.01, 3.86, 0.2327)
    """
    if len(values) < 2 or len(baseline) < 2:
        raise ValueError(f"welch_t needs >= 2 values per sample, got {len(values)} and {len(baseline)}.")
    (ma, sa), (mb, sb) = mean_sd([float(v) for v in values]), mean_sd([float(v) for v in baseline])
    va, vb = sa**2 / len(values), sb**2 / len(baseline)
    se = math.sqrt(va + vb)
    if se == 0:
        df = float(len(values) + len(baseline) - 2)
    else:
        df = (va + vb) ** 2 / (va**2 / (len(values) - 1) + vb**2 / (len(baseline) - 1))
    t, p, ci = _t_test(ma - mb, se, df)
    return {"mean": ma - mb, "se": se, "df": df, "t": t, "p": p, "ci95": ci}


def power(effect: float, sd_a: float, sd_b: float, n: int, *, paired: bool) -> float:
    """Power of the two-sided 5 % t-test to detect a mean difference ``effect`` with ``n`` seeds
    per run: paired (``sd_a``: sd of the differences) or Welch (``sd_a``, ``sd_b``: each run's sd).

    >>> round(power(0.01, 0.01, 0.0, 10, paired=True), 3)
    0.803
    """
    from scipy import stats

    if paired:
        se, df = sd_a / math.sqrt(n), n - 1
    else:
        va, vb = sd_a**2 / n, sd_b**2 / n
        se = math.sqrt(va + vb)
        df = (va + vb) ** 2 / ((va**2 + vb**2) / (n - 1)) if se > 0 else 2 * n - 2
    if se == 0:
        return 1.0 if effect else 0.0
    crit, nc = float(stats.t.ppf(1 - ALPHA / 2, df)), abs(effect) / se
    p = float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))
    if math.isnan(p):  # scipy's noncentral t fails far in its tail: the normal limit there
        p = float(stats.norm.sf(crit - nc) + stats.norm.cdf(-crit - nc))
    return p


def seeds_to_resolve(effect: float, sd_a: float, sd_b: float = 0.0, *, paired: bool) -> int | None:
    """The smallest seeds per run (>= 2) with :func:`power` >= 80 %; None for no effect or more
    than :data:`MAX_SEEDS`.

    >>> seeds_to_resolve(0.01, 0.01, paired=True)
    10
    """
    if effect == 0:
        return None
    lo, hi = 2, MAX_SEEDS
    if power(effect, sd_a, sd_b, hi, paired=paired) < POWER:
        return None
    while lo < hi:  # power grows with n
        mid = (lo + hi) // 2
        if power(effect, sd_a, sd_b, mid, paired=paired) >= POWER:
            hi = mid
        else:
            lo = mid + 1
    return lo


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given), each at most 1.

    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = round(running, 15)
    return adjusted
