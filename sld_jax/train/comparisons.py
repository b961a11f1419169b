"""Does run A beat run B? Paired differences over seeds, 95 % intervals, p-values and verdicts.

A suite's runs are compared with baselines (:func:`pairs`): by default every student with ``kd``
where the suite has it, else ``vanilla`` (per row of a grid); a suite config sets ``baselines``
(run or method names) or explicit ``comparisons`` (``(run, baseline)`` pairs) instead.

**The method.** For one metric (best or last test top-1 over epochs, per seed):

- *Paired* when seed k of both runs shares its initialisation and data order — the same student
  architecture, dataset, training-set limit and batch size, and the same ``seed_axis_shares_data``
  — over the seeds the two runs have in common: Student's t on the per-seed differences
  ``d_k = A_k - B_k`` (``n - 1`` degrees of freedom). Pairing removes the seed-to-seed spread the
  two runs share.
- *Unpaired* otherwise (e.g. two student architectures): Welch's t (unequal variances,
  Welch–Satterthwaite degrees of freedom) on all seeds of each run.
- The 95 % confidence interval of the mean difference is ``mean ± t(0.975, df) · se``; the p-value
  is two-sided. The p-values of one suite and metric are adjusted with **Holm's** step-down
  correction over all its comparisons (the family-wise error stays at 5 %); the verdict uses the
  adjusted p-value: ``better`` / ``worse`` when it is below 0.05 (by the sign of the mean
  difference), else ``not resolved``. The interval is not adjusted, so with several comparisons an
  interval that excludes 0 can still read "not resolved".
- For "not resolved", ``seeds_to_resolve`` is the smallest number of seeds per run at which a
  difference of the observed size, at the observed spread, would be detected with 80 % power by
  the same (unadjusted, two-sided 5 %) test, from the noncentral t distribution; None when the
  observed difference is 0, and ">1000" is reported as None with a note.
- With one seed (or one common seed) there is no spread: no interval, no p-value, and the
  verdict says so ("1 seed: no interval"); never a fake ±.

**Limits.** Three seeds give 2 degrees of freedom: t(0.975, 2) = 4.30, so only differences several
times the seed spread resolve. Seeds are a sample of initialisations and data orders of one recipe
on one machine; the test says nothing about other recipes, hardware or datasets. Best-over-epochs
top-1 is selected on the test split (as the reference reports): it is optimistic for every run
alike, and a comparison of last-epoch top-1 is written beside it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable

import ml_collections

from sld_jax.errors import ConfigError
from sld_jax.train import validation
from sld_jax.train.stats import ALPHA, holm, mean_sd, paired_t, seeds_to_resolve, welch_t

METRICS = ("best_top1", "last_top1")
# Fields that must be equal for seed k of two runs to share its initialisation and data order.
PAIRING_FIELDS = ("model", "dataset.name", "dataset.limit_train", "batch_size", "seed_axis_shares_data")
# The automatic baseline: the first of these that a suite (or a grid row) has.
DEFAULT_BASELINES = ("kd", "vanilla")


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One run against one baseline on one metric (values are fractions, as in ``metrics.jsonl``).

    Attributes:
      run, baseline: run names of the suite.
      metric: ``"best_top1"`` (maximum test top-1 over epochs) or ``"last_top1"`` (last epoch).
      test: ``"paired t"``, ``"Welch t"`` or ``"none"`` (fewer than two seeds).
      seeds: the seeds compared (paired: the common seeds; Welch: the run's seeds).
      baseline_seeds: the baseline's seeds compared.
      values, baseline_values: the metric per seed, in the order of ``seeds`` / ``baseline_seeds``.
      differences: per-seed ``values - baseline_values`` (paired only, else empty).
      mean_difference: mean of the differences (paired) or difference of the means (Welch).
      ci95: the 95 % interval of ``mean_difference`` (None without a spread).
      df: degrees of freedom of the t statistic (None without a spread).
      t: the t statistic (None without a spread; ``±inf`` for a constant nonzero difference).
      p_value: two-sided p-value (None without a spread).
      p_holm: ``p_value`` after Holm's correction over the suite's comparisons of this metric.
      verdict: ``"better"``, ``"worse"``, ``"not resolved"`` or ``"1 seed: no interval"``.
      seeds_to_resolve: for "not resolved": seeds per run at which 80 % power is reached (None:
        no difference, or more than :data:`MAX_SEEDS`).
    """

    run: str
    baseline: str
    metric: str
    test: str
    seeds: list[int]
    baseline_seeds: list[int]
    values: list[float]
    baseline_values: list[float]
    differences: list[float]
    mean_difference: float
    ci95: tuple[float, float] | None
    df: float | None
    t: float | None
    p_value: float | None
    p_holm: float | None = None
    verdict: str = "not resolved"
    seeds_to_resolve: int | None = None

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["ci95"] = list(self.ci95) if self.ci95 is not None else None
        if self.t is not None and math.isinf(self.t):  # JSON has no infinity
            out["t"] = "inf" if self.t > 0 else "-inf"
        return out


def is_paired(run: ml_collections.ConfigDict, baseline: ml_collections.ConfigDict) -> bool:
    """Whether seed k of the two runs shares its initialisation and data order
    (:data:`PAIRING_FIELDS` equal)."""
    a, b = dict(validation.flatten(run)), dict(validation.flatten(baseline))
    return all(a.get(f) == b.get(f) for f in PAIRING_FIELDS)


def _seeds_of(config: ml_collections.ConfigDict) -> list[int]:
    return [int(config.seed) + k for k in range(int(config.get("num_seeds", 1)))]


def short_name(name: str) -> str:
    """A run's name without its grid row: ``"row/kd"`` -> ``"kd"``.

    >>> short_name("resnet32x4_resnet8x4/kd"), short_name("vanilla")
    ('kd', 'vanilla')
    """
    return _row_of(name)[1]


def _row_of(name: str) -> tuple[str, str]:
    """``("row/", "method")`` of a grid run name, ``("", name)`` otherwise."""
    row, _, method = name.rpartition("/")
    return (row + "/" if row else ""), method


def pairs(config: ml_collections.ConfigDict) -> list[tuple[str, str]]:
    """The ``(run, baseline)`` pairs a suite compares, in table order.

    ``config.comparisons`` (pairs of run names) when set; else, for every name ``b`` of
    ``config.baselines`` (default: the first of :data:`DEFAULT_BASELINES` present) and every run of
    the same grid row (its ``<row>/`` prefix; a plain suite is one row) but ``b`` itself and the
    teacher run: ``(run, <row>/b)`` — unless that pair was already compared the other way round.

    Raises:
      ConfigError: a named run or baseline is not in the suite, a pair compares a run with itself,
        or two runs that must be paired (:func:`is_paired`) have no seed in common.
    """
    suite = list(config.suite)
    teacher = config.get("teacher_run")
    explicit = config.get("comparisons")
    if explicit:
        out = [tuple(p) for p in explicit]
        bad = [p for p in out if len(p) != 2 or p[0] not in suite or p[1] not in suite or p[0] == p[1]]
        if bad:
            raise ConfigError(
                f"comparisons {bad} must be (run, baseline) pairs of two different runs of the suite {suite}."
            )
    else:
        names = config.get("baselines")
        rows = {_row_of(n)[0] for n in suite}
        if names is None:
            methods = {_row_of(n)[1] for n in suite}
            names = next(((b,) for b in DEFAULT_BASELINES if b in methods), ())
        missing = [b for b in names if not any(r + b in suite for r in rows)]
        if missing:
            raise ConfigError(
                f"baselines {missing} are not runs (or grid methods) of the suite {suite}; set "
                "--config.baselines to names of its runs."
            )
        out, seen = [], set()
        for b in names:
            for name in suite:
                row, _ = _row_of(name)
                base = row + b
                if base not in suite or name in (base, teacher) or base == teacher:
                    continue
                if (base, name) in seen or (name, base) in seen:
                    continue
                seen.add((name, base))
                out.append((name, base))
    for run, base in out:
        a, b = config.runs[run], config.runs[base]
        if is_paired(a, b) and not set(_seeds_of(a)) & set(_seeds_of(b)):
            raise ConfigError(
                f"runs {run!r} and {base!r} train the same student on the same data but share no "
                f"seed ({_seeds_of(a)} vs {_seeds_of(b)}), so they cannot be compared seed by seed; "
                f"give them the same seed (--config.runs.<name>.seed)."
            )
    return out


def _metric(result: dict, metric: str) -> float:
    record = result["best"] if metric == "best_top1" else result["last"]
    return float(record["test_top1"])


def compare(
    run: str,
    baseline: str,
    results: dict[str, list[dict]],
    config: ml_collections.ConfigDict,
    metric: str,
) -> Comparison:
    """The comparison of ``run`` with ``baseline`` on ``metric`` from the suite's per-seed results
    (``{name: [{"seed", "best", "last", ...}]}``), before Holm's correction."""
    done = {
        name: {r["seed"]: _metric(r, metric) for r in results[name] if r["best"] is not None}
        for name in (run, baseline)
    }
    a, b = done[run], done[baseline]
    paired = is_paired(config.runs[run], config.runs[baseline])
    if paired:
        seeds = sorted(set(a) & set(b))
        seeds_a = seeds_b = seeds
    else:
        seeds_a, seeds_b = sorted(a), sorted(b)
    values, base_values = [a[s] for s in seeds_a], [b[s] for s in seeds_b]
    common = dict(
        run=run,
        baseline=baseline,
        metric=metric,
        seeds=seeds_a,
        baseline_seeds=seeds_b,
        values=values,
        baseline_values=base_values,
    )
    if min(len(values), len(base_values)) < 2:
        mean = (
            (sum(values) / len(values) - sum(base_values) / len(base_values))
            if values and base_values
            else 0.0
        )
        diffs = [x - y for x, y in zip(values, base_values)] if paired else []
        return Comparison(
            **common,
            test="none",
            differences=diffs,
            mean_difference=mean,
            ci95=None,
            df=None,
            t=None,
            p_value=None,
            verdict=f"{min(len(values), len(base_values))} seed: no interval",
        )
    if paired:
        r = paired_t(values, base_values)
        needed = seeds_to_resolve(r["mean"], r["sd"], paired=True)
        diffs = r["differences"]
    else:
        r = welch_t(values, base_values)
        needed = seeds_to_resolve(r["mean"], mean_sd(values)[1], mean_sd(base_values)[1], paired=False)
        diffs = []
    return Comparison(
        **common,
        test="paired t" if paired else "Welch t",
        differences=diffs,
        mean_difference=r["mean"],
        ci95=r["ci95"],
        df=r["df"],
        t=r["t"],
        p_value=r["p"],
        seeds_to_resolve=needed,
    )


def with_verdicts(comparisons: Iterable[Comparison]) -> list[Comparison]:
    """Holm's correction over the comparisons of each metric, and the verdicts."""
    out = list(comparisons)
    for metric in METRICS:
        idx = [i for i, c in enumerate(out) if c.metric == metric and c.p_value is not None]
        for i, p in zip(idx, holm([out[i].p_value for i in idx])):
            c = out[i]
            resolved = p < ALPHA and c.mean_difference != 0
            verdict = ("better" if c.mean_difference > 0 else "worse") if resolved else "not resolved"
            out[i] = dataclasses.replace(
                c, p_holm=p, verdict=verdict, seeds_to_resolve=None if resolved else c.seeds_to_resolve
            )
    return out


def compare_suite(config: ml_collections.ConfigDict, results: dict[str, list[dict]]) -> list[Comparison]:
    """Every comparison of :func:`pairs` whose two runs have results, for both metrics, with Holm's
    correction and verdicts."""
    found = [
        compare(run, base, results, config, metric)
        for metric in METRICS
        for run, base in pairs(config)
        if results.get(run) and results.get(base)
    ]
    return with_verdicts(found)
