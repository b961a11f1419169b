"""The device mesh of a run: one axis, ``data``, over the first ``num_devices`` devices of each process.

The axis name is defined once, in :mod:`sld_jax.data.pipeline` (the pipeline shards batches over
it); everything in ``train/`` takes it from here.
"""

from __future__ import annotations

import jax
import ml_collections
from jax.sharding import Mesh

from sld_jax.data.pipeline import DATA_AXIS

__all__ = ["DATA_AXIS", "make_mesh", "mesh_for", "num_devices"]


def make_mesh(devices=None) -> Mesh:
    """A 1-D ``Mesh`` over ``devices`` (default: all devices of all processes) with axis ``data``."""
    devices = jax.devices() if devices is None else devices
    return Mesh(list(devices), (DATA_AXIS,))


def _per_process(config: ml_collections.ConfigDict) -> int:
    per_process = config.get("num_devices", 0) or jax.local_device_count()
    if per_process > jax.local_device_count():
        raise ValueError(
            f"num_devices={per_process} but this process has only "
            f"{jax.local_device_count()} devices; lower --config.num_devices."
        )
    return per_process


def num_devices(config: ml_collections.ConfigDict) -> int:
    """The global device count of the run: ``num_devices`` (0 = all local) times the processes."""
    return _per_process(config) * jax.process_count()


def mesh_for(config: ml_collections.ConfigDict) -> Mesh:
    """The ``data`` mesh over the first ``config.num_devices`` devices of every process (0 = all)."""
    per_process = _per_process(config)
    devices = [
        d
        for p in range(jax.process_count())
        for d in [x for x in jax.devices() if x.process_index == p][:per_process]
    ]
    return make_mesh(devices)
