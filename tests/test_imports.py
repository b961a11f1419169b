"""What each entry point imports: the loss library needs only jax and numpy; the trainer
never imports TensorFlow or torch until a dataset is actually read through TFDS.

One fresh interpreter imports the loss library, then each trainer entry point in turn, and records
the heavy modules loaded after each import. Imports only add to ``sys.modules``, so a module whose
record (everything imported so far) is free of a library does not import it on its own either.
"""

import json
import os
import subprocess
import sys

import pytest

HEAVY = (
    "tensorflow",
    "torch",
    "flax",
    "optax",
    "orbax",
    "tensorflow_datasets",
    "tensorboardX",
    "chex",
    "scipy",
)
TRAINER_MODULES = ("sld_jax.cli", "sld_jax.train.loop", "sld_jax.train.suite", "sld_jax.bench.step")


@pytest.fixture(scope="module")
def heavy_after():
    """``{stage: heavy modules loaded so far}`` for the stages ``"losses"``, then each trainer module."""
    stages = [("losses", "from sld_jax import losses; losses.sld_loss")]
    stages += [(module, f"import {module}") for module in TRAINER_MODULES]
    probe = "import json, sys\nseen = {}\n"
    for stage, code in stages:
        probe += f"{code}\nseen[{stage!r}] = [n for n in {HEAVY!r} if n in sys.modules]\n"
    probe += "print(json.dumps(seen))"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_loss_library_imports_nothing_heavy(heavy_after):
    assert heavy_after["losses"] == []


@pytest.mark.parametrize("module", TRAINER_MODULES)
def test_trainer_modules_import_neither_tensorflow_nor_torch(module, heavy_after):
    loaded = set(heavy_after[module]) & {"tensorflow", "torch", "tensorboardX"}
    assert not loaded, f"importing {module} (after the modules before it) loads {sorted(loaded)}"
