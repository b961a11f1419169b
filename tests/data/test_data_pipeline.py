"""In-memory train/eval batching: order, padding, resume, sharding and (simulated) multi-process splits."""

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from sld_jax.data import pipeline, sources

N = 10  # examples in the toy split
SPEC = sources.get_spec("digits")  # 16x16 RGB, 10 classes


@pytest.fixture
def split(rng):
    """A toy split whose image i is filled with the value i (so rows can be traced back)."""
    images = np.broadcast_to(np.arange(N, dtype=np.uint8)[:, None, None, None], (N, 16, 16, 3)).copy()
    labels = rng.integers(0, SPEC.num_classes, N)
    return sources.InMemorySplit(images=images, labels=labels, spec=SPEC, split="train")


def _mesh(k):
    return Mesh(jax.devices()[:k], ("data",))


def _np(batch):
    return {k: np.asarray(v) for k, v in batch.items()}


def _check_rows(split, batch):
    """Every real row carries its example's image and label; padded rows are zero with index -1."""
    m = batch["mask"]
    np.testing.assert_array_equal(batch["image"][m][:, 0, 0, 0], batch["index"][m])
    np.testing.assert_array_equal(batch["label"][m], split.labels[batch["index"][m]])
    assert (batch["index"][~m] == -1).all() and (batch["image"][~m] == 0).all()


def test_steps_per_epoch():
    assert pipeline.steps_per_epoch(50_000, 64) == 782  # 781 full batches + one of 16 (reference)
    assert pipeline.steps_per_epoch(8, 4) == 2
    with pytest.raises(ValueError, match="positive"):
        pipeline.steps_per_epoch(8, 0)


def test_epoch_permutation_deterministic_and_distinct():
    p = pipeline.epoch_permutation(3, 1, 100)
    np.testing.assert_array_equal(np.sort(p), np.arange(100))
    np.testing.assert_array_equal(p, pipeline.epoch_permutation(3, 1, 100))
    assert not np.array_equal(p, pipeline.epoch_permutation(3, 2, 100))
    assert not np.array_equal(p, pipeline.epoch_permutation(4, 1, 100))
    with pytest.raises(ValueError, match="non-negative"):
        pipeline.epoch_permutation(-1, 1, 10)


def test_train_epoch_covers_every_example_once_and_pads_tail(split):
    mesh = _mesh(2)
    batches = [_np(b) for b in pipeline.train_batches(split, global_batch_size=4, seed=0, epoch=1, mesh=mesh)]
    assert len(batches) == pipeline.steps_per_epoch(N, 4) == 3
    for b in batches:
        assert b["image"].shape == (4, 16, 16, 3) and b["image"].dtype == np.uint8
        assert b["label"].dtype == np.int32 and b["mask"].dtype == np.bool_ and b["index"].dtype == np.int32
        _check_rows(split, b)
    assert [int(b["mask"].sum()) for b in batches] == [4, 4, 2]
    assert not batches[-1]["mask"][2:].any()
    seen = np.concatenate([b["index"][b["mask"]] for b in batches])
    np.testing.assert_array_equal(seen, pipeline.epoch_permutation(0, 1, N))  # consecutive slices
    other = np.concatenate(
        [
            _np(b)["index"]
            for b in pipeline.train_batches(split, global_batch_size=4, seed=0, epoch=2, mesh=mesh)
        ]
    )
    assert not np.array_equal(other[:N], seen)


def test_train_batches_are_global_arrays_sharded_on_data(split):
    mesh = _mesh(4)
    batch = next(pipeline.train_batches(split, global_batch_size=8, seed=0, epoch=1, mesh=mesh))
    for v in batch.values():
        assert isinstance(v, jax.Array) and v.shape[0] == 8
        assert v.sharding.is_equivalent_to(pipeline.data_sharding(mesh), v.ndim)
        assert {s.data.shape[0] for s in v.addressable_shards} == {2}
    order = pipeline.epoch_permutation(0, 1, N)[:8]
    for shard in batch["index"].addressable_shards:  # each device holds its slice of the global batch
        np.testing.assert_array_equal(np.asarray(shard.data), order[shard.index[0]])


def test_start_step_resumes_exactly(split):
    mesh = _mesh(2)
    full = [_np(b) for b in pipeline.train_batches(split, global_batch_size=4, seed=7, epoch=3, mesh=mesh)]
    resumed = [
        _np(b)
        for b in pipeline.train_batches(split, global_batch_size=4, seed=7, epoch=3, mesh=mesh, start_step=1)
    ]
    assert len(resumed) == len(full) - 1
    for a, b in zip(full[1:], resumed, strict=True):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert (
        list(pipeline.train_batches(split, global_batch_size=4, seed=7, epoch=3, mesh=mesh, start_step=3))
        == []
    )


@pytest.mark.parametrize("num_devices", [1, 2, 4])
def test_eval_counts_each_example_once(split, num_devices):
    batches = [_np(b) for b in pipeline.eval_batches(split, global_batch_size=4, mesh=_mesh(num_devices))]
    assert len(batches) == 3
    for b in batches:
        _check_rows(split, b)
    seen = np.concatenate([b["index"][b["mask"]] for b in batches])
    np.testing.assert_array_equal(seen, np.arange(N))
    assert sum(int(b["mask"].sum()) for b in batches) == N


@pytest.mark.parametrize("kind", ["train", "eval"])
def test_two_simulated_processes_partition_the_split(split, kind):
    mesh = _mesh(4)

    def host(p):
        kwargs = dict(global_batch_size=4, mesh=mesh, process_index=p, process_count=2)
        if kind == "train":
            return list(pipeline.host_train_batches(split, seed=0, epoch=1, **kwargs))
        return list(pipeline.host_eval_batches(split, **kwargs))

    p0, p1 = host(0), host(1)
    assert len(p0) == len(p1) == 3  # equal batch counts on every process
    np.testing.assert_array_equal(pipeline.process_rows(4, mesh, process_index=1, process_count=2), [2, 3])
    ids = np.concatenate([b["index"][b["mask"]] for b in p0 + p1])
    assert len(ids) == len(set(ids.tolist())) == N  # no duplicate, no loss
    if kind == "train":
        single = list(pipeline.host_train_batches(split, global_batch_size=4, seed=0, epoch=1, mesh=mesh))
    else:
        single = list(pipeline.host_eval_batches(split, global_batch_size=4, mesh=mesh))
    for a, b, whole in zip(p0, p1, single, strict=True):  # the two halves make up the single-process batch
        for k in whole:
            np.testing.assert_array_equal(np.concatenate([a[k], b[k]]), whole[k])


def test_argument_errors(split):
    mesh = _mesh(4)
    with pytest.raises(ValueError, match="multiple of the mesh's 4 data shards"):
        pipeline.train_batches(split, global_batch_size=6, seed=0, epoch=1, mesh=mesh)
    with pytest.raises(ValueError, match="start_step"):
        pipeline.train_batches(split, global_batch_size=4, seed=0, epoch=1, mesh=mesh, start_step=4)
    with pytest.raises(ValueError, match="axis named 'data'"):
        pipeline.eval_batches(split, global_batch_size=4, mesh=Mesh(jax.devices()[:2], ("batch",)))
    with pytest.raises(ValueError, match="process_index"):
        pipeline.process_rows(4, mesh, process_index=2, process_count=2)
    with pytest.raises(ValueError, match="evenly"):
        pipeline.process_rows(4, mesh, process_index=0, process_count=3)
