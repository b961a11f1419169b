"""The trainer's view of the data: one object with the spec, the train and the eval iterators,
and the feeds of the compiled steps (stacks of batches or of example ids, one row per seed)."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from sld_jax.data import pipeline, sources
from sld_jax.train.mesh import DATA_AXIS


@dataclasses.dataclass
class RunData:
    """What the loop needs from the data, independent of the dataset.

    Attributes:
      spec: the dataset's ``DatasetSpec`` (num_classes, image_size, mean, std, crop_padding).
      num_train: number of training examples (every one is used each epoch).
      steps_per_epoch: training steps per epoch (the last batch partial, masked).
      host_crops: True when the host already cropped/flipped the views (ImageNet).
      train_batches: ``(epoch=, start_step=, seed=) -> iterator`` of global batch dicts (``seed``
        defaults to the config's).
      eval_batches: ``() -> iterator`` of padded global eval batch dicts (with ``mask``).
      train_split: the in-memory train split (None when streamed from the host, ImageNet).
    """

    spec: Any
    num_train: int
    steps_per_epoch: int
    host_crops: bool
    train_batches: Callable[..., Iterator[dict]]
    eval_batches: Callable[[], Iterator[dict]]
    train_split: Any = None


def _limit(split, n: int):
    if not n or n >= len(split.labels):
        return split
    return dataclasses.replace(split, images=split.images[:n], labels=split.labels[:n])


def open_datasets(config: ml_collections.ConfigDict, mesh: Mesh, *, train: bool = True) -> RunData:
    """Opens the configured dataset for training and evaluation on ``mesh``.

    Raises:
      sources.DatasetNotFoundError: the dataset is absent and cannot be prepared (one clear
        message naming the directory searched and the command that prepares it).
    """
    name = config.dataset.name
    kwargs = dict(data_dir=config.dataset.data_dir, download=config.dataset.download)
    if not sources.get_spec(name).in_memory:  # streamed from the host (ImageNet)
        return _open_imagenet(config, mesh)
    test = _limit(sources.load_in_memory(name, "test", **kwargs), config.dataset.limit_test)
    train_split = (
        _limit(sources.load_in_memory(name, "train", **kwargs), config.dataset.limit_train) if train else test
    )

    def train_batches(*, epoch: int, start_step: int = 0, seed: int | None = None):
        return pipeline.train_batches(
            train_split,
            global_batch_size=config.batch_size,
            seed=config.seed if seed is None else seed,
            epoch=epoch,
            mesh=mesh,
            start_step=start_step,
        )

    def eval_batches():
        return pipeline.eval_batches(test, global_batch_size=config.eval_batch_size, mesh=mesh)

    return RunData(
        spec=test.spec,
        num_train=len(train_split.labels),
        steps_per_epoch=pipeline.steps_per_epoch(len(train_split.labels), config.batch_size),
        host_crops=False,
        train_batches=train_batches,
        eval_batches=eval_batches,
        train_split=train_split if train else None,
    )


def _open_imagenet(config: ml_collections.ConfigDict, mesh: Mesh) -> RunData:
    """ImageNet: host-decoded crops (two independent views per example), streamed per process."""
    from sld_jax.data import imagenet

    spec = sources.get_spec(config.dataset.name)
    common = dict(
        name=config.dataset.name, data_dir=config.dataset.data_dir, download=config.dataset.download
    )
    # Fail now, with the prepare command, if the dataset is absent.
    sources.prepare(config.dataset.name, data_dir=config.dataset.data_dir, download=config.dataset.download)

    def train_batches(*, epoch: int, start_step: int = 0, seed: int | None = None):
        return imagenet.train_batches(
            global_batch_size=config.batch_size,
            seed=config.seed if seed is None else seed,
            epoch=epoch,
            mesh=mesh,
            start_step=start_step,
            **common,
        )

    def eval_batches():
        return imagenet.eval_batches(global_batch_size=config.eval_batch_size, mesh=mesh, **common)

    return RunData(
        spec=spec,
        num_train=spec.train_size,
        steps_per_epoch=imagenet.steps_per_epoch(spec.train_size, config.batch_size),
        host_crops=True,
        train_batches=train_batches,
        eval_batches=eval_batches,
    )


def _from_host(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A host array (equal on every process) as a global array with ``sharding``."""
    return jax.make_array_from_callback(array.shape, sharding, lambda idx: array[idx])


def upload_split(split, mesh: Mesh) -> dict[str, jax.Array]:
    """An in-memory split on every device of ``mesh``: ``image`` uint8 ``[N, H, W, 3]``, ``label`` int32 ``[N]``."""
    return {
        "image": _from_host(np.ascontiguousarray(split.images), NamedSharding(mesh, P())),
        "label": _from_host(np.asarray(split.labels, np.int32), NamedSharding(mesh, P())),
    }


def _feed_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(None, None, DATA_AXIS))


def epoch_ids(seeds: Sequence[int], *, epoch: int, num_examples: int, global_batch_size: int) -> np.ndarray:
    """The example ids of every global batch of an epoch, per seed: int32 ``[steps, K, B]`` (-1: padding).

    Batch ``step`` of seed ``s`` holds exactly the examples that
    :func:`sld_jax.data.pipeline.train_batches` gives that seed's run at that step.
    """
    return np.stack(
        [pipeline.epoch_batch_ids(seed, epoch, num_examples, global_batch_size) for seed in seeds], axis=1
    )


@functools.lru_cache(maxsize=16)
def _stacker(mesh: Mesh, num_steps: int, num_seeds: int):
    """A jitted ``[S*K global batches] -> feed [S, K, B, ...]`` (one compilation per shape)."""

    def stack(rows):
        return jax.tree.map(lambda *xs: jnp.stack(xs).reshape((num_steps, num_seeds) + xs[0].shape), *rows)

    return jax.jit(stack, out_shardings=_feed_sharding(mesh))


def train_feed(
    data: RunData,
    mesh: Mesh,
    *,
    seeds: Sequence[int],
    epoch: int,
    start_step: int,
    stop_step: int,
    steps_per_dispatch: int,
    resident: bool,
    global_batch_size: int,
) -> Iterator[tuple[dict[str, jax.Array], int]]:
    """The feeds of ``[start_step, stop_step)`` of an epoch for the compiled dispatch, S steps each.

    Args:
      data: the run's datasets.
      mesh: the ``data`` mesh.
      seeds: the seeds whose data order to follow (one row each; one row when seeds share data).
      epoch: the 1-based epoch; start_step, stop_step: steps within it.
      steps_per_dispatch: S, the steps per feed (the last feed may hold fewer real steps).
      resident: the split is on the devices: feeds are example ids, not images.
      global_batch_size: B.

    Yields:
      ``(feed, n)``: ``n`` real steps in the feed (the rest, up to S, are inactive). The feed is
      ``{"ids": int32 [S, K, B]}`` when resident, else batch dicts ``[S, K, B, ...]``, sharded over
      ``data`` on axis 2.
    """
    s = steps_per_dispatch
    if resident:
        ids = epoch_ids(seeds, epoch=epoch, num_examples=data.num_train, global_batch_size=global_batch_size)[
            start_step:stop_step
        ]
        for first in range(0, len(ids), s):
            chunk = ids[first : first + s]
            n = len(chunk)
            if n < s:
                chunk = np.concatenate([chunk, np.full((s - n,) + chunk.shape[1:], -1, np.int32)])
            yield {"ids": _from_host(chunk, _feed_sharding(mesh))}, n
        return
    streams = [data.train_batches(epoch=epoch, start_step=start_step, seed=seed) for seed in seeds]
    rows: list = []
    for step in range(start_step, stop_step):
        rows.append([next(it) for it in streams])
        if len(rows) == s or step == stop_step - 1:
            n = len(rows)
            rows += [rows[-1]] * (s - n)  # inactive padding steps
            flat = [batch for row in rows for batch in row]
            yield _stacker(mesh, s, len(seeds))(flat), n
            rows = []


def gather_batch(split: dict, ids: jax.Array) -> dict[str, jax.Array]:
    """A batch of a device-resident split: ``ids`` int32 ``[..., b]`` (-1: padding) -> batch dict.

    Args:
      split: ``image`` uint8 ``[N, H, W, 3]`` and ``label`` int32 ``[N]``.
      ids: example indices into the split, -1 for padded rows.

    Returns:
      ``image`` uint8 ``[..., b, H, W, 3]`` (zeros in padded rows), ``label`` int32 (0 there),
      ``mask`` bool, ``index`` int32 — exactly what the host pipeline delivers for the same ids.
    """
    valid = ids >= 0
    safe = jnp.where(valid, ids, 0)
    image = jnp.where(valid[..., None, None, None], split["image"][safe], jnp.zeros((), jnp.uint8))
    label = jnp.where(valid, split["label"][safe], 0).astype(jnp.int32)
    return {"image": image, "label": label, "mask": valid, "index": ids.astype(jnp.int32)}
