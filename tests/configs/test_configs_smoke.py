"""A paper config runs two steps end to end on CIFAR-100-shaped data.

The config files are loaded with their ``runlocal`` argument (``sld_jax.configs_lib.runlocal``: tiny
model and teacher, a few examples, two steps), so the dataset path, the method's objective, the
teacher loading and the step all run; the architectures themselves are covered by tests/models.
"""

import importlib.util
import pathlib

import jax
import numpy as np
import pytest

from sld_jax.data import sources
from sld_jax.train import loop

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[2] / "configs"


def load_runlocal(rel, *, teacher_dir=None, data_dir):
    """The config file ``rel`` as ``--config rel:runlocal`` gives it, on mock data and 2 devices."""
    path = CONFIG_DIR / rel
    spec = importlib.util.spec_from_file_location(f"cfg_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("runlocal")
    if teacher_dir is not None:
        config.teacher.checkpoint = teacher_dir
    config.dataset.data_dir = data_dir
    config.dataset.download = False
    config.num_devices = 2
    return config


@pytest.fixture(scope="module")
def mock_cifar():
    """Serves a small random CIFAR-100-shaped split in place of the TFDS one.

    (The TFDS cifar100 loading path itself runs under ``tfds.testing.mock_data`` in tests/data.)
    """
    spec = sources.get_spec("cifar100")
    rng = np.random.default_rng(0)

    def fake_load(name, split, **kwargs):
        assert name == "cifar100", name
        n = 16
        return sources.InMemorySplit(
            images=rng.integers(0, 256, (n, spec.image_size, spec.image_size, 3), dtype=np.uint8),
            labels=rng.integers(0, spec.num_classes, n).astype(np.int32),
            spec=spec,
            split=split,
        )

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sources, "load_in_memory", fake_load)
        yield


@pytest.fixture(scope="module")
def teacher_dir(mock_cifar, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("cifar_teacher"))
    config = load_runlocal("cifar100/vanilla/resnet32x4.py", data_dir=workdir + "/tfds")
    config.max_steps = 1
    loop.run(config, workdir)
    return workdir


@pytest.mark.parametrize(
    "rel",
    [
        # One baseline config through the whole trainer path (mock CIFAR-100, teacher loading, the DKD
        # objective with its warm-up); SLD itself runs end to end in tests/train on digits.
        "cifar100/dkd/resnet56_resnet20.py",
        # The feature-based methods: the step hands the pooled features of student and teacher to RKD
        # (one view), and to RKD + SLD (two views, γ = 0 so the student-swap variant runs too).
        "cifar100/rkd/resnet32x4_resnet8x4.py",
        "cifar100/rkd_sld/resnet32x4_resnet8x4.py",
    ],
)
def test_method_config_runs_two_steps(rel, teacher_dir, mock_cifar, tmp_path):
    config = load_runlocal(rel, teacher_dir=teacher_dir, data_dir=str(tmp_path / "tfds"))
    if config.method.endswith("+sld"):
        config.loss.gamma = 0  # epoch 1 > γ: the student-swap variant compiles and runs too
    result = loop.run(config, str(tmp_path / "run"))
    assert int(result["state"].step[0]) == 2
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(jax.device_get(result["state"].params)))
