"""Sphinx extension: the build fails when a public name has no entry in the API pages.

Public names: every name of ``sld_jax.losses.__all__`` and ``sld_jax.models.__all__`` (documented
under those modules), and every public function and class defined in a module of
``sld_jax.train`` (documented under its module). Checked when the build finishes, from the Python
objects Sphinx recorded; each missing name is a warning, an error under ``sphinx-build -W``.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from sphinx.util import logging

log = logging.getLogger(__name__)


def required_names() -> set[str]:
    """The fully qualified names the API pages must document."""
    names = set()
    for package in ("sld_jax.losses", "sld_jax.models"):
        module = importlib.import_module(package)
        names |= {f"{package}.{name}" for name in module.__all__}
    train = importlib.import_module("sld_jax.train")
    for info in pkgutil.iter_modules(train.__path__):
        name = f"sld_jax.train.{info.name}"
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if attr.startswith("_") or not (inspect.isfunction(value) or inspect.isclass(value)):
                continue
            if getattr(value, "__module__", None) == name:
                names.add(f"{name}.{attr}")
    return names


def check(app, exception) -> None:
    if exception is not None:
        return
    documented = set(app.env.get_domain("py").objects)
    missing = sorted(required_names() - documented)
    for name in missing:
        log.warning("no API entry for the public name %s (add it to docs/api/)", name)
    if not missing:
        log.info(
            "coverage check: every public name of sld_jax.losses, sld_jax.models and sld_jax.train is documented"
        )


def setup(app):
    app.connect("build-finished", check)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
