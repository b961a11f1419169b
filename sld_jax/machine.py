"""The one-line description of the machine that every benchmark table and run summary names."""

from __future__ import annotations

import os
import platform

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
