"""The persistent XLA compilation cache of ``sld-train`` and ``sld-eval``: where it is, what it keeps,
and how it is turned off.

A rerun, a resume, or the next run of a suite with the same programs loads them from the cache
instead of compiling them again (the demo: 5.0 min with an empty cache, 3.1 min with a warm one, on
the 2-core EPYC; docs/performance.md). JAX still traces each program in every new process: the cache
key is the lowered program.

Environment (JAX's own variables, read here before JAX compiles anything):

* ``JAX_ENABLE_COMPILATION_CACHE=false``: no cache; nothing is configured.
* ``JAX_COMPILATION_CACHE_DIR``: the directory; default ``~/.cache/sld_jax/xla``.
* ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS``: programs compiling faster than this are not kept;
  default 0 here (every program: loading one is faster than compiling it, however small).

A directory that cannot be created or written gives one warning, and the process runs without the
cache (JAX alone would warn at every program and go on).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from sld_jax import atomic

log = logging.getLogger(__name__)

DEFAULT_DIR = os.path.join("~", ".cache", "sld_jax", "xla")
_FALSE = ("0", "false", "no", "off")


def configure(environ: Mapping[str, str] | None = None) -> str | None:
    """Turns on JAX's persistent compilation cache for this process, as described in the module
    docstring. Call it before the first compile.

    Args:
      environ: the environment to read (default ``os.environ``).

    Returns:
      The cache directory, or None when the cache is off (turned off, or not writable).
    """
    import jax

    environ = os.environ if environ is None else environ
    if environ.get("JAX_ENABLE_COMPILATION_CACHE", "").strip().lower() in _FALSE:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    path = os.path.expanduser(environ.get("JAX_COMPILATION_CACHE_DIR") or DEFAULT_DIR)
    error = atomic.write_probe_error(path)
    if error is not None:
        log.warning(
            "the compilation cache directory %s is not writable (%s: %s); running without the cache. "
            "Set JAX_COMPILATION_CACHE_DIR to a writable directory, or JAX_ENABLE_COMPILATION_CACHE=false.",
            path,
            type(error).__name__,
            error.strerror or error,
        )
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", path)
    if not environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return path
