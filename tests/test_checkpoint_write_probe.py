"""The workdir write probe: runs that start together in one directory never fail each other."""

import os
import sys
import threading

import pytest

from sld_jax.train import checkpoint


def test_concurrent_write_probes_never_report_a_writable_directory_as_unwritable(tmp_path):
    # Four threads of one process share its pid and process index: the worst case for a probe name.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # interleave the threads as often as possible
    errors, start = [], threading.Barrier(4)

    def probe_many():
        start.wait()
        for _ in range(200):
            try:
                checkpoint.check_writable(str(tmp_path))
            except checkpoint.CheckpointError as e:
                errors.append(str(e))

    threads = [threading.Thread(target=probe_many) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    assert os.listdir(tmp_path) == []  # every probe removed


def test_an_unwritable_workdir_is_still_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(checkpoint.CheckpointError, match="is not writable"):
        checkpoint.check_writable(str(blocker / "workdir"))
