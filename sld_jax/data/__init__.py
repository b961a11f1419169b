"""Datasets and input pipelines.

- :mod:`sld_jax.data.sources`: TFDS ``digits`` (built offline), ``cifar100``, ``imagenet2012``;
  :class:`DatasetSpec`, :func:`load_in_memory`, one clear :class:`DatasetNotFoundError`.
- :mod:`sld_jax.data.pipeline`: global, sharded train/eval batches of in-memory splits.
- :mod:`sld_jax.data.imagenet`: host tf.data pipeline for ImageNet (imported on demand).
- :mod:`sld_jax.data.augment`: on-device weak/strong views (imported on demand).

``python -m sld_jax.data prepare NAME --data_dir DIR`` prepares a dataset.
"""

from sld_jax.data.pipeline import (
    data_sharding,
    epoch_permutation,
    eval_batches,
    host_eval_batches,
    host_train_batches,
    process_rows,
    steps_per_epoch,
    to_global,
    train_batches,
)
from sld_jax.data.sources import (
    DATASETS,
    DatasetNotFoundError,
    DatasetSpec,
    DataValidationError,
    InMemorySplit,
    get_spec,
    load_in_memory,
    prepare,
    prepare_command,
    resolve_data_dir,
    validate_examples,
)

__all__ = [
    "DATASETS",
    "DataValidationError",
    "DatasetNotFoundError",
    "DatasetSpec",
    "InMemorySplit",
    "data_sharding",
    "epoch_permutation",
    "eval_batches",
    "get_spec",
    "host_eval_batches",
    "host_train_batches",
    "load_in_memory",
    "prepare",
    "prepare_command",
    "process_rows",
    "resolve_data_dir",
    "steps_per_epoch",
    "to_global",
    "train_batches",
    "validate_examples",
]
