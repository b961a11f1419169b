"""The seed axis: which seeds a run trains, per-seed results, and their mean ± std.

A run with ``num_seeds = K`` trains the seeds ``seed, seed + 1, ..., seed + K - 1`` at once (one
leading axis on the train state). Seed ``seed + k`` gets exactly the parameter initialisation,
data order and augmentation keys a ``num_seeds = 1`` run with ``seed = seed + k`` would get, so a
K-seed run equals K separate runs.

A run's checkpoint metadata and :func:`sld_jax.train.loop.run`'s result carry one entry per seed
(:func:`per_seed`); summaries report the mean, the sample standard deviation (``ddof=1``), the
minimum and the maximum over seeds (:func:`summarize`).
"""

from __future__ import annotations

import math
from typing import Any, Sequence


def seed_values(seed: int, num_seeds: int) -> list[int]:
    """The seeds of a run: ``[seed, seed + 1, ..., seed + num_seeds - 1]``.

    >>> seed_values(3, 2)
    [3, 4]
    """
    return [int(seed) + k for k in range(int(num_seeds))]


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (``ddof=1``; 0.0 for one value), minimum and maximum.

    Args:
      values: one number per seed (e.g. best test top-1 as a fraction).

    Returns:
      ``{"mean", "std", "min", "max", "n", "values"}``.

    >>> s = summarize([0.90, 0.92, 0.94])
    >>> round(s["mean"], 4), round(s["std"], 4), s["min"], s["max"], s["n"]
    (0.92, 0.02, 0.9, 0.94, 3)
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("summarize needs at least one value (one per seed).")
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(values), "max": max(values), "n": n, "values": values}


def format_mean_std(values: Sequence[float], *, scale: float = 100.0, digits: int = 2) -> str:
    """``"91.92 ± 0.35"`` (percent by default); a single value is printed alone.

    >>> format_mean_std([0.9, 0.92, 0.94])
    '92.00 ± 2.00'
    >>> format_mean_std([0.9])
    '90.00'
    """
    s = summarize(values)
    if s["n"] == 1:
        return f"{scale * s['mean']:.{digits}f}"
    return f"{scale * s['mean']:.{digits}f} ± {scale * s['std']:.{digits}f}"


def per_seed(meta: dict) -> list[dict[str, Any]]:
    """One ``{"seed", "history", "best", "last"}`` per seed from a run's checkpoint metadata.

    Metadata of runs saved before the seed axis (``history``/``best`` of one seed) read as one seed.
    """
    if "histories" in meta:
        seeds, histories, bests = meta["seeds"], meta["histories"], meta["bests"]
    else:
        seeds, histories, bests = [meta.get("seed")], [meta.get("history") or []], [meta.get("best")]
    return [
        {"seed": s, "history": list(h or []), "best": b, "last": (h[-1] if h else None)}
        for s, h, b in zip(seeds, histories, bests)
    ]


def summary(results: Sequence[dict]) -> dict[str, dict[str, Any]]:
    """``{"best_top1": summarize(...), "last_top1": summarize(...)}`` over per-seed results.

    Args:
      results: :func:`per_seed`-style dicts whose ``best`` and ``last`` records have ``test_top1``.
    """
    done = [r for r in results if r["best"] is not None and r["last"] is not None]
    if not done:
        return {}
    return {
        "best_top1": summarize([r["best"]["test_top1"] for r in done]),
        "last_top1": summarize([r["last"]["test_top1"] for r in done]),
    }
