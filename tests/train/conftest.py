"""Fixtures shared by the trainer test modules: the tiny digits run (trained once per session) and
the clean-up after orbax's readers of corrupt checkpoints."""

import gc
import importlib.util
import os

import pytest

from sld_jax.train import loop

TINY_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_tiny_config.py")


def load_tiny_config_module():
    """``tests/train/train_tiny_config.py`` as a module (it is also a ``--config`` file)."""
    spec = importlib.util.spec_from_file_location("train_tiny_config", TINY_CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_config_module():
    """``tests/train/train_tiny_config.py`` as a module (``get_config``, ``STEPS_PER_EPOCH``)."""
    return load_tiny_config_module()


@pytest.fixture(scope="session")
def tiny_run(digits_data_dir, tmp_path_factory):
    """The uninterrupted 4-epoch vanilla run of ``train_tiny_config.py`` (read-only for users).

    Returns ``loop.run``'s result with ``workdir``. Tests that change a workdir copy it first.
    """
    config = load_tiny_config_module().get_config("4")
    config.dataset.data_dir = digits_data_dir
    workdir = str(tmp_path_factory.mktemp("tiny_run") / "run")
    return {**loop.run(config, workdir), "workdir": workdir}


@pytest.fixture
def collect_orbax_leftovers():
    """Collects, after the test, what orbax's readers of a corrupt checkpoint leave behind.

    They leave failed coroutines (and callbacks into a closed event loop); collecting them here,
    once the test's own references are gone, reports that noise in this test (where a module-level
    ``filterwarnings`` ignores it) rather than in whichever test runs next.
    """
    yield
    gc.collect()
