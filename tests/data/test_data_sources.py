"""TFDS sources: the offline digits builder, cifar100 through mock_data, missing-data errors, validation."""

import glob
import logging
import os
import pathlib
import shutil
import time
import traceback

import numpy as np
import pytest
from jax.sharding import Mesh

from sld_jax.data import digits_builder, pipeline, sources


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    """A TFDS data_dir in which digits has been built (shared by the modules of one session)."""
    path = tmp_path_factory.getbasetemp() / "tfds_digits"
    sources.prepare("digits", data_dir=path)
    return path


def test_digits_builds_offline_with_documented_shapes(digits_dir):
    spec = sources.get_spec("digits")
    assert (digits_dir / "digits" / "1.0.0" / "dataset_info.json").exists()
    train = sources.load_in_memory("digits", "train", data_dir=digits_dir, download=False)
    test = sources.load_in_memory("digits", "test", data_dir=digits_dir, download=False)
    assert train.images.shape == (spec.train_size, 16, 16, 3) == (1438, 16, 16, 3)
    assert test.images.shape == (spec.test_size, 16, 16, 3) == (359, 16, 16, 3)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(test.labels), [36, 36, 35, 37, 36, 36, 36, 36, 35, 36])
    served = train.images / 255.0  # the spec's normalisation constants are those of the served data
    np.testing.assert_allclose(served.mean(axis=(0, 1, 2)), spec.mean, atol=1e-4)
    np.testing.assert_allclose(served.std(axis=(0, 1, 2)), spec.std, atol=1e-4)


def test_digits_split_is_fixed_stratified_and_served_upscaled(digits_dir):
    import tensorflow_datasets as tfds

    images, labels = digits_builder.digits_arrays()
    split = digits_builder.split_indices(labels)
    assert sorted(np.concatenate([split["train"], split["test"]]).tolist()) == list(range(1797))
    for name, idx in split.items():
        raw = tfds.as_numpy(
            sources.tfds_builder("digits", data_dir=digits_dir).as_dataset(split=name, batch_size=-1)
        )
        np.testing.assert_array_equal(np.sort(raw["id"]), idx)
        served = sources.serve_digits(raw["image"])
        expected = np.kron(images[raw["id"]], np.ones((2, 2), np.uint8))
        np.testing.assert_array_equal(served[..., 1], expected)
        np.testing.assert_array_equal(served[..., 0], served[..., 2])
        np.testing.assert_array_equal(raw["label"], labels[raw["id"]])
    again = digits_builder.split_indices(labels)
    np.testing.assert_array_equal(again["test"], split["test"])


def test_cifar100_through_mock_data(tmp_path):
    import jax
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=6):
        train = sources.load_in_memory("cifar100", "train", data_dir=tmp_path)
    assert train.images.shape == (6, 32, 32, 3) and train.images.dtype == np.uint8
    assert train.labels.dtype == np.int32 and ((train.labels >= 0) & (train.labels < 100)).all()
    assert train.spec.crop_padding == 4 and train.spec.train_size == 50_000
    mesh = Mesh(jax.devices()[:2], ("data",))
    masks = [
        np.asarray(b["mask"])
        for b in pipeline.train_batches(train, global_batch_size=4, seed=0, epoch=1, mesh=mesh)
    ]
    assert [m.sum() for m in masks] == [4, 2]


def test_missing_dataset_is_one_clear_fast_error(tmp_path, monkeypatch):
    start = time.perf_counter()
    with pytest.raises(sources.DatasetNotFoundError) as err:
        sources.load_in_memory("cifar100", "train", data_dir=tmp_path, download=False)
    message = str(err.value)
    assert "'cifar100'" in message and str(tmp_path) in message
    assert f"python -m sld_jax.data prepare cifar100 --data_dir {tmp_path}" in message
    shown = "".join(traceback.format_exception(err.value))
    assert "tensorflow_datasets" not in shown and "During handling" not in shown  # no TFDS stack trace
    # An automatic download first probes the server, so an offline machine fails at once.
    monkeypatch.setattr(
        sources, "_unreachable", lambda url, timeout: f"{url} is unreachable: ConnectionError"
    )
    with pytest.raises(sources.DatasetNotFoundError, match="unreachable") as err:
        sources.load_in_memory("cifar100", "test", data_dir=tmp_path, download=True)
    assert "tensorflow_datasets" not in "".join(traceback.format_exception(err.value))
    with pytest.raises(sources.DatasetNotFoundError, match="ILSVRC2012_img_train.tar.*downloads/manual"):
        sources.prepare("imagenet2012", data_dir=tmp_path)
    assert time.perf_counter() - start < 20
    assert not (tmp_path / "cifar100").exists() or not any((tmp_path / "cifar100").rglob("*.tfrecord*"))


def test_unreachable_probe_fails_fast():
    start = time.perf_counter()
    reason = sources._unreachable("http://127.0.0.1:9/cifar-100-binary.tar.gz", timeout=2.0)
    assert reason and "unreachable" in reason and time.perf_counter() - start < 5


def test_prepare_command_line(tmp_path, digits_dir, capsys):
    assert sources.main(["prepare", "cifar100", "--data_dir", str(tmp_path), "--no-download"]) == 1
    assert "prepare it with: python -m sld_jax.data prepare cifar100" in capsys.readouterr().err
    assert sources.main(["prepare", "digits", "--data_dir", str(digits_dir)]) == 0


def test_validation_names_dataset_split_and_first_bad_index():
    spec = sources.get_spec("digits")
    good = np.zeros((5, 16, 16, 3), np.uint8)
    out_of_range = r"digits split 'train': label 10 at index 3 is outside \[0, 10\)"
    with pytest.raises(sources.DataValidationError, match=out_of_range):
        sources.InMemorySplit(images=good, labels=np.array([0, 1, 2, 10, 11]), spec=spec, split="train")
    with pytest.raises(sources.DataValidationError, match="label -1 at index 0"):
        sources.validate_examples(good, np.array([-1, 0, 0, 0, 0]), spec=spec, split="test")
    wrong_dtype = r"'test': image at index 0 is float32 \(16, 16, 3\), expected uint8"
    with pytest.raises(sources.DataValidationError, match=wrong_dtype):
        sources.validate_examples(good.astype(np.float32), np.zeros(5, int), spec=spec, split="test")
    images = [good[0], good[1], np.zeros((8, 8, 3), np.uint8), good[3]]
    with pytest.raises(sources.DataValidationError, match=r"image at index 2 is uint8 \(8, 8, 3\)"):
        sources.validate_examples(images, np.zeros(4, int), spec=spec, split="train")
    with pytest.raises(sources.DataValidationError, match="labels are .* for 5 images"):
        sources.validate_examples(good, np.zeros(4, int), spec=spec, split="train")
    sources.validate_examples(list(good), np.arange(5), spec=spec, split="train")  # valid: no error


def test_unknown_names_are_rejected_early(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'cifar10'; choose one of: digits, cifar100"):
        sources.load_in_memory("cifar10", "train", data_dir=tmp_path)
    with pytest.raises(ValueError, match="has no split 'validation'"):
        sources.load_in_memory("digits", "validation", data_dir=tmp_path)
    with pytest.raises(ValueError, match="streamed"):
        sources.load_in_memory("imagenet2012", "train", data_dir=tmp_path)


def test_data_dir_defaults_to_tfds_conventions(monkeypatch, tmp_path):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    assert sources.resolve_data_dir() == str(tmp_path)
    monkeypatch.delenv("TFDS_DATA_DIR")
    assert sources.resolve_data_dir().endswith("tensorflow_datasets")
    assert sources.resolve_data_dir("~/x").endswith("/x") and "~" not in sources.resolve_data_dir("~/x")


def test_in_memory_cache_is_read_without_tensorflow_and_follows_the_tfds_files(digits_dir, monkeypatch):
    first = sources.load_in_memory("digits", "test", data_dir=digits_dir)
    reads = []
    real_read = sources._read_numpy
    monkeypatch.setattr(sources, "_read_numpy", lambda *a: reads.append(a) or real_read(*a))
    again = sources.load_in_memory("digits", "test", data_dir=digits_dir)
    assert reads == []  # served from <data_dir>/sld_jax_in_memory, not from TFDS
    np.testing.assert_array_equal(again.images, first.images)
    np.testing.assert_array_equal(again.labels, first.labels)
    # Re-preparing the TFDS files (a new dataset_info.json) makes the cache stale.
    [info] = glob.glob(os.path.join(digits_dir, "digits", "*", "dataset_info.json"))
    os.utime(info, (time.time() + 5, time.time() + 5))
    sources.load_in_memory("digits", "test", data_dir=digits_dir)
    assert len(reads) == 1
    # A damaged cache file is ignored (and rewritten), never trusted.
    with open(sources._cache_path(digits_dir, "digits", "test"), "wb") as f:
        f.write(b"not an npz")
    damaged = sources.load_in_memory("digits", "test", data_dir=digits_dir)
    assert len(reads) == 2
    np.testing.assert_array_equal(damaged.labels, first.labels)


# --- the verified in-memory cache ---------------------------------------------------------------


@pytest.fixture
def digits_copy(digits_data_dir, tmp_path):
    """A private copy of the session's digits data_dir (TFDS files and both cached splits)."""
    root = tmp_path / "tfds"
    shutil.copytree(digits_data_dir, root)
    return root


def _tfds_reads(monkeypatch):
    """The list of reads from the TFDS files (not from the cache) from now on."""
    reads, real_read = [], sources._read_numpy
    monkeypatch.setattr(sources, "_read_numpy", lambda *a: reads.append(a) or real_read(*a))
    return reads


def _cache_file(root, split, name="digits"):
    return pathlib.Path(sources._cache_path(str(root), name, split))


def test_another_splits_cache_file_is_rebuilt_not_served(digits_copy, monkeypatch, caplog):
    reads = _tfds_reads(monkeypatch)
    shutil.copyfile(_cache_file(digits_copy, "test"), _cache_file(digits_copy, "train"))
    with caplog.at_level(logging.WARNING, logger=sources.__name__):
        train = sources.load_in_memory("digits", "train", data_dir=digits_copy, download=False)
    assert len(train) == 1438 and len(reads) == 1  # the train split, read again from TFDS
    assert "holds split 'test', not 'train'" in caplog.text
    assert str(_cache_file(digits_copy, "train")) in caplog.text
    again = sources.load_in_memory("digits", "train", data_dir=digits_copy, download=False)
    assert len(reads) == 1  # the rebuilt file is served from now on
    np.testing.assert_array_equal(again.labels, train.labels)


@pytest.mark.parametrize("damage", ["truncated", "byte_flipped"])
def test_a_damaged_cache_file_is_rebuilt(digits_copy, monkeypatch, caplog, damage):
    want = sources.load_in_memory("digits", "test", data_dir=digits_copy, download=False)
    reads = _tfds_reads(monkeypatch)
    path = _cache_file(digits_copy, "test")
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        del data[len(data) // 2 :]
    else:
        data[len(data) // 2] ^= 0xFF  # inside the image array
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger=sources.__name__):
        got = sources.load_in_memory("digits", "test", data_dir=digits_copy, download=False)
    assert len(reads) == 1 and "rebuilding the cached digits split 'test'" in caplog.text
    np.testing.assert_array_equal(got.images, want.images)
    np.testing.assert_array_equal(got.labels, want.labels)


def test_a_cache_file_with_edited_arrays_fails_its_checksum_and_is_rebuilt(digits_copy, monkeypatch, caplog):
    want = sources.load_in_memory("digits", "train", data_dir=digits_copy, download=False)
    reads = _tfds_reads(monkeypatch)
    path = _cache_file(digits_copy, "train")
    with np.load(path) as f:
        entries = {key: f[key] for key in f.files}  # the split record and the source stay as they are
    entries["label"] = (entries["label"] + 1) % 10
    np.savez(path, **entries)
    with caplog.at_level(logging.WARNING, logger=sources.__name__):
        got = sources.load_in_memory("digits", "train", data_dir=digits_copy, download=False)
    assert len(reads) == 1 and "do not match their recorded sha256" in caplog.text
    np.testing.assert_array_equal(got.labels, want.labels)


@pytest.mark.parametrize("cache", ["digits_file", "truncated"])
def test_a_rejected_cache_that_cannot_be_rebuilt_is_one_clear_error(digits_data_dir, tmp_path, cache):
    # cifar100 is not prepared here and download=False: nothing can replace the cache file.
    path = _cache_file(tmp_path, "train", name="cifar100")
    path.parent.mkdir(parents=True)
    shutil.copyfile(_cache_file(digits_data_dir, "train"), path)  # another dataset's file
    if cache == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(sources.DatasetNotFoundError) as err:
        sources.load_in_memory("cifar100", "train", data_dir=tmp_path, download=False)
    message = str(err.value)
    assert f"the cached split {path} (" in message and "cannot be used and cannot be rebuilt" in message
    assert f"prepare it with: python -m sld_jax.data prepare cifar100 --data_dir {tmp_path}" in message
    assert "\n" not in message
    shown = "".join(traceback.format_exception(err.value))
    assert "zipfile" not in shown and "During handling" not in shown


def test_an_interrupted_cache_write_leaves_no_file_behind(digits_copy, monkeypatch):
    split = sources.load_in_memory("digits", "test", data_dir=digits_copy, download=False)
    raw = {"image": split.images[:, ::2, ::2, :1], "label": split.labels}
    path = _cache_file(digits_copy, "test[:10]")

    def killed(file, **arrays):
        file.write(b"PK\x03\x04 half an archive")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", killed)
    with pytest.raises(KeyboardInterrupt):
        sources._write_cache(
            str(digits_copy), split.spec, "test[:10]", raw, str(digits_copy / "digits" / "1.0.0")
        )
    assert not path.exists() and sorted(os.listdir(path.parent)) == ["test.npz", "train.npz"]
