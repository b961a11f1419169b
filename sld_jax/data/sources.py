"""Datasets through TFDS: ``digits`` (built locally), ``cifar100`` (downloaded), ``imagenet2012`` (manual).

Every dataset is described by a :class:`DatasetSpec` in :data:`DATASETS`. ``digits`` and
``cifar100`` are small enough to live in host memory: :func:`load_in_memory` returns a validated
:class:`InMemorySplit` that :mod:`sld_jax.data.pipeline` batches. ``imagenet2012`` is streamed by
:mod:`sld_jax.data.imagenet`.

Data live in a TFDS data directory: the ``data_dir`` argument, else ``$TFDS_DATA_DIR``, else
``~/tensorflow_datasets``. A dataset that is absent and cannot be prepared raises one
:class:`DatasetNotFoundError` naming the dataset, the directory searched and the command that
prepares it (``python -m sld_jax.data prepare NAME --data_dir DIR``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import sys
import types
from typing import Callable, Mapping, Sequence, TypeVar

import numpy as np

from sld_jax import atomic
from sld_jax.errors import ConfigError, UserError

T = TypeVar("T")

log = logging.getLogger(__name__)


class DatasetNotFoundError(UserError, FileNotFoundError):
    """A dataset is not in the data directory and could not be prepared there."""


class DataValidationError(UserError, ValueError):
    """Examples of a split have the wrong shape, dtype or label range."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Static facts about one dataset, as served to the models.

    Attributes:
      name: the name used throughout sld_jax (``"digits"``, ``"cifar100"``, ``"imagenet2012"``).
      tfds_name: the TFDS builder name.
      num_classes: labels lie in ``[0, num_classes)``.
      image_size: served images are ``uint8 [image_size, image_size, 3]``.
      mean: per-channel mean of the served images scaled to [0, 1] (RGB).
      std: per-channel standard deviation of the served images scaled to [0, 1] (RGB).
      crop_padding: zero padding of the weak/strong random crop (0: random-resized-crop on host).
      train_split: TFDS name of the training split.
      test_split: TFDS name of the evaluation split.
      train_size: number of training examples.
      test_size: number of evaluation examples.
      in_memory: whether :func:`load_in_memory` serves it (else :mod:`sld_jax.data.imagenet`).
      source: ``"generated"`` (built locally), ``"download"`` (TFDS downloads it) or ``"manual"``.
      download_url: a URL probed before an automatic download (empty when not downloaded).
    """

    name: str
    tfds_name: str
    num_classes: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_padding: int
    train_split: str
    test_split: str
    train_size: int
    test_size: int
    in_memory: bool
    source: str
    download_url: str = ""

    @property
    def splits(self) -> tuple[str, str]:
        """``(train_split, test_split)``."""
        return (self.train_split, self.test_split)


#: The datasets sld_jax knows, by name (read-only).
DATASETS: Mapping[str, DatasetSpec] = types.MappingProxyType(
    {
        # 8x8 grey digits served as 16x16 RGB (each pixel repeated 2x2, grey repeated over RGB);
        # mean/std measured over the served training split.
        "digits": DatasetSpec(
            name="digits",
            tfds_name="digits",
            num_classes=10,
            image_size=16,
            mean=(0.3055, 0.3055, 0.3055),
            std=(0.3759, 0.3759, 0.3759),
            crop_padding=2,
            train_split="train",
            test_split="test",
            train_size=1438,
            test_size=359,
            in_memory=True,
            source="generated",
        ),
        # Normalisation constants of the reference (mdistiller's CIFAR-100 loader).
        "cifar100": DatasetSpec(
            name="cifar100",
            tfds_name="cifar100",
            num_classes=100,
            image_size=32,
            mean=(0.5071, 0.4867, 0.4408),
            std=(0.2675, 0.2565, 0.2761),
            crop_padding=4,
            train_split="train",
            test_split="test",
            train_size=50_000,
            test_size=10_000,
            in_memory=True,
            source="download",
            download_url="https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
        ),
        # torchvision's ImageNet normalisation, as in the reference.
        "imagenet2012": DatasetSpec(
            name="imagenet2012",
            tfds_name="imagenet2012",
            num_classes=1000,
            image_size=224,
            mean=(0.485, 0.456, 0.406),
            std=(0.229, 0.224, 0.225),
            crop_padding=0,
            train_split="train",
            test_split="validation",
            train_size=1_281_167,
            test_size=50_000,
            in_memory=False,
            source="manual",
        ),
    }
)

#: Files TFDS needs in ``<data_dir>/downloads/manual`` to prepare imagenet2012.
IMAGENET_MANUAL_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")


def get_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``name``.

    >>> get_spec("cifar100").num_classes
    100
    """
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)} (--config.dataset.name=...)."
        ) from None


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> str:
    """The TFDS data directory: ``data_dir``, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
    if data_dir is None:
        data_dir = os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    return os.path.abspath(os.path.expanduser(os.fspath(data_dir)))


def prepare_command(name: str, data_dir: str | os.PathLike | None = None) -> str:
    """The shell command that prepares dataset ``name`` in ``data_dir``.

    >>> prepare_command("cifar100", "/data")
    'python -m sld_jax.data prepare cifar100 --data_dir /data'
    """
    command = f"python -m sld_jax.data prepare {get_spec(name).name} --data_dir {resolve_data_dir(data_dir)}"
    if get_spec(name).source == "manual":
        manual = os.path.join(resolve_data_dir(data_dir), "downloads", "manual")
        command = (
            f"download {' and '.join(IMAGENET_MANUAL_FILES)} from https://image-net.org "
            f"into {manual}, then run: {command}"
        )
    return command


def tfds_builder(name: str, *, data_dir: str | os.PathLike | None = None):
    """The TFDS builder of dataset ``name`` over ``data_dir`` (nothing is read or written)."""
    import tensorflow_datasets as tfds

    spec = get_spec(name)
    root = resolve_data_dir(data_dir)
    if spec.name == "digits":
        from sld_jax.data.digits_builder import Digits

        return Digits(data_dir=root)
    return tfds.builder(spec.tfds_name, data_dir=root)


def _not_found(spec: DatasetSpec, root: str, reason: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"dataset {spec.name!r} is not prepared in {root} ({reason}); prepare it with: "
        f"{prepare_command(spec.name, root)}"
    )


def _unreachable(url: str, timeout: float) -> str | None:
    """``None`` if ``url`` answers within ``timeout`` seconds, else the reason (no retries)."""
    import requests

    try:
        requests.head(url, timeout=timeout, allow_redirects=True)
    except requests.RequestException as e:
        return f"{url} is unreachable: {type(e).__name__}"
    return None


def prepare(
    name: str, *, data_dir: str | os.PathLike | None = None, download: bool = True, probe_timeout: float = 5.0
):
    """Prepares dataset ``name`` in ``data_dir`` if needed and returns its TFDS builder.

    ``digits`` is built from scikit-learn's bundled file (no network). ``cifar100`` is downloaded
    by TFDS when ``download`` is true and its server answers within ``probe_timeout`` seconds (so an
    offline machine fails at once instead of after TFDS's retries). ``imagenet2012`` needs the
    archives in ``<data_dir>/downloads/manual`` first.

    Raises:
      DatasetNotFoundError: the dataset is absent and cannot be prepared; the message names the
        dataset, the directory searched and the command that prepares it.
    """
    import tensorflow_datasets as tfds

    spec = get_spec(name)
    root = resolve_data_dir(data_dir)
    builder = tfds_builder(name, data_dir=root)
    if builder.is_prepared():
        return builder
    config = None
    if spec.source == "download":
        if not download:
            raise _not_found(spec, root, "download=False")
        reason = _unreachable(spec.download_url, probe_timeout)
        if reason:
            raise _not_found(spec, root, reason)
    elif spec.source == "manual":
        manual_dir = os.path.join(root, "downloads", "manual")
        missing = [f for f in IMAGENET_MANUAL_FILES if not os.path.exists(os.path.join(manual_dir, f))]
        if missing:
            raise _not_found(spec, root, f"{', '.join(missing)} missing in {manual_dir}")
        config = tfds.download.DownloadConfig(manual_dir=manual_dir)
    try:
        builder.download_and_prepare(download_config=config)
    except Exception as e:  # noqa: BLE001 - any TFDS failure becomes one clear error
        raise _not_found(spec, root, f"preparing it failed with {type(e).__name__}: {e}") from None
    return builder


def _check_split(spec: DatasetSpec, split: str) -> None:
    base = split.split("[", 1)[0]
    if base not in spec.splits:
        raise ValueError(
            f"dataset {spec.name!r} has no split {split!r}; use one of {list(spec.splits)} "
            "(optionally with a TFDS slice, e.g. 'train[:10%]')."
        )


def validate_examples(
    images: np.ndarray | Sequence[np.ndarray], labels: np.ndarray, *, spec: DatasetSpec, split: str
) -> None:
    """Checks a split before training: images ``uint8 [N, S, S, 3]``, labels ``int [N]`` in range.

    ``images`` is an array or a sequence of ``[S, S, 3]`` arrays (``S = spec.image_size``).

    Raises:
      DataValidationError: naming the dataset, the split and the first bad index.

    >>> spec = get_spec("digits")
    >>> validate_examples(np.zeros((2, 16, 16, 3), np.uint8), np.array([0, 10]), spec=spec, split="train")
    Traceback (most recent call last):
    ...
    sld_jax.data.sources.DataValidationError: digits split 'train': label 10 at index 1 is outside [0, 10); ...
    """
    where = f"{spec.name} split {split!r}"
    want = (spec.image_size, spec.image_size, 3)
    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.shape[1:] != want or images.dtype != np.uint8:
            raise DataValidationError(
                f"{where}: image at index 0 is {images.dtype.name} {tuple(images.shape[1:])}, "
                f"expected uint8 {want}; convert the images (e.g. resize, np.uint8) before training."
            )
        num = images.shape[0]
    else:
        num = len(images)
        for i, image in enumerate(images):
            image = np.asarray(image)
            if image.shape != want or image.dtype != np.uint8:
                raise DataValidationError(
                    f"{where}: image at index {i} is {image.dtype.name} {tuple(image.shape)}, "
                    f"expected uint8 {want}; convert the images (e.g. resize, np.uint8) before training."
                )
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != num or not np.issubdtype(labels.dtype, np.integer):
        raise DataValidationError(
            f"{where}: labels are {labels.dtype.name} {labels.shape} for {num} images; "
            f"pass one integer label per image."
        )
    if num == 0:
        raise DataValidationError(f"{where}: the split is empty; check the split name or slice.")
    bad = np.flatnonzero((labels < 0) | (labels >= spec.num_classes))
    if bad.size:
        i = int(bad[0])
        raise DataValidationError(
            f"{where}: label {int(labels[i])} at index {i} is outside [0, {spec.num_classes}); "
            f"fix the labels or use a dataset with more classes."
        )


@dataclasses.dataclass(frozen=True, eq=False)
class InMemorySplit:
    """A validated split in host memory.

    Attributes:
      images: ``uint8 [N, S, S, 3]`` numpy array (``S = spec.image_size``).
      labels: ``int32 [N]`` numpy array in ``[0, spec.num_classes)``.
      spec: the dataset's :class:`DatasetSpec`.
      split: the split name (for messages).
    """

    images: np.ndarray
    labels: np.ndarray
    spec: DatasetSpec
    split: str

    def __post_init__(self):
        validate_examples(self.images, self.labels, spec=self.spec, split=self.split)
        object.__setattr__(self, "images", np.asarray(self.images))
        object.__setattr__(self, "labels", np.asarray(self.labels, np.int32))

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def serve_digits(images: np.ndarray) -> np.ndarray:
    """Native digits ``uint8 [N, 8, 8(, 1)]`` -> served ``uint8 [N, 16, 16, 3]`` (2x2 pixel repeat, grey->RGB).

    >>> serve_digits(np.arange(4, dtype=np.uint8).reshape(1, 2, 2))[0, :, :, 0].tolist()
    [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    """
    images = np.asarray(images)
    if images.ndim == 4:
        images = images[..., 0]
    up = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)
    return np.repeat(up[..., None], 3, axis=-1)


def try_read(read: Callable[[], T]) -> T | None:
    """``read()``, or ``None`` if it raises (the caller then prepares the data outside this handler)."""
    try:
        return read()
    except Exception:  # noqa: BLE001 - absent data: the caller raises one clear error instead
        return None


def _read_numpy(builder, split: str) -> dict[str, np.ndarray]:
    import tensorflow_datasets as tfds

    # Chunks rather than batch_size=-1, which needs split sizes that mocked builders lack.
    ds = builder.as_dataset(split=split, shuffle_files=False).batch(8192)
    chunks = list(tfds.as_numpy(ds))
    if not chunks:
        return {"image": np.zeros((0, 0, 0, 0), np.uint8), "label": np.zeros((0,), np.int64)}
    return {key: np.concatenate([c[key] for c in chunks]) for key in ("image", "label")}


#: Format tag of the in-memory cache files; a file without it (or with another) is rebuilt.
CACHE_FORMAT = "sld_jax.in_memory.v2"


def _cache_path(root: str, name: str, split: str) -> str:
    """``<root>/sld_jax_in_memory/<name>/<split>.npz``; a sliced split's file name also carries a
    hash of the exact split string, so two slices never share a file."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in split)
    if safe != split:
        safe = f"{safe}-{hashlib.sha256(split.encode()).hexdigest()[:12]}"
    return os.path.join(root, "sld_jax_in_memory", name, f"{safe}.npz")


def _arrays_sha256(image: np.ndarray, label: np.ndarray) -> str:
    """sha256 over the dtypes, shapes and bytes of ``image`` and ``label`` (hex)."""
    h = hashlib.sha256()
    for key, a in (("image", image), ("label", label)):
        a = np.ascontiguousarray(a)
        h.update(f"{key}:{a.dtype.str}:{a.shape};".encode())
        h.update(memoryview(a).cast("B") if a.size else b"")
    return h.hexdigest()


def _arrays_layout(image: np.ndarray, label: np.ndarray) -> dict:
    """The example count, shapes and dtypes of a split's arrays, as a cache file records them
    (``count`` is -1 for a 0-d ``label``, found only in a damaged or foreign file)."""
    return {
        "count": int(label.shape[0]) if label.ndim else -1,
        "image_shape": [int(d) for d in image.shape],
        "image_dtype": image.dtype.str,
        "label_shape": [int(d) for d in label.shape],
        "label_dtype": label.dtype.str,
    }


def _source_identity(root: str, builder_dir: str) -> dict | None:
    """What identifies the prepared TFDS files a split was read from, or None if they are gone.

    ``builder`` is the builder directory relative to ``root`` (``<tfds_name>/<version>``: the
    same after the data_dir is copied or moved), ``info_sha256`` the digest of its
    ``dataset_info.json`` and ``info_mtime_ns`` that file's modification time (re-preparing the
    dataset rewrites it).
    """
    info = os.path.join(builder_dir, "dataset_info.json")
    try:
        with open(info, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        mtime_ns = os.stat(info).st_mtime_ns
    except OSError:
        return None
    return {
        "builder": os.path.relpath(os.path.abspath(builder_dir), root).replace(os.sep, "/"),
        "info_sha256": digest,
        "info_mtime_ns": int(mtime_ns),
    }


def _cache_record(spec: DatasetSpec, split: str, raw: Mapping[str, np.ndarray], source: dict) -> dict:
    """The metadata stored with a cached split (and compared on every read)."""
    image, label = raw["image"], raw["label"]
    return {
        "format": CACHE_FORMAT,
        "dataset": spec.name,
        "tfds_name": spec.tfds_name,
        "split": split,
        **_arrays_layout(image, label),
        "sha256": _arrays_sha256(image, label),
        "source": source,
    }


class _StaleCache(Exception):
    """Internal: a cache file that must not be used; the message says why."""


def _read_cache(root: str, spec: DatasetSpec, split: str) -> dict[str, np.ndarray] | None:
    """A split read earlier from the prepared TFDS files, None if there is no cache file.

    Returns ``{"image": uint8 [N, ...], "label": int [N]}`` as read from TFDS. Raises
    :class:`_StaleCache` saying why a cache file present must not be used.

    The file must be a complete ``.npz`` written by :func:`_write_cache` for this dataset and this
    exact split (slice included); its arrays must have the recorded count, shapes, dtypes and
    sha256; and the TFDS files it came from (found relative to ``root``) must still hold the same
    ``dataset_info.json``. Reading it needs numpy only, so a process that finds it never imports
    TensorFlow.
    """
    path = _cache_path(root, spec.name, split)
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            if "meta" not in f.files:
                raise _StaleCache("it has no record of its dataset, split and checksum")
            meta = json.loads(str(f["meta"]))
            image, label = f["image"], f["label"]
    except _StaleCache:
        raise
    except Exception as e:  # noqa: BLE001 - truncated, corrupt or foreign: rebuilt, never trusted
        raise _StaleCache(f"it cannot be read: {type(e).__name__}: {str(e)[:200]}") from None
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        raise _StaleCache(f"its format is {meta.get('format') if isinstance(meta, dict) else meta!r}")
    for key, want in (("dataset", spec.name), ("tfds_name", spec.tfds_name), ("split", split)):
        if meta.get(key) != want:
            raise _StaleCache(f"it holds {key} {meta.get(key)!r}, not {want!r}")
    for key, got in _arrays_layout(image, label).items():
        if meta.get(key) != got:
            raise _StaleCache(f"its arrays have {key} {got}, recorded {meta.get(key)}")
    if _arrays_sha256(image, label) != meta.get("sha256"):
        raise _StaleCache("its arrays do not match their recorded sha256")
    source = meta.get("source")
    builder = source.get("builder") if isinstance(source, dict) else None
    if not isinstance(builder, str) or not builder:
        raise _StaleCache("it does not record its TFDS source")
    current = _source_identity(root, os.path.join(root, *builder.split("/")))
    if current is None:
        raise _StaleCache(f"its TFDS source {os.path.join(root, builder)} is gone")
    if current != source:
        raise _StaleCache(f"its TFDS source {os.path.join(root, builder)} was prepared again since")
    return {"image": image, "label": label}


def _write_cache(
    root: str, spec: DatasetSpec, split: str, raw: dict[str, np.ndarray], builder_dir: str
) -> None:
    """Saves a split read from prepared TFDS files for :func:`_read_cache` (best effort).

    The file is written under a temporary name in the same directory, flushed to disk and then
    renamed over ``<split>.npz``, so an interrupted write never leaves a partial file in its place.
    """
    source = _source_identity(root, builder_dir)
    if source is None:
        return
    path = _cache_path(root, spec.name, split)
    record = _cache_record(spec, split, raw, source)
    try:
        with atomic.atomic_path(path, fsync=True) as tmp, open(tmp, "wb") as f:
            np.savez(f, image=raw["image"], label=raw["label"], meta=np.array(json.dumps(record)))
    except OSError as e:  # a read-only data_dir: no cache, nothing lost
        log.debug("not caching %s split %r in %s: %s", spec.name, split, path, e)


def load_in_memory(
    name: str, split: str, *, data_dir: str | os.PathLike | None = None, download: bool = True
) -> InMemorySplit:
    """Loads a whole split of ``digits`` or ``cifar100`` into host memory, validated.

    Prepares the dataset first if needed (see :func:`prepare`). A split read from prepared TFDS
    files is also saved (atomically) as ``<data_dir>/sld_jax_in_memory/<name>/<split>.npz`` with a
    record of its dataset, exact split, count, shapes, dtypes, the sha256 of its arrays and the
    TFDS files it came from; later loads read that file (without importing TensorFlow) only if
    all of these still match. A cache file that does not (another split's file, an edited,
    truncated or damaged one, re-prepared TFDS files) is rebuilt from the TFDS files, with a
    warning saying why. ``digits`` is served as
    ``uint8 [N, 16, 16, 3]``, ``cifar100`` as ``uint8 [N, 32, 32, 3]``; labels are ``int32 [N]``.
    Splits: ``"train"``/``"test"``, optionally sliced the TFDS way (``"train[:512]"``).

    Raises:
      DatasetNotFoundError: the dataset is absent and cannot be prepared (when a cache file had
        to be rejected, the message also names that file and why).
      DataValidationError: labels out of range or images of the wrong shape/dtype.

    >>> import tempfile
    >>> split = load_in_memory("digits", "test", data_dir=tempfile.mkdtemp())  # doctest: +SKIP
    >>> split.images.shape, split.labels.dtype  # doctest: +SKIP
    ((359, 16, 16, 3), dtype('int32'))
    """
    spec = get_spec(name)
    if not spec.in_memory:
        raise ValueError(
            f"dataset {name!r} is streamed, not held in memory; use sld_jax.data.imagenet instead."
        )
    _check_split(spec, split)
    root = resolve_data_dir(data_dir)
    rejected = None  # why a cache file present was not used
    try:
        raw = _read_cache(root, spec, split)
    except _StaleCache as e:
        raw, rejected = None, f"{_cache_path(root, spec.name, split)} ({e})"
        log.warning("rebuilding the cached %s split %r from its TFDS files: %s", spec.name, split, rejected)
    if raw is None:
        builder = tfds_builder(name, data_dir=root)
        if not builder.is_prepared():
            # TFDS can serve a split without local files (e.g. under tfds.testing.mock_data).
            raw = try_read(lambda: _read_numpy(builder, split))
            if raw is None:
                try:
                    builder = prepare(name, data_dir=root, download=download)
                except DatasetNotFoundError as e:
                    if rejected is None:
                        raise
                    raise DatasetNotFoundError(
                        f"the cached split {rejected} cannot be used and cannot be rebuilt: {e}"
                    ) from None
        if raw is None:
            raw = _read_numpy(builder, split)
            _write_cache(root, spec, split, raw, os.fspath(builder.data_dir))
    images = raw["image"]
    if spec.name == "digits":
        images = serve_digits(images)
    return InMemorySplit(images=images, labels=raw["label"], spec=spec, split=split)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sld_jax.data prepare NAME [--data_dir DIR] [--no-download]``."""
    parser = argparse.ArgumentParser(
        prog="python -m sld_jax.data", description="Prepare an sld_jax dataset in a TFDS data_dir."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="build/download a dataset into the data directory")
    p.add_argument("name", choices=list(DATASETS))
    p.add_argument(
        "--data_dir",
        default=None,
        help="TFDS data directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)",
    )
    p.add_argument("--no-download", dest="download", action="store_false", help="fail instead of downloading")
    args = parser.parse_args(argv)
    try:
        builder = prepare(args.name, data_dir=args.data_dir, download=args.download)
    except DatasetNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.name}: prepared in {builder.data_dir}")
    return 0
