"""sld-train's persistent compilation cache: its directory, its threshold, and the ways it is off."""

import logging
import os

import jax
import pytest

from sld_jax import compile_cache


@pytest.fixture
def jax_cache_config():
    """Restores JAX's cache settings that ``configure`` changes."""
    names = (
        "jax_enable_compilation_cache",
        "jax_compilation_cache_dir",
        "jax_persistent_cache_min_compile_time_secs",
    )
    saved = {name: getattr(jax.config, name) for name in names}
    yield
    for name, value in saved.items():
        jax.config.update(name, value)


def test_the_cache_keeps_every_program_in_the_named_directory(tmp_path, jax_cache_config):
    path = str(tmp_path / "cache")
    assert compile_cache.configure({"JAX_COMPILATION_CACHE_DIR": path}) == path
    assert os.path.isdir(path)
    assert jax.config.jax_compilation_cache_dir == path
    assert jax.config.jax_enable_compilation_cache
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0


def test_a_threshold_of_the_users_own_is_kept(tmp_path, jax_cache_config):
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 2.5)
    env = {"JAX_COMPILATION_CACHE_DIR": str(tmp_path), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "2.5"}
    compile_cache.configure(env)
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 2.5


def test_the_default_directory_is_under_home(tmp_path, monkeypatch, jax_cache_config):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert compile_cache.configure({}) == str(tmp_path / ".cache" / "sld_jax" / "xla")


@pytest.mark.parametrize("value", ["false", "0", "OFF"])
def test_the_cache_can_be_turned_off(value, tmp_path, jax_cache_config):
    env = {"JAX_ENABLE_COMPILATION_CACHE": value, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "c")}
    assert compile_cache.configure(env) is None
    assert not jax.config.jax_enable_compilation_cache
    assert not (tmp_path / "c").exists()


def test_an_unwritable_directory_warns_once_and_the_run_goes_on_without_the_cache(
    tmp_path, caplog, jax_cache_config
):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    bad = str(blocker / "cache")  # under a regular file: cannot be created, even by root
    with caplog.at_level(logging.WARNING, logger="sld_jax.compile_cache"):
        assert compile_cache.configure({"JAX_COMPILATION_CACHE_DIR": bad}) is None
    warnings = [r.getMessage() for r in caplog.records if r.name == "sld_jax.compile_cache"]
    assert len(warnings) == 1 and bad in warnings[0] and "without the cache" in warnings[0]
    assert not jax.config.jax_enable_compilation_cache
    assert float(jax.jit(lambda x: x + 1)(1.0)) == 2.0  # programs still compile and run
