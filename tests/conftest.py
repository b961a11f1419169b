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


# The suite's XLA settings, appended to the user's own XLA_FLAGS (never replacing them); this must
# happen before any `import jax` (STYLE.md #14). 8 simulated CPU devices for the sharding tests
# (a device count of the user's is replaced: the tests need 8). Unless SLD_JAX_TEST_FULL_OPT=1 or the
# user chose these settings themselves: XLA's CPU backend at optimisation level 0, without its
# expensive LLVM passes, and with the legacy fusion emitters. The programs (HLO) are the ones users
# run and every tolerance is unchanged; only the machine code differs, and compiles in a third of
# the time (the suite's CPU time: -13 % for the first two settings, -16 % more for the emitters).
# No test may depend on them: every equality between two differently compiled programs holds to a
# tolerance (the `cross_program` tests, which .ci/run repeats with XLA's defaults), and bit-identity
# is claimed only for the same program on the same inputs (a resume). The xdist workers and
# subprocesses inherit the flags.
DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
TEST_DEVICE_COUNT = 8
FAST_COMPILE_FLAGS = (
    "--xla_backend_optimization_level=0",
    "--xla_llvm_disable_expensive_passes=true",
)


def _flag_name(flag: str) -> str:
    return flag.split("=", 1)[0]


def suite_xla_flags(user_flags: str, *, full_opt: bool, accepts=lambda flag: False) -> str:
    """The suite's ``XLA_FLAGS``: ``user_flags`` kept in order, less a device count of their own,
    plus the simulated device count and (unless ``full_opt``) the fast-compile settings that the
    user did not set themselves. Idempotent: the xdist workers apply it to the flags they inherit.

    ``accepts(flag)`` says whether this jaxlib knows the optional legacy-emitters flag; it is asked
    only when the flags do not name it yet.

    >>> suite_xla_flags("", full_opt=True)
    '--xla_force_host_platform_device_count=8'
    >>> suite_xla_flags("--xla_cpu_enable_fast_math=false --xla_force_host_platform_device_count=2",
    ...                 full_opt=False).split()  # doctest: +NORMALIZE_WHITESPACE
    ['--xla_cpu_enable_fast_math=false', '--xla_force_host_platform_device_count=8',
     '--xla_backend_optimization_level=0', '--xla_llvm_disable_expensive_passes=true']
    """
    kept = [f for f in user_flags.split() if _flag_name(f) != DEVICE_COUNT_FLAG]
    flags = kept + [f"{DEVICE_COUNT_FLAG}={TEST_DEVICE_COUNT}"]
    if not full_opt:
        present = {_flag_name(f) for f in kept}
        wanted = [f for f in FAST_COMPILE_FLAGS if _flag_name(f) not in present]
        if _flag_name(LEGACY_EMITTERS) not in present and accepts(LEGACY_EMITTERS):
            wanted.append(LEGACY_EMITTERS)
        flags += wanted
    return " ".join(flags)


# The main process decides (asking a child process about the optional flag); its xdist workers
# inherit the result, which the same call leaves unchanged.
os.environ["XLA_FLAGS"] = suite_xla_flags(
    os.environ.get("XLA_FLAGS", ""),
    full_opt=os.environ.get("SLD_JAX_TEST_FULL_OPT", "") not in ("", "0"),
    accepts=(lambda flag: False) if os.environ.get("PYTEST_XDIST_WORKER") else _xla_accepts,
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Reuse compiled executables across the many small runs of the suite (2-core CI budget), every
# one of them: most of the suite's programs compile in well under a second each, and loading is
# faster than compiling (measured: 3:58 against 4:17-4:36 with a 0.5 s threshold, warm cache).
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "sld_jax_test_xla_cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

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
    "tests/train/test_train_consistency.py",
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


def relative_divergence(got, want) -> float:
    """The largest difference between two pytrees of arrays of one structure, relative to each
    tensor's scale: ``max over leaves of max|got - want| / max|want|`` (a float64 number).

    The measure of the equality tests between differently compiled programs (K seeds vs one,
    a scan vs one step per call, 2 processes vs 1): 0 for bit-identity, ~1e-15 for float64 rounding,
    and >= 1e-2 for the defects those tests guard against (a seed fed another seed's batches, a
    skipped step), which move whole tensors.
    """
    import jax

    got_leaves, want_leaves = jax.tree.leaves(got), jax.tree.leaves(want)
    assert jax.tree.structure(got) == jax.tree.structure(want) and len(got_leaves) == len(want_leaves)
    worst = 0.0
    for a, b in zip(got_leaves, want_leaves):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        assert a.shape == b.shape, (a.shape, b.shape)
        scale = max(float(np.max(np.abs(b), initial=0.0)), np.finfo(np.float64).tiny)
        worst = max(worst, float(np.max(np.abs(a - b), initial=0.0)) / scale)
    return worst


@pytest.fixture(scope="session")
def divergence():
    """:func:`relative_divergence`, for the test modules (which cannot import conftest)."""
    return relative_divergence


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
