"""Test set-up: simulated CPU devices and XLA's compile settings, configured before JAX is imported."""

import os
import subprocess
import sys
import tempfile

# XLA's legacy CPU fusion emitters compile in about half the time of the default ones.
LEGACY_EMITTERS = "--xla_cpu_use_fusion_emitters=false"


def _xla_accepts(flag: str) -> bool:
    """Whether this jaxlib's XLA knows ``flag`` (tried in a child: an unknown flag aborts a process)."""
    env = dict(os.environ, XLA_FLAGS=flag, JAX_PLATFORMS="cpu")
    code = "import jax; jax.devices()"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True).returncode == 0


# Must happen before any `import jax` (STYLE.md #14): 8 simulated CPU devices for sharding tests,
# and XLA's CPU backend at optimisation level 0, without its expensive LLVM passes and with the
# legacy fusion emitters. The programs (HLO) are the ones users run and every tolerance is
# unchanged; only the machine code differs, and compiles in a third of the time (the suite's CPU
# time: -13 % for the first two settings, -16 % more for the emitters). The one test whose property
# depends on the emitters' fusion choices, K = 1 bit-identity in tests/train/test_train_seeds.py,
# compiles with the default emitters. SLD_JAX_TEST_FULL_OPT=1 compiles with XLA's defaults
# (slower; a release check). The xdist workers inherit the main process's XLA_FLAGS.
if "XLA_FLAGS" not in os.environ:
    _XLA_FLAGS = ["--xla_force_host_platform_device_count=8"]
    if os.environ.get("SLD_JAX_TEST_FULL_OPT", "") in ("", "0"):
        _XLA_FLAGS += ["--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true"]
        if _xla_accepts(LEGACY_EMITTERS):
            _XLA_FLAGS.append(LEGACY_EMITTERS)
    os.environ["XLA_FLAGS"] = " ".join(_XLA_FLAGS)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Reuse compiled executables across the many small runs of the suite (2-core CI budget).
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "sld_jax_test_xla_cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

GOLDEN = os.path.join(os.path.dirname(__file__), "losses", "golden", "sld_official.npz")


# The longest test files (about 20-60 s each on the 2-core machine), longest first: xdist's workers
# start on them and then pull the short files as they free up, so both finish at about the same
# time (xdist's own order, by number of tests, left a one-test 20 s file to run last).
SLOW_FILES_FIRST = (
    "tests/models/test_models_train_step.py",
    "tests/train/test_train_seeds.py",
    "tests/train/test_train_faults.py",
    "tests/models/test_models_grad_float64.py",
    "tests/train/test_train_resilience.py",
    "tests/train/test_train_loop.py",
    "tests/models/test_models_torch_import.py",
    "tests/losses/test_losses_fused_linear.py",
    "tests/configs/test_configs_smoke.py",
    "tests/train/test_train_multiprocess.py",
)


def pytest_collection_modifyitems(config, items):
    """Orders the test files: :data:`SLOW_FILES_FIRST`, then by number of tests (xdist's order; the
    ``--no-loadscope-reorder`` in pyproject.toml keeps this one). A file's tests keep their order."""
    rank = {path: i for i, path in enumerate(SLOW_FILES_FIRST)}
    files = [item.nodeid.split("::")[0] for item in items]
    count = {f: files.count(f) for f in set(files)}
    order = sorted(set(files), key=lambda f: (rank.get(f, len(rank)), -count[f], files.index(f)))
    position = {f: i for i, f in enumerate(order)}
    keyed = sorted(zip(items, files), key=lambda pair: position[pair[1]])
    items[:] = [item for item, _ in keyed]


@pytest.fixture
def rng():
    """A seeded numpy Generator; every test that needs randomness uses this."""
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def golden():
    """The reference implementation's golden vectors (see tests/losses/golden/README.md)."""
    return dict(np.load(GOLDEN))


@pytest.fixture(scope="session")
def digits_data_dir(tmp_path_factory):
    """A TFDS data_dir with the embedded digits set, prepared once for the whole session (read-only).

    Under pytest-xdist the workers share it: the first prepares it under a file lock, the others
    then find it and the numpy cache of both splits (so they need not import TensorFlow for it).
    """
    import fcntl

    from sld_jax.data import sources

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # this session's folder, shared by its workers
    root = base / "tfds_digits"
    with open(base / "tfds_digits.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for split in ("train", "test"):
            sources.load_in_memory("digits", split, data_dir=str(root))
    return str(root)


@pytest.fixture(scope="module")
def torch_single_thread():
    """One torch thread for a module's tests (torch's thread pool is ~10x slower on a busy 2-core machine)."""
    torch = pytest.importorskip("torch")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.hookimpl(tryfirst=True)
def pytest_unconfigure(config):
    """Moves every object to the permanent generation before the session's last garbage
    collections: a worker that has run the trainer holds millions of objects, and walking them at
    exit cost seconds per process. (Unraisable exceptions of each test are still reported.)"""
    import gc

    gc.freeze()
