"""The hand-written TensorBoard event files read back with TensorFlow's own reader."""

import pytest

from sld_jax.train import tb_events


def test_scalars_read_back_with_tensorflow(tmp_path):
    tf = pytest.importorskip("tensorflow")
    writer = tb_events.EventWriter(str(tmp_path))
    writer.add_scalars(3, {"train_loss": 1.5, "test_top1": 0.25})
    writer.add_scalars(2**40, {"lr": 0.1})
    writer.close()
    # tf_record_iterator checks both CRCs of every record: a framing error raises here.
    events = list(tf.compat.v1.train.summary_iterator(writer.path))
    assert events[0].file_version == "brain.Event:2"
    got = [(e.step, [(v.tag, v.simple_value) for v in e.summary.value]) for e in events[1:]]
    assert got == [(3, [("train_loss", 1.5), ("test_top1", 0.25)]), (2**40, [("lr", pytest.approx(0.1))])]


def test_crc32c_and_varints():
    assert tb_events.crc32c(b"") == 0
    assert tb_events.crc32c(b"123456789") == 0xE3069283  # the standard check value
    assert tb_events._varint(300) == b"\xac\x02"
    assert len(tb_events._varint(-1)) == 10  # int64 -1: ten bytes, as protobuf encodes it
