"""Test set-up: simulated CPU devices are configured before JAX is imported."""

import os
import tempfile

# Must happen before any `import jax` (STYLE.md #14): 8 simulated CPU devices for sharding tests.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
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
    """A TFDS data_dir with the embedded digits set prepared once for the whole session."""
    from sld_jax.data import sources

    root = str(tmp_path_factory.mktemp("tfds"))
    sources.load_in_memory("digits", "test", data_dir=root)
    return root


@pytest.fixture(scope="module")
def torch_single_thread():
    """One torch thread for a module's tests (torch's thread pool is ~10x slower on a busy 2-core machine)."""
    torch = pytest.importorskip("torch")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
