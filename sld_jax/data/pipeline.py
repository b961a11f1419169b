"""Train/eval batches of an in-memory split as global ``jax.Array``s sharded over the mesh's ``data`` axis.

Training order is a deterministic function of ``(seed, epoch)``: global batch ``step`` is the slice
``[step * B, (step + 1) * B)`` of :func:`epoch_permutation`, so a run resumed at ``start_step``
sees exactly the batches an uninterrupted run would. The last partial batch is padded to ``B`` with
``mask=False`` rows (one compiled step serves every batch). Evaluation walks the split in order with
the same padding, so every example is counted exactly once on any number of devices and processes,
and every process runs the same number of batches.

Each process builds only the rows of a global batch that belong to its addressable devices
(:func:`process_rows`) and the global array is assembled with
``jax.make_array_from_process_local_data``. The ``host_*`` functions return those process-local
numpy rows and accept ``process_index``/``process_count`` overrides, which lets one process simulate
several (tests); :func:`train_batches`/:func:`eval_batches` always use the real process.

A batch is a dict:

- ``image``: ``uint8 [B, S, S, 3]`` (zeros in padded rows),
- ``label``: ``int32 [B]`` (0 in padded rows),
- ``mask``: ``bool [B]``, False for padded rows,
- ``index``: ``int32 [B]``, the example's index in the split (-1 in padded rows); augmentation keys
  are derived from it.
"""

from __future__ import annotations

import math
from typing import Iterator

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from sld_jax.data.sources import InMemorySplit

DATA_AXIS = "data"


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
    """Number of global batches that cover ``num_examples`` once: ``ceil(num_examples / global_batch_size)``.

    The last batch may be partial (padded and masked): every example is used each epoch, as the
    reference keeps its last partial batch. The one definition of an epoch's length.

    >>> steps_per_epoch(50_000, 64)
    782
    """
    if num_examples < 0 or global_batch_size <= 0:
        raise ValueError(
            f"need num_examples >= 0 and a positive global batch size (batch_size > 0), "
            f"got {num_examples} and {global_batch_size}."
        )
    return math.ceil(num_examples / global_batch_size)


def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    """The training order of one epoch: ``int64 [num_examples]``, a permutation of ``range(num_examples)``.

    A pure function of ``(seed, epoch)`` (numpy's PCG64 seeded with ``SeedSequence([seed, epoch])``),
    identical on every process.

    >>> p = epoch_permutation(0, 1, 10)
    >>> sorted(p.tolist()) == list(range(10)), p.tolist() == epoch_permutation(0, 1, 10).tolist()
    (True, True)
    """
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be non-negative integers, got seed={seed}, epoch={epoch}.")
    return np.random.default_rng([int(seed), int(epoch)]).permutation(num_examples)


def data_sharding(mesh: Mesh) -> NamedSharding:
    """``NamedSharding(mesh, P("data"))``: the batch dimension split over the mesh's ``data`` axis."""
    if DATA_AXIS not in mesh.axis_names:
        raise ValueError(
            f"the mesh has axes {mesh.axis_names}, but batches are sharded over an axis named "
            f"{DATA_AXIS!r}; build it with jax.sharding.Mesh(jax.devices(), ('data',))."
        )
    return NamedSharding(mesh, P(DATA_AXIS))


def resolve_process(process_index: int | None, process_count: int | None) -> tuple[int, int, bool]:
    """``(index, count, simulated)`` of a process; simulated when overrides differ from the real process.

    >>> resolve_process(None, None) == (jax.process_index(), jax.process_count(), False)
    True
    """
    real = (jax.process_index(), jax.process_count())
    index = real[0] if process_index is None else int(process_index)
    count = real[1] if process_count is None else int(process_count)
    if not 0 <= index < count:
        raise ValueError(f"process_index must lie in [0, {count}), got {index}.")
    return index, count, (index, count) != real


def process_rows(
    global_batch_size: int, mesh: Mesh, *, process_index: int | None = None, process_count: int | None = None
) -> np.ndarray:
    """Rows of a global batch that a process feeds, ``int64 [local_batch]``, in device-shard order.

    These are the rows of the process's addressable shards of ``NamedSharding(mesh, P("data"))``,
    in the order ``jax.make_array_from_process_local_data`` expects them. With overrides that differ
    from the real processes, the mesh's data shards are divided into ``process_count`` contiguous,
    equal groups (how a multi-host mesh is laid out) and group ``process_index`` is returned.

    >>> mesh = Mesh(jax.devices()[:4], ("data",))  # doctest: +SKIP
    >>> process_rows(8, mesh, process_index=1, process_count=2).tolist()  # doctest: +SKIP
    [4, 5, 6, 7]
    """
    sharding = data_sharding(mesh)
    num_shards = mesh.shape[DATA_AXIS]
    if global_batch_size <= 0 or global_batch_size % num_shards:
        raise ValueError(
            f"global_batch_size={global_batch_size} must be a positive multiple of the mesh's "
            f"{num_shards} data shards; change the batch size or the mesh."
        )
    index, count, simulated = resolve_process(process_index, process_count)
    shard = global_batch_size // num_shards
    starts = sorted({(s[0].start or 0) for s in sharding.devices_indices_map((global_batch_size,)).values()})
    if simulated:
        if num_shards % count:
            raise ValueError(
                f"cannot split {num_shards} data shards evenly over {count} simulated processes."
            )
        per = num_shards // count
        mine = starts[index * per : (index + 1) * per]
    else:
        mine = sorted(
            {
                (s[0].start or 0)
                for d, s in sharding.devices_indices_map((global_batch_size,)).items()
                if d.process_index == index
            }
        )
    if not mine:
        raise ValueError(f"process {index} has no devices in the mesh; every process must hold a data shard.")
    return np.concatenate([np.arange(s, s + shard) for s in mine])


def _check_start(start_step: int, steps: int) -> None:
    if not 0 <= start_step <= steps:
        raise ValueError(f"start_step must lie in [0, {steps}] (steps per epoch), got {start_step}.")


def _gather(split: InMemorySplit, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Process-local batch of the example ids ``ids`` (``-1``: padding)."""
    valid = ids >= 0
    safe = np.where(valid, ids, 0)
    image = split.images[safe]
    image[~valid] = 0
    return {
        "image": image,
        "label": np.where(valid, split.labels[safe], 0).astype(np.int32),
        "mask": valid,
        "index": ids.astype(np.int32),
    }


def batch_ids(order: np.ndarray, global_batch_size: int) -> np.ndarray:
    """``order`` cut into global batches: int32 ``[steps, global_batch_size]``, the last padded with -1.

    The one definition of which example each row of each batch holds (host and device pipelines).

    >>> batch_ids(np.array([3, 1, 2]), 2).tolist()
    [[3, 1], [2, -1]]
    """
    steps = steps_per_epoch(len(order), global_batch_size)
    padded = np.full(steps * global_batch_size, -1, np.int32)
    padded[: len(order)] = order
    return padded.reshape(steps, global_batch_size)


def epoch_batch_ids(seed: int, epoch: int, num_examples: int, global_batch_size: int) -> np.ndarray:
    """The training batches of an epoch as example ids: int32 ``[steps, global_batch_size]`` (-1: padding)."""
    return batch_ids(epoch_permutation(seed, epoch, num_examples), global_batch_size)


def _batches(
    split: InMemorySplit, ids: np.ndarray, rows: np.ndarray, start_step: int
) -> Iterator[dict[str, np.ndarray]]:
    for step in range(start_step, len(ids)):
        yield _gather(split, ids[step][rows])


def host_train_batches(
    split: InMemorySplit,
    *,
    global_batch_size: int,
    seed: int,
    epoch: int,
    mesh: Mesh,
    start_step: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """This process's rows of each training batch of ``epoch`` (numpy; see the module doc).

    Yields ``steps_per_epoch(len(split), global_batch_size) - start_step`` dicts of
    ``image uint8 [b, S, S, 3]``, ``label int32 [b]``, ``mask bool [b]``, ``index int32 [b]`` with
    ``b = len(process_rows(...))``.
    """
    rows = process_rows(global_batch_size, mesh, process_index=process_index, process_count=process_count)
    _check_start(start_step, steps_per_epoch(len(split), global_batch_size))
    return _batches(split, epoch_batch_ids(seed, epoch, len(split), global_batch_size), rows, start_step)


def host_eval_batches(
    split: InMemorySplit,
    *,
    global_batch_size: int,
    mesh: Mesh,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """This process's rows of each evaluation batch: the split in order, the last batch padded.

    Every process yields ``steps_per_epoch(len(split), global_batch_size)`` batches; over all
    processes each example appears exactly once with ``mask=True``.
    """
    rows = process_rows(global_batch_size, mesh, process_index=process_index, process_count=process_count)
    return _batches(split, batch_ids(np.arange(len(split)), global_batch_size), rows, 0)


def to_global(batch: dict[str, np.ndarray], mesh: Mesh, global_batch_size: int) -> dict[str, jax.Array]:
    """Process-local rows -> global ``jax.Array``s ``[global_batch_size, ...]`` sharded on ``data``."""
    sharding = data_sharding(mesh)
    return {
        k: jax.make_array_from_process_local_data(sharding, v, (global_batch_size,) + v.shape[1:])
        for k, v in batch.items()
    }


def train_batches(
    split: InMemorySplit, *, global_batch_size: int, seed: int, epoch: int, mesh: Mesh, start_step: int = 0
) -> Iterator[dict[str, jax.Array]]:
    """Global training batches of ``epoch``, from ``start_step`` on (exact resume).

    Yields dicts of global arrays sharded over ``data``: ``image uint8 [B, S, S, 3]``,
    ``label int32 [B]``, ``mask bool [B]``, ``index int32 [B]`` (``B = global_batch_size``, a
    multiple of the mesh's data shards). Arguments are checked when called, before any batch.
    """
    host = host_train_batches(
        split, global_batch_size=global_batch_size, seed=seed, epoch=epoch, mesh=mesh, start_step=start_step
    )
    return (to_global(b, mesh, global_batch_size) for b in host)


def eval_batches(
    split: InMemorySplit, *, global_batch_size: int, mesh: Mesh
) -> Iterator[dict[str, jax.Array]]:
    """Global evaluation batches: every example exactly once, the last batch padded with ``mask=False``."""
    host = host_eval_batches(split, global_batch_size=global_batch_size, mesh=mesh)
    return (to_global(b, mesh, global_batch_size) for b in host)
