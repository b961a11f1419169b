"""sld-import-teacher: user errors are one line on stderr with exit status 2, like sld-train's.

A missing ``--checkpoint`` is reported as such even where torch is not installed.
"""

import sys

import pytest

from sld_jax import cli
from sld_jax.models import torch_import


@pytest.fixture(autouse=True)
def _no_verbose(monkeypatch):
    monkeypatch.setenv(cli.VERBOSE_ENV, "")  # restored after each test (--verbose sets it)


def _run(capsys, checkpoint, out, arch="resnet8", main=cli.import_teacher_main):
    status = main(["--arch", arch, "--checkpoint", str(checkpoint), "--out", str(out)])
    captured = capsys.readouterr()
    return status, captured.err


def _assert_one_line(err, *words):
    assert err.count("\n") == 1 and "error: " in err and "Traceback" not in err, err
    for word in words:
        assert word in err, (word, err)


def test_a_missing_checkpoint_is_reported_before_a_missing_torch(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    absent, out = tmp_path / "absent.pth", tmp_path / "out"
    status, err = _run(capsys, absent, out)
    assert status == 2
    _assert_one_line(err, f"checkpoint file {str(absent)!r} does not exist", "pass the path of a .pth file")
    assert "pip install torch" not in err
    # With the file present, the missing torch is the error (same status, one line, the install hint).
    present = tmp_path / "present.pth"
    present.write_bytes(b"weights")
    status, err = _run(capsys, present, out)
    assert status == 2
    _assert_one_line(err, "needs torch, which is not installed", "pip install torch")
    assert not out.exists()


def test_user_errors_exit_with_status_2_and_one_line(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"hello world\nnot torch\n")
    mismatched = tmp_path / "mismatched.pth"
    torch.save({"model": {"fc.weight": torch.zeros(3, 4), "extra.weight": torch.zeros(2)}}, mismatched)
    out = tmp_path / "out"
    cases = [
        (corrupt, "resnet8", ["is not a PyTorch checkpoint", "torch.save"]),
        (corrupt, "resnet_8", ["unknown model 'resnet_8'"]),
        # A CheckpointMismatchError lists its problems on several lines: the first few, on one.
        (mismatched, "resnet8", ["checkpoint does not match 'resnet8'", "missing key:", "more"]),
    ]
    for checkpoint, arch, words in cases:
        for main in (cli.import_teacher_main, torch_import.main):  # one entry point, two names
            status, err = _run(capsys, checkpoint, out, arch=arch, main=main)
            assert status == 2, (arch, checkpoint.name, err)
            _assert_one_line(err, *words)
    assert not out.exists()


def test_verbose_keeps_the_traceback_of_a_user_error(tmp_path):
    argv = ["--arch", "resnet8", "--checkpoint", str(tmp_path / "absent.pth"), "--out", str(tmp_path / "o")]
    with pytest.raises(torch_import.TeacherFileNotFoundError, match="does not exist"):
        cli.import_teacher_main(["--verbose", *argv])


def test_bad_arguments_exit_with_status_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.import_teacher_main(["--arch", "resnet8"])
    assert exit_.value.code == 2 and "--checkpoint" in capsys.readouterr().err
