"""Shared benchmark helpers: timing of jitted functions (and the machine line every table names)."""

from __future__ import annotations

import time
from typing import Callable

from sld_jax.machine import machine_description

__all__ = ["machine_description", "time_fn"]


def time_fn(fn: Callable[[], object], *, warmup: int = 2, min_time: float = 1.0, min_iters: int = 5) -> float:
    """Median seconds per call of ``fn`` (which must block until its result is ready)."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_iters or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]
