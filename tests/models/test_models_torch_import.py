"""Reference PyTorch checkpoints -> flax variables: twins with random weights predict identically."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sld_jax.models import get_model  # noqa: E402
from sld_jax.models import torch_import as ti  # noqa: E402
from sld_jax.models import torch_twins as twins  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_single_thread")

# Compile quickly: these programs run once, so XLA's backend optimisation is not worth its time
# (used for the MobileNets, whose depthwise convolutions are slow to run op by op).
_FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _compile(fn, *args):
    return jax.jit(fn).lower(*args).compile(compiler_options=_FAST_COMPILE)


def _flax_key(torch_key):
    """The contract's naming rule, written out independently: ``a.b.0.running_var`` -> ``(a, b_0, var)``."""
    parts = []
    for comp in torch_key.split(".")[:-1]:
        if comp.isdigit():
            parts[-1] += "_" + comp
        else:
            parts.append(comp)
    leaf = {"running_mean": "mean", "running_var": "var"}[torch_key.split(".")[-1]]
    return tuple(parts) + (leaf,)


# (registry name, input side, class count, checkpoint format). Small inputs where the architecture allows.
TEACHERS = [
    ("resnet56", 16, 100, "cifar"),
    ("resnet110", 16, 100, "cifar"),
    ("resnet32x4", 16, 100, "cifar"),
    ("ResNet50", 16, 100, "cifar"),
    ("wrn_40_2", 16, 100, "cifar"),
    ("vgg13", 16, 100, "cifar"),
    ("imagenet_resnet34", 64, 1000, "imagenet"),
    ("imagenet_resnet50", 64, 1000, "imagenet"),
]


def _twin(arch, rng, side, num_classes):
    model = twins.TWINS[arch](num_classes=num_classes)
    calib = rng.normal(size=(4, 3, side, side)).astype(np.float32)
    return twins.randomize_(model, rng, calib)


def _save(path, state_dict, fmt):
    if fmt == "cifar":  # the KD teachers' layout: the state_dict under "model", plus training metadata
        torch.save({"model": state_dict, "epoch": 240, "best_acc": torch.tensor(80.0)}, path)
    else:  # torchvision: a plain state_dict
        torch.save(state_dict, path)
    return path


def _assert_rel_close(got, want, tol, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    err = np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-12)
    assert err <= tol, f"{what}: max relative difference {err:.2e} > {tol:.0e}"


@pytest.mark.parametrize("arch,side,num_classes,fmt", TEACHERS, ids=[t[0] for t in TEACHERS])
def test_teacher_twin_predicts_identically(arch, side, num_classes, fmt, rng, tmp_path):
    twin = _twin(arch, rng, side, num_classes)
    path = _save(tmp_path / "ckpt.pth", twin.state_dict(), fmt)
    variables = ti.load_torch_checkpoint(path, arch, num_classes=num_classes)
    model = get_model(arch, num_classes=num_classes)

    x = rng.normal(size=(2, 3, side, side)).astype(np.float32)
    with torch.no_grad():
        want_eval = twin.eval()(torch.from_numpy(x)).numpy()
        want_train = twin.train()(torch.from_numpy(x)).numpy()  # updates the twin's running statistics

    # Eager (op-by-op) application: for these deep stacks of repeated blocks it costs less CPU than
    # compiling the whole program once, and the compiled ops are shared between the architectures.
    x_nhwc = x.transpose(0, 2, 3, 1)
    logits, _ = model.apply(variables, x_nhwc, train=False)
    (logits_t, _), updated = model.apply(variables, x_nhwc, train=True, mutable=["batch_stats"])
    stats = updated["batch_stats"]
    assert logits.shape == (2, num_classes) and logits.dtype == np.float32
    _assert_rel_close(logits, want_eval, 1e-4, f"{arch} eval logits")
    # One train-mode forward: batch statistics in the output, running statistics updated as PyTorch's.
    _assert_rel_close(logits_t, want_train, 1e-3, f"{arch} train logits")
    got = {tuple(k.key for k in path): v for path, v in jax.tree_util.tree_leaves_with_path(stats)}
    running = {k: v for k, v in twin.state_dict().items() if k.endswith(("running_mean", "running_var"))}
    want = {_flax_key(k): v.numpy() for k, v in running.items()}
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        _assert_rel_close(got[key], value, 1e-4, f"{arch} running statistic {'/'.join(key)}")
    before = jax.tree_util.tree_leaves(variables["batch_stats"])
    assert all(not np.allclose(a, b) for a, b in zip(before, jax.tree_util.tree_leaves(stats)))


@pytest.mark.parametrize("arch", ["imagenet_mobilenet_v1", "imagenet_mobilenet_v2"])
def test_imagenet_mobilenets_import(arch, rng):
    twin = _twin(arch, rng, 32, 10)
    variables = ti.convert_state_dict(twin.state_dict(), arch, num_classes=10)
    model = get_model(arch, num_classes=10)
    x = rng.normal(size=(2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        want = twin.eval()(torch.from_numpy(x)).numpy()
    x_nhwc = x.transpose(0, 2, 3, 1)
    forward = _compile(lambda v, x: model.apply(v, x, train=False)[0], variables, x_nhwc)
    logits = forward(variables, x_nhwc)
    _assert_rel_close(logits, want, 1e-4, f"{arch} eval logits")


def test_key_and_shape_problems_are_all_listed(rng, tmp_path):
    sd = _twin("resnet8", rng, 16, 100).state_dict()
    sd["layer1.0.conv1.weihgt"] = sd.pop("layer1.0.conv1.weight")  # misspelt: missing + unexpected
    del sd["layer3.0.downsample.1.running_var"]  # missing
    sd["fc.weight"] = sd["fc.weight"][:10]  # wrong shape (a 10-class head)
    sd["layer2.0.conv2.weight"] = sd["layer2.0.conv2.weight"].permute(2, 3, 1, 0).contiguous()  # wrong layout
    sd["projector.weight"] = torch.zeros(3)  # unexpected
    path = _save(tmp_path / "bad.pth", sd, "cifar")
    with pytest.raises(ti.CheckpointMismatchError) as info:
        ti.load_torch_checkpoint(path, "resnet8", num_classes=100)
    err = info.value
    assert sorted(err.unexpected) == ["layer1.0.conv1.weihgt", "projector.weight"]
    assert len(err.missing) == 2
    assert err.missing[0].startswith("layer1.0.conv1.weight (flax params/layer1_0/conv1/kernel")
    assert err.missing[1].startswith(
        "layer3.0.downsample.1.running_var (flax batch_stats/layer3_0/downsample_1/var"
    )
    assert sorted(k for k, _, _ in err.mismatched) == ["fc.weight", "layer2.0.conv2.weight"]
    assert ("fc.weight", (10, 64), (100, 64)) in err.mismatched
    assert ("layer2.0.conv2.weight", (3, 3, 32, 32), (32, 32, 3, 3)) in err.mismatched
    msg = str(err)
    assert "(6 problems;" in msg
    for needle in (
        "missing key: layer1.0.conv1.weight",
        "unexpected key: projector.weight",
        "wrong shape: fc.weight is (10, 64), expected (100, 64)",
    ):
        assert needle in msg


class _Payload:
    """Unpickling this would create a file: a stand-in for arbitrary code in a downloaded checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("extra", ["namespace", "payload"])
def test_pickled_objects_are_refused(extra, rng, tmp_path):
    sd = _twin("resnet8", rng, 16, 100).state_dict()
    marker = tmp_path / "executed"
    obj = argparse.Namespace(lr=0.05) if extra == "namespace" else _Payload(str(marker))
    path = tmp_path / "ckpt.pth"
    torch.save({"model": sd, "opt": obj}, path)
    with pytest.raises(ValueError, match="refusing .*pickled objects"):
        ti.load_torch_checkpoint(path, "resnet8", num_classes=100)
    assert not marker.exists()


def test_state_dict_variants(rng, tmp_path):
    sd = _twin("resnet8", rng, 16, 100).state_dict()
    want = ti.convert_state_dict(sd, "resnet8", num_classes=100)
    # A DataParallel "module." prefix is dropped; a plain state_dict works for CIFAR archs too.
    torch.save({"module." + k: v for k, v in sd.items()}, tmp_path / "dp.pth")
    got = ti.load_torch_checkpoint(tmp_path / "dp.pth", "resnet8", num_classes=100)
    jax.tree.map(np.testing.assert_array_equal, got, want)
    # Half-precision tensors are widened to float32.
    torch.save(
        {"model": {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}}, tmp_path / "h.pth"
    )
    half = ti.load_torch_checkpoint(tmp_path / "h.pth", "resnet8", num_classes=100)
    assert all(a.dtype == np.float32 for a in jax.tree.leaves(half))
    torch.save({"epoch": 3}, tmp_path / "none.pth")
    with pytest.raises(ValueError, match="not named tensors"):
        ti.read_state_dict(tmp_path / "none.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="not a state_dict"):
        ti.read_state_dict(tmp_path / "list.pth")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ti.read_state_dict(tmp_path / "absent.pth")
    with pytest.raises(ValueError, match="unknown model 'resnet_8'"):
        ti.load_torch_checkpoint(tmp_path / "dp.pth", "resnet_8", num_classes=100)


def test_cli_writes_a_teacher_dir_that_reads_back(rng, tmp_path, capsys):
    sd = _twin("resnet8", rng, 16, 100).state_dict()
    ckpt = _save(tmp_path / "resnet8_vanilla_ckpt_epoch_240.pth", sd, "cifar")
    out = tmp_path / "teachers" / "resnet8"
    assert ti.main(["--arch", "resnet8", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    assert "resnet8" in capsys.readouterr().out
    meta = json.loads((out / ti.TEACHER_METADATA_FILE).read_text())
    assert (
        meta["arch"] == "resnet8" and meta["num_classes"] == 100 and meta["source"] == os.path.abspath(ckpt)
    )
    arch, num_classes, variables = ti.load_teacher_dir(out)
    assert (arch, num_classes) == ("resnet8", 100)
    want = ti.convert_state_dict(sd, "resnet8", num_classes=100)
    assert jax.tree.structure(variables) == jax.tree.structure(want)
    jax.tree.map(np.testing.assert_array_equal, variables, want)
    # A second run refuses to overwrite unless asked; user errors are one line on stderr, exit 2.
    assert ti.main(["--arch", "resnet8", "--checkpoint", str(ckpt), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert ti.main(["--arch", "resnet8", "--checkpoint", str(ckpt), "--out", str(out), "--overwrite"]) == 0
    assert (
        ti.main(
            [
                "--arch",
                "resnet8",
                "--checkpoint",
                str(ckpt),
                "--out",
                str(tmp_path / "o2"),
                "--num-classes",
                "10",
            ]
        )
        == 2
    )
    assert "wrong shape: fc.weight is (100, 64), expected (10, 64)" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="not a teacher directory"):
        ti.load_teacher_dir(tmp_path)


def test_missing_torch_gives_install_hint(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)
    (tmp_path / "x.pth").write_bytes(b"weights")
    with pytest.raises(ImportError, match="pip install torch"):
        ti.read_state_dict(tmp_path / "x.pth")
    # A wrong path is reported as such first, with or without torch.
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ti.read_state_dict(tmp_path / "absent.pth")


def test_torch_is_not_a_runtime_dependency():
    """A fresh interpreter imports every module of sld_jax but the twins (which exist to be compared
    with PyTorch): torch is not loaded. torch_import reads checkpoints with weights_only=True."""
    code = """
import importlib, pkgutil, sys
import sld_jax
skip = {"sld_jax.models.torch_twins"}
for m in pkgutil.walk_packages(sld_jax.__path__, "sld_jax."):
    if m.name not in skip and not m.name.endswith("__main__"):
        importlib.import_module(m.name)
print(sorted(n for n in ("torch",) if n in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "weights_only=True" in pathlib.Path(ti.__file__).read_text()
