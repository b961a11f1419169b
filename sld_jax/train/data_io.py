"""The trainer's view of the data: one object with the spec, the train and the eval iterators."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator

import ml_collections
from jax.sharding import Mesh

from sld_jax.data import pipeline, sources


@dataclasses.dataclass
class RunData:
    """What the loop needs from the data, independent of the dataset.

    Attributes:
      spec: the dataset's ``DatasetSpec`` (num_classes, image_size, mean, std, crop_padding).
      num_train: number of training examples (every one is used each epoch).
      steps_per_epoch: training steps per epoch (the last batch partial, masked).
      host_crops: True when the host already cropped/flipped the views (ImageNet).
      train_batches: ``(epoch=, start_step=) -> iterator`` of global batch dicts.
      eval_batches: ``() -> iterator`` of padded global eval batch dicts (with ``mask``).
    """

    spec: Any
    num_train: int
    steps_per_epoch: int
    host_crops: bool
    train_batches: Callable[..., Iterator[dict]]
    eval_batches: Callable[[], Iterator[dict]]


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
    if name == "imagenet2012":
        return _open_imagenet(config, mesh)
    test = _limit(sources.load_in_memory(name, "test", **kwargs), config.dataset.limit_test)
    train_split = (
        _limit(sources.load_in_memory(name, "train", **kwargs), config.dataset.limit_train) if train else test
    )

    def train_batches(*, epoch: int, start_step: int = 0):
        return pipeline.train_batches(
            train_split,
            global_batch_size=config.batch_size,
            seed=config.seed,
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

    def train_batches(*, epoch: int, start_step: int = 0):
        return imagenet.train_batches(
            global_batch_size=config.batch_size,
            seed=config.seed,
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
