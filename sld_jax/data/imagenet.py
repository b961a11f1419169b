"""Host (tf.data) input pipeline for ImageNet: JPEG decoding and crops on the CPU, batches on the mesh.

Training: each image is decoded once and cropped twice, independently (torchvision's
``RandomResizedCrop(224)`` + ``RandomHorizontalFlip``: area 8-100%, aspect ratio 3/4-4/3,
bilinear resize with antialiasing), giving ``image`` (the weak view) and ``image_strong`` (to which
the device adds RandAugment + Cutout, see ``augment.strong_from_cropped``). Evaluation: resize the
shorter side to 256, centre crop 224.

Each process reads only its shard of the split (``tfds.even_splits``). All random choices are
stateless functions of ``(seed, epoch, process, position in the epoch)``, so an epoch is
reproducible and ``start_step`` resumes it exactly. Every process yields the same number of
batches (its shard padded with ``mask=False`` rows); evaluation counts every example exactly once.

Batches have the keys of :mod:`sld_jax.data.pipeline` (``image``, ``label``, ``mask``, ``index``),
plus ``image_strong`` for training. ``index`` is the example's position in the split for
evaluation; for training it is a stable 31-bit hash of the example's TFDS record id (an example
identity for augmentation keys).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterator

import jax
import numpy as np
from jax.sharding import Mesh

from sld_jax.data import pipeline
from sld_jax.data.sources import get_spec, prepare, resolve_data_dir, tfds_builder, try_read

IMAGE_SIZE = 224
RESIZE_SIZE = 256
AREA_RANGE = (0.08, 1.0)
ASPECT_RATIO_RANGE = (3.0 / 4.0, 4.0 / 3.0)


def _tf():
    import tensorflow as tf  # local: importing TensorFlow is slow and only the host pipeline needs it

    return tf


def _to_uint8(image):
    tf = _tf()
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def decode_rgb(image_bytes):
    """Encoded JPEG/PNG bytes (scalar ``tf.string``) -> ``tf.uint8 [H, W, 3]``."""
    tf = _tf()
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def random_resized_crop_flip(image, seed, *, image_size: int = IMAGE_SIZE):
    """torchvision's ``RandomResizedCrop(image_size)`` + ``RandomHorizontalFlip()``, stateless.

    Args:
      image: ``tf.uint8 [H, W, 3]``.
      seed: ``tf.int64 [2]`` stateless seed (the crop and the flip use two seeds split from it).
      image_size: output side.

    Returns:
      ``tf.uint8 [image_size, image_size, 3]``.
    """
    tf = _tf()
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=crop_seed,
        min_object_covered=0.0,
        aspect_ratio_range=ASPECT_RATIO_RANGE,
        area_range=AREA_RANGE,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    crop = tf.slice(image, begin, size)
    resized = tf.image.resize(crop, [image_size, image_size], method="bilinear", antialias=True)
    return tf.image.stateless_random_flip_left_right(_to_uint8(resized), flip_seed)


def resize_center_crop(image, *, image_size: int = IMAGE_SIZE, resize_size: int = RESIZE_SIZE):
    """torchvision's ``Resize(resize_size)`` (shorter side) + ``CenterCrop(image_size)``.

    Args:
      image: ``tf.uint8 [H, W, 3]``.

    Returns:
      ``tf.uint8 [image_size, image_size, 3]``.
    """
    tf = _tf()
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    short = tf.minimum(h, w)
    # torchvision: the shorter side becomes resize_size, the longer is truncated to an integer.
    nh = tf.where(h <= w, resize_size, (resize_size * h) // short)
    nw = tf.where(h <= w, (resize_size * w) // short, resize_size)
    resized = tf.image.resize(image, tf.stack([nh, nw]), method="bilinear", antialias=True)
    top = tf.cast(tf.round(tf.cast(nh - image_size, tf.float32) / 2.0), tf.int32)
    left = tf.cast(tf.round(tf.cast(nw - image_size, tf.float32) / 2.0), tf.int32)
    crop = tf.slice(resized, tf.stack([top, left, 0]), [image_size, image_size, 3])
    return _to_uint8(crop)


def _stream_seed(*values: int) -> int:
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(1, np.uint64)[0] >> 1)


def _pad_and_batch(ds, padding_element: dict, num_real: int, num_batches: int, local_batch_size: int):
    tf = _tf()
    pad = num_batches * local_batch_size - num_real
    if pad > 0:
        ds = ds.concatenate(tf.data.Dataset.from_tensors(padding_element).repeat(pad))
    ds = ds.take(num_batches * local_batch_size).batch(local_batch_size, drop_remainder=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def train_dataset(
    raw,
    *,
    num_examples: int,
    local_batch_size: int,
    seed: int,
    epoch: int,
    num_batches: int | None = None,
    start_step: int = 0,
    process_index: int = 0,
    image_size: int = IMAGE_SIZE,
    shuffle_buffer: int = 10_000,
    num_parallel_calls: int | None = None,
):
    """This process's training batches of ``epoch`` as a ``tf.data.Dataset``.

    Args:
      raw: dataset of ``{"image": tf.string (encoded), "label": int, "index": int}``, this process's
        shard of the split (``num_examples`` elements), in a deterministic order.
      num_examples: elements in ``raw``.
      local_batch_size: rows of each batch fed by this process.
      seed, epoch: the epoch's shuffle order and crops are a function of ``(seed, epoch, process_index)``.
      num_batches: batches per epoch (the same on every process; default ``ceil(num_examples / b)``).
      start_step: first batch to yield (exact resume); skipped elements are not decoded.
      image_size: side of the crops.
      shuffle_buffer: tf.data shuffle buffer (of encoded images).
      num_parallel_calls: decoding parallelism (default: ``tf.data.AUTOTUNE``).

    Returns:
      A dataset of ``num_batches - start_step`` dicts: ``image``/``image_strong`` ``uint8 [b, S, S, 3]``,
      ``label int32 [b]``, ``mask bool [b]``, ``index int32 [b]``.
    """
    tf = _tf()
    num_batches = math.ceil(num_examples / local_batch_size) if num_batches is None else num_batches
    if not 0 <= start_step <= num_batches:
        raise ValueError(f"start_step must lie in [0, {num_batches}] (steps per epoch), got {start_step}.")
    if num_batches * local_batch_size < num_examples:
        raise ValueError(f"{num_batches} batches of {local_batch_size} cannot hold {num_examples} examples.")
    parallel = tf.data.AUTOTUNE if num_parallel_calls is None else num_parallel_calls
    base = tf.constant([_stream_seed(seed, epoch, process_index, 1), 0], tf.int64)

    def decode(position, ex):
        element_seed = tf.random.experimental.stateless_fold_in(base, position)
        weak_seed, strong_seed = tf.unstack(tf.random.experimental.stateless_split(element_seed, 2))
        image = decode_rgb(ex["image"])
        return {
            "image": random_resized_crop_flip(image, weak_seed, image_size=image_size),
            "image_strong": random_resized_crop_flip(image, strong_seed, image_size=image_size),
            "label": tf.cast(ex["label"], tf.int32),
            "mask": tf.constant(True),
            "index": tf.cast(ex["index"], tf.int32),
        }

    skip = start_step * local_batch_size
    ds = raw.shuffle(
        shuffle_buffer, seed=_stream_seed(seed, epoch, process_index, 0), reshuffle_each_iteration=False
    )
    ds = ds.enumerate().skip(skip).map(decode, num_parallel_calls=parallel, deterministic=True)
    zeros = tf.zeros([image_size, image_size, 3], tf.uint8)
    padding = {
        "image": zeros,
        "image_strong": zeros,
        "label": tf.constant(0, tf.int32),
        "mask": tf.constant(False),
        "index": tf.constant(-1, tf.int32),
    }
    return _pad_and_batch(
        ds, padding, max(num_examples - skip, 0), num_batches - start_step, local_batch_size
    )


def eval_dataset(
    raw,
    *,
    num_examples: int,
    local_batch_size: int,
    num_batches: int | None = None,
    image_size: int = IMAGE_SIZE,
    resize_size: int = RESIZE_SIZE,
    num_parallel_calls: int | None = None,
):
    """This process's evaluation batches (resize shorter side, centre crop) as a ``tf.data.Dataset``.

    ``raw`` holds ``{"image", "label", "index"}`` like :func:`train_dataset`'s. Yields ``num_batches``
    (default ``ceil(num_examples / b)``) dicts ``image uint8 [b, S, S, 3]``, ``label int32 [b]``,
    ``mask bool [b]``, ``index int32 [b]``, the tail padded with ``mask=False``.
    """
    tf = _tf()
    num_batches = math.ceil(num_examples / local_batch_size) if num_batches is None else num_batches
    if num_batches * local_batch_size < num_examples:
        raise ValueError(f"{num_batches} batches of {local_batch_size} cannot hold {num_examples} examples.")
    parallel = tf.data.AUTOTUNE if num_parallel_calls is None else num_parallel_calls

    def decode(ex):
        return {
            "image": resize_center_crop(
                decode_rgb(ex["image"]), image_size=image_size, resize_size=resize_size
            ),
            "label": tf.cast(ex["label"], tf.int32),
            "mask": tf.constant(True),
            "index": tf.cast(ex["index"], tf.int32),
        }

    ds = raw.map(decode, num_parallel_calls=parallel, deterministic=True)
    padding = {
        "image": tf.zeros([image_size, image_size, 3], tf.uint8),
        "label": tf.constant(0, tf.int32),
        "mask": tf.constant(False),
        "index": tf.constant(-1, tf.int32),
    }
    return _pad_and_batch(ds, padding, num_examples, num_batches, local_batch_size)


@dataclasses.dataclass(frozen=True)
class HostShard:
    """One process's shard of a TFDS split.

    Attributes:
      dataset: ``tf.data.Dataset`` of ``{"image": encoded bytes, "label", "index"}``.
      num_examples: elements in ``dataset``.
      offset: index of the shard's first example in the split (``even_splits`` order).
      split_size: examples in the whole split.
      process_count: number of shards.
    """

    dataset: object
    num_examples: int
    offset: int
    split_size: int
    process_count: int

    @property
    def max_shard_size(self) -> int:
        """Size of the largest shard (``even_splits`` sizes differ by at most one)."""
        return max(self.num_examples, math.ceil(self.split_size / self.process_count))


def shard_bounds(num_examples: int, process_index: int, process_count: int) -> tuple[int, int]:
    """``(offset, size)`` of ``tfds.even_splits(split, process_count)[process_index]`` (remainder first).

    >>> [shard_bounds(11, i, 3) for i in range(3)]
    [(0, 4), (4, 4), (8, 3)]
    """
    base, rem = divmod(num_examples, process_count)
    return base * process_index + min(process_index, rem), base + int(process_index < rem)


def steps_per_epoch(split_size: int, global_batch_size: int, *, process_count: int | None = None) -> int:
    """Batches per epoch of the host pipeline: ``ceil(ceil(split_size / P) / (B / P))`` for ``P`` processes.

    Every process reads an ``even_splits`` shard of at most ``ceil(split_size / P)`` examples and
    feeds ``B / P`` rows per batch. With one process this is ``ceil(split_size / B)``.

    >>> steps_per_epoch(1_281_167, 512), steps_per_epoch(50_000, 1024, process_count=4)
    (2503, 49)
    """
    count = jax.process_count() if process_count is None else process_count
    if global_batch_size % count:
        raise ValueError(
            f"global_batch_size={global_batch_size} must be a multiple of the {count} processes."
        )
    return pipeline.steps_per_epoch(math.ceil(split_size / count), global_batch_size // count)


def _cardinality(ds) -> int:
    tf = _tf()
    n = int(ds.cardinality())
    if n == tf.data.INFINITE_CARDINALITY:
        raise ValueError("the split is infinite; pass a finite split.")
    if n == tf.data.UNKNOWN_CARDINALITY:
        n = int(ds.reduce(np.int64(0), lambda count, _: count + 1).numpy())
    return n


def read_shard(
    split: str,
    *,
    train: bool,
    name: str = "imagenet2012",
    data_dir=None,
    seed: int = 0,
    epoch: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
    download: bool = True,
) -> HostShard:
    """This process's shard of a TFDS image split, images left encoded.

    Training shards read the files in a ``(seed, epoch)``-seeded order and carry ``index`` = a hash
    of the TFDS record id; evaluation shards are read in order with ``index`` = position in the split.

    Raises:
      DatasetNotFoundError: the dataset is absent (the message says how to prepare it).
    """
    import tensorflow_datasets as tfds

    tf = _tf()
    index, count, _ = pipeline.resolve_process(process_index, process_count)
    spec = get_spec(name)
    root = resolve_data_dir(data_dir)
    builder = tfds_builder(name, data_dir=root)
    sub = tfds.even_splits(split, n=count)[index]
    read_config = tfds.ReadConfig(add_tfds_id=train, shuffle_seed=_stream_seed(seed, epoch, index, 2))

    def open_(b, s, shuffle):
        return b.as_dataset(
            split=s,
            shuffle_files=shuffle,
            read_config=read_config,
            decoders={"image": tfds.decode.SkipDecoding()},
        )

    # TFDS can serve a split without local files (e.g. under tfds.testing.mock_data).
    if not builder.is_prepared() and try_read(lambda: open_(builder, sub, False)) is None:
        builder = prepare(spec.name, data_dir=root, download=download)
    ds = open_(builder, sub, train)
    num_examples = _cardinality(ds)
    split_size = _cardinality(open_(builder, split, False))
    offset = shard_bounds(split_size, index, count)[0]
    if train:
        ds = ds.map(
            lambda ex: {
                "image": ex["image"],
                "label": ex["label"],
                "index": tf.strings.to_hash_bucket_fast(ex["tfds_id"], 2**31 - 1),
            }
        )
    else:
        ds = ds.enumerate().map(
            lambda i, ex: {"image": ex["image"], "label": ex["label"], "index": i + offset}
        )
    return HostShard(
        dataset=ds, num_examples=num_examples, offset=offset, split_size=split_size, process_count=count
    )


def _global(ds, mesh: Mesh, global_batch_size: int) -> Iterator[dict[str, jax.Array]]:
    for batch in ds.as_numpy_iterator():
        yield pipeline.to_global(batch, mesh, global_batch_size)


def train_batches(
    *,
    global_batch_size: int,
    seed: int,
    epoch: int,
    mesh: Mesh,
    start_step: int = 0,
    split: str = "train",
    name: str = "imagenet2012",
    data_dir=None,
    image_size: int = IMAGE_SIZE,
    shuffle_buffer: int = 10_000,
    download: bool = True,
) -> Iterator[dict[str, jax.Array]]:
    """Global ImageNet training batches of ``epoch`` from ``start_step`` on, sharded over ``data``.

    Each process reads its ``even_splits`` shard and feeds the rows of its devices. Every process
    yields ``steps_per_epoch(name, ...)`` batches: ``image``/``image_strong`` ``uint8 [B, S, S, 3]``,
    ``label int32 [B]``, ``mask bool [B]``, ``index int32 [B]``.
    """
    local = len(pipeline.process_rows(global_batch_size, mesh))
    shard = read_shard(
        split, train=True, name=name, data_dir=data_dir, seed=seed, epoch=epoch, download=download
    )
    ds = train_dataset(
        shard.dataset,
        num_examples=shard.num_examples,
        local_batch_size=local,
        seed=seed,
        epoch=epoch,
        num_batches=math.ceil(shard.max_shard_size / local),
        start_step=start_step,
        process_index=jax.process_index(),
        image_size=image_size,
        shuffle_buffer=shuffle_buffer,
    )
    return _global(ds, mesh, global_batch_size)


def eval_batches(
    *,
    global_batch_size: int,
    mesh: Mesh,
    split: str = "validation",
    name: str = "imagenet2012",
    data_dir=None,
    image_size: int = IMAGE_SIZE,
    resize_size: int = RESIZE_SIZE,
    download: bool = True,
) -> Iterator[dict[str, jax.Array]]:
    """Global ImageNet evaluation batches: each example exactly once, equal batch counts per process."""
    local = len(pipeline.process_rows(global_batch_size, mesh))
    shard = read_shard(split, train=False, name=name, data_dir=data_dir, download=download)
    ds = eval_dataset(
        shard.dataset,
        num_examples=shard.num_examples,
        local_batch_size=local,
        num_batches=math.ceil(shard.max_shard_size / local),
        image_size=image_size,
        resize_size=resize_size,
    )
    return _global(ds, mesh, global_batch_size)


def synthetic_jpegs(num_images: int, *, height: int = 375, width: int = 500, seed: int = 0) -> list[bytes]:
    """``num_images`` JPEG-encoded random images (smooth colour fields plus noise), for tests/benchmarks."""
    tf = _tf()
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num_images):
        low = rng.integers(0, 256, (4, 4, 3)).astype(np.float32)
        smooth = tf.image.resize(low[None], [height, width], method="bilinear")[0].numpy()
        noisy = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)
        out.append(tf.io.encode_jpeg(noisy, quality=90).numpy())
    return out


def raw_from_jpegs(jpegs: list[bytes], labels: np.ndarray | None = None):
    """A raw dataset ``{"image", "label", "index"}`` over encoded images (index = position)."""
    tf = _tf()
    labels = np.zeros(len(jpegs), np.int64) if labels is None else np.asarray(labels, np.int64)
    return tf.data.Dataset.from_tensor_slices(
        {"image": jpegs, "label": labels, "index": np.arange(len(jpegs), dtype=np.int64)}
    )
