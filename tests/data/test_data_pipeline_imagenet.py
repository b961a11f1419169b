"""The ImageNet host pipeline on generated JPEG/PNG bytes: decoding, crops, order, padding, resume, shards."""

import io

import jax
import numpy as np
import pytest
from jax.sharding import Mesh
from PIL import Image

from sld_jax.data import imagenet, pipeline, sources

S = 32  # crop side used in tests (224 in use); the code path is the same


@pytest.fixture(scope="module")
def jpegs():
    return imagenet.synthetic_jpegs(6, height=40, width=52, seed=0)


def _png(array):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _train(jpegs, **kwargs):
    args = dict(num_examples=len(jpegs), local_batch_size=4, seed=0, epoch=1, image_size=S)
    args.update(kwargs)
    return list(imagenet.train_dataset(imagenet.raw_from_jpegs(jpegs), **args).as_numpy_iterator())


def test_train_views_shapes_padding_and_coverage(jpegs):
    batches = _train(jpegs)
    assert len(batches) == 2
    for b in batches:
        assert b["image"].shape == b["image_strong"].shape == (4, S, S, 3)
        assert b["image"].dtype == np.uint8 and b["label"].dtype == np.int32 and b["index"].dtype == np.int32
    assert batches[1]["mask"].tolist() == [True, True, False, False]
    assert (batches[1]["index"][2:] == -1).all() and (batches[1]["image"][2:] == 0).all()
    seen = np.concatenate([b["index"][b["mask"]] for b in batches])
    assert sorted(seen.tolist()) == list(range(6))
    real = np.concatenate([b["image"][b["mask"]] for b in batches])
    strong = np.concatenate([b["image_strong"][b["mask"]] for b in batches])
    assert all(not np.array_equal(w, s) for w, s in zip(real, strong, strict=True))  # two independent crops
    assert real.std() > 10  # decoded content, not blank


def test_train_is_deterministic_per_epoch_and_resumes_exactly(jpegs):
    first, again = _train(jpegs), _train(jpegs)
    for a, b in zip(first, again, strict=True):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    other = _train(jpegs, epoch=2)
    assert not np.array_equal(first[0]["image"], other[0]["image"])
    resumed = _train(jpegs, start_step=1)
    assert len(resumed) == 1
    for k in first[1]:
        np.testing.assert_array_equal(first[1][k], resumed[0][k])
    with pytest.raises(ValueError, match="start_step"):
        _train(jpegs, start_step=3)


def test_random_resized_crop_flips_and_crops_a_gradient():
    import tensorflow as tf

    ramp = np.broadcast_to(np.linspace(0, 255, 80).astype(np.uint8)[None, :, None], (60, 80, 3)).copy()
    image = imagenet.decode_rgb(tf.constant(_png(ramp)))
    np.testing.assert_array_equal(image.numpy(), ramp)  # lossless decode
    directions, widths = set(), []
    for i in range(8):
        view = imagenet.random_resized_crop_flip(image, tf.constant([i, 7], tf.int64), image_size=S).numpy()
        cols = view[..., 0].astype(float).mean(axis=0)
        steps = np.diff(cols)
        assert (steps >= -1).all() or (steps <= 1).all()  # a crop of a ramp stays monotonic
        directions.add(bool(cols[-1] > cols[0]))
        widths.append(abs(cols[-1] - cols[0]))
    assert directions == {True, False}  # both flipped and unflipped views occur
    assert max(widths) - min(widths) > 20  # crops of different extents


def test_eval_resize_and_centre_crop_match_pil():
    rng = np.random.default_rng(0)
    low = rng.integers(0, 256, (6, 8, 3)).astype(np.uint8)
    image = np.asarray(Image.fromarray(low).resize((80, 60), Image.BILINEAR))  # smooth 60x80
    raw = imagenet.raw_from_jpegs([_png(image)])
    (batch,) = imagenet.eval_dataset(
        raw, num_examples=1, local_batch_size=1, image_size=S, resize_size=36
    ).as_numpy_iterator()
    # torchvision: shorter side 60 -> 36, longer 80 -> int(36 * 80 / 60) = 48; centre crop 32.
    ref = np.asarray(Image.fromarray(image).resize((48, 36), Image.BILINEAR))[2:34, 8:40]
    diff = np.abs(batch["image"][0].astype(int) - ref.astype(int))
    assert diff.mean() < 1.5 and diff.max() <= 8


def test_eval_pads_to_equal_batch_counts(jpegs):
    ds = imagenet.eval_dataset(
        imagenet.raw_from_jpegs(jpegs),
        num_examples=6,
        local_batch_size=4,
        num_batches=3,
        image_size=S,
        resize_size=36,
    )
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == 3 and [int(b["mask"].sum()) for b in batches] == [4, 2, 0]
    assert np.concatenate([b["index"][b["mask"]] for b in batches]).tolist() == list(range(6))
    assert imagenet.steps_per_epoch(6, 8, process_count=2) == 1
    assert imagenet.steps_per_epoch(7, 4, process_count=2) == 2


def test_two_process_shards_partition_a_tfds_split(tmp_path_factory):
    data_dir = tmp_path_factory.getbasetemp() / "tfds_digits"  # shared with test_data_sources
    sources.prepare("digits", data_dir=data_dir)
    for train in (False, True):
        shards = [
            imagenet.read_shard(
                "train[:301]",
                train=train,
                name="digits",
                data_dir=data_dir,
                seed=0,
                process_index=p,
                process_count=2,
            )
            for p in range(2)
        ]
        ids = [[int(e["index"]) for e in s.dataset.as_numpy_iterator()] for s in shards]
        assert [s.num_examples for s in shards] == [len(i) for i in ids] == [151, 150]
        assert [s.offset for s in shards] == [0, 151] and shards[0].split_size == 301
        assert shards[1].max_shard_size == 151  # both processes run ceil(151 / b) batches
        union = ids[0] + ids[1]
        assert len(set(union)) == 301  # no duplicate, no loss
        if not train:
            assert sorted(union) == list(range(301)) and ids[1][0] == 151
    assert imagenet.shard_bounds(301, 1, 2) == (151, 150)


def test_imagenet_through_mock_data_gives_global_batches(tmp_path):
    import tensorflow_datasets as tfds

    mesh = Mesh(jax.devices()[:2], ("data",))
    with tfds.testing.mock_data(num_examples=3):
        train = list(
            imagenet.train_batches(
                global_batch_size=2,
                seed=0,
                epoch=1,
                mesh=mesh,
                data_dir=tmp_path,
                image_size=S,
                shuffle_buffer=4,
            )
        )
        evals = list(
            imagenet.eval_batches(
                global_batch_size=2, mesh=mesh, data_dir=tmp_path, image_size=S, resize_size=36
            )
        )
    assert len(train) == len(evals) == 2
    batch = train[0]
    assert batch["image"].shape == batch["image_strong"].shape == (2, S, S, 3)
    assert batch["image"].sharding.is_equivalent_to(pipeline.data_sharding(mesh), 4)
    assert [int(np.asarray(b["mask"]).sum()) for b in evals] == [2, 1]
    assert np.concatenate([np.asarray(b["index"]) for b in evals]).tolist() == [0, 1, 2, -1]


def test_missing_imagenet_is_one_clear_error(tmp_path):
    with pytest.raises(sources.DatasetNotFoundError, match="imagenet2012.*ILSVRC2012_img_val.tar"):
        imagenet.read_shard("validation", train=False, data_dir=tmp_path)
