"""What each entry point imports: the loss library needs only jax, numpy and chex; the trainer
never imports TensorFlow or torch until a dataset is actually read through TFDS."""

import os
import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "torch", "flax", "optax", "orbax", "tensorflow_datasets", "tensorboardX")


def _imported(code: str, names) -> list[str]:
    """Runs ``code`` in a fresh interpreter; returns which of ``names`` it imported."""
    probe = f"{code}\nimport sys\nprint(','.join(n for n in {tuple(names)!r} if n in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return [n for n in out.stdout.strip().split(",") if n]


def test_loss_library_imports_nothing_heavy():
    assert _imported("from sld_jax import losses; losses.sld_loss", HEAVY) == []


@pytest.mark.parametrize(
    "module", ["sld_jax.cli", "sld_jax.train.loop", "sld_jax.train.suite", "sld_jax.bench.step"]
)
def test_trainer_modules_import_neither_tensorflow_nor_torch(module):
    assert _imported(f"import {module}", ("tensorflow", "torch", "tensorboardX")) == []
