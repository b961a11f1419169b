"""Loading the frozen teacher: from a vanilla ``sld-train`` run or an ``sld-import-teacher`` output."""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from sld_jax import models
from sld_jax.train import checkpoint as ckpt_lib


class TeacherMismatchError(ValueError):
    """The teacher checkpoint does not match the configured architecture or class count."""


def _shapes(tree) -> dict[str, tuple]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): tuple(leaf.shape) for path, leaf in flat}


def load_teacher(teacher_cfg: ml_collections.ConfigDict, *, num_classes: int, dtype: Any,
                 image_size: int) -> tuple[Any, dict]:
    """Returns ``(teacher_module, variables)`` after checking architecture, classes and shapes.

    ``teacher_cfg.checkpoint`` is either a ``sld-train`` workdir (its ``config.json`` names the
    architecture; the best checkpoint is used) or a directory written by ``sld-import-teacher``.

    Raises:
      TeacherMismatchError: the checkpoint's architecture or class count differs from the config,
        or its variables do not have the shapes of the configured architecture.
      FileNotFoundError: the directory does not exist.
    """
    path = os.path.abspath(os.path.expanduser(teacher_cfg.checkpoint))
    arch = teacher_cfg.arch
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"teacher checkpoint directory {path!r} does not exist; train it with a vanilla config "
            f"(sld-train --config configs/.../vanilla/{arch}.py --workdir {teacher_cfg.checkpoint}) "
            "or convert a PyTorch one with sld-import-teacher.")
    run_config = os.path.join(path, "config.json")
    if os.path.exists(run_config):
        with open(run_config) as f:
            saved = json.load(f)
        saved_arch = saved.get("model")
        variables, _ = ckpt_lib.load_run_variables(path, which="best")
        saved_classes = None
    else:
        from sld_jax.models import torch_import

        saved_arch, saved_classes, variables = torch_import.load_teacher_dir(path)
    if saved_arch != arch:
        raise TeacherMismatchError(
            f"the teacher in {path} is a {saved_arch!r} but the config says teacher.arch={arch!r}; "
            f"set --config.teacher.arch={saved_arch} or point teacher.checkpoint elsewhere.")
    model = models.get_model(arch, num_classes=num_classes, dtype=dtype)
    expected = jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, image_size, image_size, 3)),
                           train=False))
    got, want = _shapes(variables), _shapes(dict(expected))
    if saved_classes is not None and saved_classes != num_classes:
        raise TeacherMismatchError(
            f"the teacher in {path} has {saved_classes} classes but the dataset has {num_classes}.")
    if got != want:
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        wrong = sorted(k for k in set(got) & set(want) if got[k] != want[k])
        details = "; ".join(
            part for part in (
                f"missing {missing[:5]}" if missing else "",
                f"unexpected {extra[:5]}" if extra else "",
                "wrong shape " + ", ".join(f"{k}: {got[k]} vs {want[k]}" for k in wrong[:5]) if wrong else "",
            ) if part)
        raise TeacherMismatchError(
            f"the teacher in {path} does not fit {arch} with {num_classes} classes ({details}); "
            "was it trained on another dataset?")
    variables = jax.tree.map(jnp.asarray, variables)
    return model, variables
