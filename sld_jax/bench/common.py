"""Shared benchmark helpers: timing of jitted functions and a description of the machine."""

from __future__ import annotations

import os
import platform
import time
from typing import Callable

import jax


def machine_description() -> str:
    """One line naming the host CPU, core count and the JAX backend/devices."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    devices = jax.devices()
    return (
        f"{cpu}, {os.cpu_count()} cores; jax {jax.__version__} backend={jax.default_backend()} "
        f"devices={len(devices)}x{devices[0].device_kind}"
    )


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
