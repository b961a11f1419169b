"""Loading the frozen teacher: from a vanilla ``sld-train`` run or an ``sld-import-teacher`` output."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from sld_jax import models
from sld_jax.errors import UserError
from sld_jax.train import integrity, saved_runs
from sld_jax.train import workdir as workdir_lib


class TeacherError(UserError, ValueError):
    """The teacher cannot be used: wrong architecture or classes, or non-finite values."""


class TeacherMismatchError(TeacherError):
    """The teacher checkpoint does not match the configured architecture or class count."""


class TeacherNotFoundError(UserError, FileNotFoundError):
    """``teacher.checkpoint`` names no directory."""


def nonfinite_tensors(variables: Any) -> list[str]:
    """Dotted names of the floating-point arrays of ``variables`` holding NaN or Inf.

    >>> nonfinite_tensors({"params": {"w": np.array([1.0, np.nan])}, "batch_stats": {}})
    ['params.w']
    """
    return [
        name
        for name, leaf in integrity.leaf_names(variables)
        if jnp.issubdtype(np.asarray(leaf).dtype, jnp.inexact) and not np.isfinite(np.asarray(leaf)).all()
    ]


def check_finite_teacher(variables: Any, where: str) -> None:
    """Raises :class:`TeacherError` naming the tensors of ``variables`` that are not finite."""
    bad = nonfinite_tensors(variables)
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise TeacherError(
            f"the teacher in {where} has non-finite (NaN/Inf) values in {', '.join(bad[:5])}{more}; "
            "it cannot teach: re-import it from a good checkpoint or retrain it."
        )


def check_teacher_logits(
    model: Any, variables: Any, batch: dict, *, mean, std, where: str, max_images: int = 8
) -> None:
    """Checks once, before training, that the teacher's logits on real images are finite.

    Runs op by op (outside ``jit``, where XLA may turn NaN into finite values) on the first
    ``max_images`` images of this process's first shard of ``batch``.

    Raises:
      TeacherError: some logits are NaN or Inf.
    """
    from sld_jax.data import augment

    images = np.asarray(batch["image"].addressable_shards[0].data)[:max_images]
    with jax.disable_jit():
        logits, _ = model.apply(jax.device_get(variables), augment.normalize(images, mean, std), train=False)
    logits = np.asarray(logits, np.float32)
    if not np.isfinite(logits).all():
        raise TeacherError(
            f"the teacher in {where} gives non-finite logits on the first test images "
            f"({int((~np.isfinite(logits)).sum())} of {logits.size} values); check its weights and "
            "compute_dtype (float16/bfloat16 may overflow), or re-import it."
        )


def load_teacher(
    teacher_cfg: ml_collections.ConfigDict, *, num_classes: int, dtype: Any, image_size: int
) -> tuple[Any, dict]:
    """Returns ``(teacher_module, variables)`` after checking architecture, classes and shapes.

    ``teacher_cfg.checkpoint`` is either a ``sld-train`` workdir (its ``config.json`` names the
    architecture; the best checkpoint is used) or a directory written by ``sld-import-teacher``.

    Raises:
      TeacherMismatchError: the checkpoint's architecture or class count differs from the config,
        or its variables do not have the shapes of the configured architecture.
      TeacherError: some parameters or statistics are NaN or Inf (named in the message).
      TeacherNotFoundError: the directory does not exist.
    """
    path = os.path.abspath(os.path.expanduser(teacher_cfg.checkpoint))
    arch = teacher_cfg.arch
    if not os.path.isdir(path):
        raise TeacherNotFoundError(
            f"teacher checkpoint directory {path!r} does not exist; train it with a vanilla config "
            f"(sld-train --config configs/.../vanilla/{arch}.py --workdir {teacher_cfg.checkpoint}) "
            "or convert a PyTorch one with sld-import-teacher."
        )
    saved_arch, saved_classes, variables = _read_teacher(path)
    if saved_arch != arch:
        raise TeacherMismatchError(
            f"the teacher in {path} is a {saved_arch!r} but the config says teacher.arch={arch!r}; "
            f"set --config.teacher.arch={saved_arch} or point teacher.checkpoint elsewhere."
        )
    model = models.get_model(arch, num_classes=num_classes, dtype=dtype)
    if saved_classes is not None and saved_classes != num_classes:
        raise TeacherMismatchError(
            f"the teacher in {path} has {saved_classes} classes but the dataset has {num_classes}."
        )
    details = models.variables_mismatch(variables, model, image_size=image_size)
    if details:
        raise TeacherMismatchError(
            f"the teacher in {path} does not fit {arch} with {num_classes} classes ({details}); "
            "was it trained on another dataset?"
        )
    check_finite_teacher(variables, path)
    variables = jax.tree.map(jnp.asarray, variables)
    return model, variables


def _read_teacher(path: str) -> tuple[str | None, int | None, dict]:
    """``(architecture, classes or None, variables)`` saved in ``path``: the best checkpoint of a
    ``sld-train`` workdir (classes None: checked against the model's shapes), or an
    ``sld-import-teacher`` output."""
    saved = workdir_lib.read_config(
        path,
        fix="restore it from the run's record (it names the teacher's architecture) or retrain the teacher.",
    )
    if saved is not None:
        variables, _ = saved_runs.load_run_variables(path, which="best")
        return saved.get("model"), None, variables
    from sld_jax.models import torch_import

    return torch_import.load_teacher_dir(path)


def fingerprint(checkpoint: str) -> str:
    """SHA-256 of the teacher variables that ``checkpoint`` (a teacher directory, as
    ``teacher.checkpoint``) holds now: a student records it, and a suite reuses the student only
    while its teacher's fingerprint is unchanged (a retrained or replaced teacher changes it).
    """
    path = os.path.abspath(os.path.expanduser(checkpoint))
    return variables_fingerprint(_read_teacher(path)[2])


def variables_fingerprint(variables: Any) -> str:
    """SHA-256 over the names, dtypes, shapes and values of a teacher's variables (any pytree of
    arrays; the host copy of device arrays is read)."""
    digest = hashlib.sha256()
    for name, leaf in integrity.leaf_names(variables):
        digest.update(f"{name}:{integrity.array_digest(np.asarray(leaf))};".encode())
    return digest.hexdigest()
