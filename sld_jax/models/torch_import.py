"""Import reference PyTorch checkpoints (KD-literature CIFAR teachers, torchvision ImageNet) as flax variables.

Two file formats are read:

* the CIFAR-100 teacher files of the KD literature (e.g. ``resnet32x4_vanilla/ckpt_epoch_240.pth``):
  a dict whose key ``"model"`` holds the ``state_dict`` (other keys such as ``"optimizer"`` or
  ``"epoch"`` are ignored);
* a plain ``state_dict`` (torchvision's ImageNet weights, e.g. ``resnet50-0676ba61.pth``).

Files are always read with ``torch.load(path, map_location="cpu", weights_only=True)``: a file that
holds pickled objects other than tensors and plain containers is refused, never unpickled.

Keys map mechanically (the model contract): a torch key ``a.b.0.c.weight`` names the flax module path
``a/b_0/c`` (an integer component is joined onto the previous one with ``_``); ``weight`` becomes
``kernel`` (conv ``[O, I/g, kh, kw]`` -> ``[kh, kw, I/g, O]``, linear ``[O, I]`` -> ``[I, O]``) or, for
a BatchNorm, ``scale``; ``bias`` stays ``bias``; ``running_mean``/``running_var`` become batch_stats
``mean``/``var``; ``num_batches_tracked`` is ignored. A ``module.`` prefix on every key (a model saved
inside ``DataParallel``) is dropped. Every missing, unexpected or mis-shaped key is reported together
in one :class:`CheckpointMismatchError`.

torch is needed only here (``pip install torch``; the CPU build is enough); nothing else in sld_jax
imports it.

Command line (``sld-import-teacher``)::

    sld-import-teacher --arch resnet32x4 --checkpoint resnet32x4_vanilla/ckpt_epoch_240.pth --out teachers/resnet32x4
    sld-import-teacher --arch imagenet_resnet34 --checkpoint resnet34-b627a593.pth --out teachers/r34

The output directory holds ``teacher.json`` (arch, num_classes, source) and ``variables/`` (an orbax
checkpoint of ``{"params", "batch_stats"}``); :func:`load_teacher_dir` reads it back.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pickle
import re
import sys
from collections.abc import Mapping
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from sld_jax import atomic
from sld_jax.errors import UserError

__all__ = [
    "CheckpointMismatchError",
    "TEACHER_METADATA_FILE",
    "TEACHER_VARIABLES_DIR",
    "convert_state_dict",
    "TeacherFileError",
    "TeacherFileNotFoundError",
    "TeacherImportError",
    "TorchNotInstalledError",
    "default_num_classes",
    "import_teacher",
    "load_teacher_dir",
    "load_torch_checkpoint",
    "main",
    "read_state_dict",
    "save_teacher_dir",
]

TEACHER_METADATA_FILE = "teacher.json"
TEACHER_VARIABLES_DIR = "variables"
_FORMAT = "sld_jax.teacher.v1"
# Spatial size of the dummy input used to derive parameter shapes (they do not depend on it).
_SHAPE_PROBE = 32


class CheckpointMismatchError(ValueError):
    """A state_dict does not fit the architecture; lists every missing, unexpected and mis-shaped key.

    Attributes:
      missing: torch-style names the architecture needs that the checkpoint lacks.
      unexpected: checkpoint keys the architecture has no place for.
      mismatched: ``(key, checkpoint shape, expected shape)`` in PyTorch layout.
    """

    def __init__(self, arch: str, num_classes: int, missing, unexpected, mismatched):
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)
        lines = [f"  missing key: {k}" for k in self.missing]
        lines += [f"  unexpected key: {k}" for k in self.unexpected]
        lines += [
            f"  wrong shape: {k} is {tuple(got)}, expected {tuple(want)}" for k, got, want in self.mismatched
        ]
        hint = (
            "; check --arch (and --num-classes if only the classifier differs)"
            if self.mismatched
            else "; check that --arch names the architecture the checkpoint was trained with"
        )
        super().__init__(
            f"checkpoint does not match {arch!r} with num_classes={num_classes} "
            f"({len(lines)} problem{'s' if len(lines) != 1 else ''}{hint}):\n" + "\n".join(lines)
        )


class TeacherFileError(UserError, ValueError):
    """A teacher file is empty, truncated, not written by ``torch.save``, or holds NaN/Inf."""


class TeacherFileNotFoundError(UserError, FileNotFoundError):
    """The ``--checkpoint`` file does not exist."""


class TorchNotInstalledError(UserError, ImportError):
    """Reading a PyTorch checkpoint needs torch, which is not installed."""


class TeacherImportError(UserError, ValueError):
    """``sld-import-teacher`` could not convert or write a teacher (its message is one line)."""


def _require_torch():
    try:
        import torch
    except ImportError as e:
        raise TorchNotInstalledError(
            "importing PyTorch checkpoints needs torch, which is not installed; run `pip install torch` "
            "(the CPU build is enough) or `pip install sld_jax[torch]`."
        ) from e
    return torch


def default_num_classes(arch: str) -> int:
    """The reference class count of ``arch``: 1000 for ImageNet models (``imagenet_*``), else 100.

    >>> default_num_classes("resnet32x4"), default_num_classes("imagenet_resnet50")
    (100, 1000)
    """
    from sld_jax.models import MODEL_INFO

    info = MODEL_INFO.get(arch, {})
    return 1000 if info.get("resolution") == 224 or arch.startswith("imagenet_") else 100


@functools.lru_cache(maxsize=32)
def _expected_variables(arch: str, num_classes: int) -> dict[str, Any]:
    """Abstract ``{"params", "batch_stats"}`` (ShapeDtypeStructs) of the registry model ``arch``.

    Traced once per ``(arch, num_classes)`` in a process (a few tenths of a second for the larger
    models; every conversion and teacher load needs it). The result is shared: read it only.
    """
    from sld_jax.models import get_model

    model = get_model(arch, num_classes=num_classes)
    x = jax.ShapeDtypeStruct((1, _SHAPE_PROBE, _SHAPE_PROBE, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    return {"params": variables.get("params", {}), "batch_stats": variables.get("batch_stats", {})}


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a reference checkpoint file into a flat ``{torch key: float32 numpy array}``.

    Accepts a dict with a ``"model"`` (or ``"state_dict"``) entry holding the state_dict, or a plain
    state_dict. Loads with ``weights_only=True``: pickled objects are refused, never executed.

    Args:
      path: a ``.pth``/``.pt`` file written by ``torch.save``.

    Returns:
      ``{key: array}``; floating tensors become float32, other tensors keep their dtype.

    Raises:
      TeacherFileNotFoundError: ``path`` does not exist (a ``FileNotFoundError``; checked first, so
        a wrong path is reported as such even without torch).
      TorchNotInstalledError: torch is not installed (an ``ImportError``).
      ValueError: the file holds non-tensor pickled objects, or no state_dict could be found in it.
      TeacherFileError: the file is empty, cut short or not a ``torch.save`` file, or a tensor holds
        NaN/Inf (the message names them).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise TeacherFileNotFoundError(
            f"checkpoint file {path!r} does not exist; pass the path of a .pth file."
        )
    torch = _require_torch()
    not_torch = (
        f"{path!r} is not a PyTorch checkpoint ({{}}); pass the .pth file written by "
        "torch.save, and copy it again if it may have been cut short."
    )
    if os.path.getsize(path) == 0:
        raise TeacherFileError(not_torch.format("the file is empty"))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if not found:  # not a pickle at all (random or foreign bytes)
            raise TeacherFileError(not_torch.format("torch.load cannot parse it")) from e
        raise ValueError(
            f"refusing {path!r}: it contains pickled objects that are not tensors or plain containers "
            f"(e.g. {found.group(1)}), "
            "and sld_jax never unpickles arbitrary objects; re-save only the weights with "
            "torch.save({'model': model.state_dict()}, path) where the file was made."
        ) from e
    except (EOFError, OSError, RuntimeError, KeyError, UnicodeDecodeError) as e:
        # EOFError: cut short at a pickle boundary; OSError/RuntimeError: a damaged zip archive
        # (PytorchStreamReader); KeyError/UnicodeDecodeError: text or other non-pickle bytes.
        detail = (
            "it is cut short"
            if isinstance(e, (EOFError, OSError, RuntimeError))
            else ("it is not a torch.save file")
        )
        raise TeacherFileError(not_torch.format(detail)) from e
    state = obj
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                state = obj[key]
                break
    if not isinstance(state, Mapping) or not state:
        kind = (
            f"a dict with keys {sorted(map(str, obj))[:8]}"
            if isinstance(obj, Mapping)
            else type(obj).__name__
        )
        raise ValueError(
            f"{path!r} holds {kind}, not a state_dict; expected a state_dict or a dict with the state_dict "
            "under 'model' (the KD teacher format)."
        )
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"the state_dict in {path!r} has entries that are not named tensors: {bad[:8]}.")
    keys = list(state)
    prefix = "module."
    strip = all(k.startswith(prefix) for k in keys)
    out = {}
    for k, v in state.items():
        v = v.detach().cpu()
        if v.is_floating_point():
            v = v.to(torch.float32)
        out[k[len(prefix) :] if strip else k] = v.numpy()
    nonfinite = [
        k for k, v in out.items() if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all()
    ]
    if nonfinite:
        raise TeacherFileError(
            f"refusing {path!r}: tensors with NaN/Inf values ({', '.join(nonfinite[:5])}"
            f"{f' and {len(nonfinite) - 5} more' if len(nonfinite) > 5 else ''}); a teacher must be finite, "
            "so export it again from a good training checkpoint."
        )
    return out


def _flax_module_path(torch_module_path: Sequence[str]) -> tuple[str, ...]:
    """``["layer1", "0", "conv1"]`` -> ``("layer1_0", "conv1")`` (integers join the previous name)."""
    parts: list[str] = []
    for comp in torch_module_path:
        if comp.isdigit() and parts:
            parts[-1] = f"{parts[-1]}_{comp}"
        else:
            parts.append(comp)
    return tuple(parts)


def _torch_name(path: tuple[str, ...]) -> str:
    """Best-effort torch key of a flax leaf, for messages: ``layer1_0/bn1/scale`` -> ``layer1.0.bn1.weight``."""
    leaf = {
        "kernel": "weight",
        "scale": "weight",
        "bias": "bias",
        "mean": "running_mean",
        "var": "running_var",
    }
    mods = [re.sub(r"_(\d+)", r".\1", p) for p in path[:-1]]
    return ".".join(mods + [leaf.get(path[-1], path[-1])])


def _to_torch_layout(shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    if len(shape) == 2:
        return (shape[1], shape[0])
    return tuple(shape)


def convert_state_dict(
    state_dict: Mapping[str, Any], arch: str, *, num_classes: int, dtype: Any = np.float32
) -> dict[str, dict[str, Any]]:
    """Map a reference PyTorch state_dict onto the variables of the registry model ``arch``.

    Args:
      state_dict: ``{torch key: tensor or array}`` (torch tensors or numpy arrays, any float dtype).
      arch: a name of :data:`sld_jax.models.MODELS`, e.g. ``"resnet32x4"`` or ``"imagenet_resnet50"``.
      num_classes: classifier outputs of the checkpoint (100 for the CIFAR-100 teachers, 1000 for
        torchvision's ImageNet weights).
      dtype: dtype of the returned arrays: float32, or float64 to verify the models in double
        precision (the arrays stay float64 only with ``jax_enable_x64`` on).

    Returns:
      ``{"params": ..., "batch_stats": ...}`` nested dicts of ``dtype`` ``jax.Array`` with exactly the
      structure and shapes of ``get_model(arch, num_classes=num_classes).init(...)``.

    Raises:
      ValueError: ``arch`` is unknown (naming the closest names).
      CheckpointMismatchError: listing every missing, unexpected and mis-shaped key.

    >>> import numpy as np
    >>> sd = {"fc.weight": np.zeros((3, 4)), "head.weight": np.zeros(3)}
    >>> try:
    ...     convert_state_dict(sd, "imagenet_resnet18", num_classes=3)
    ... except CheckpointMismatchError as e:
    ...     print(len(e.missing) > 0, e.unexpected, e.mismatched[0][0])
    True ['head.weight'] fc.weight
    """
    expected = _expected_variables(arch, num_classes)
    flat_expected = {
        (col,) + path: leaf
        for col in ("params", "batch_stats")
        for path, leaf in traverse_util.flatten_dict(expected[col]).items()
    }
    assigned: dict[tuple[str, ...], np.ndarray] = {}
    bad_shape: set[tuple[str, ...]] = set()
    unexpected, mismatched = [], []
    for key, value in state_dict.items():
        comps = key.split(".")
        kind, mod = comps[-1], _flax_module_path(comps[:-1])
        if kind == "num_batches_tracked":
            continue
        if kind == "weight":
            if ("params",) + mod + ("kernel",) in flat_expected:
                target = ("params",) + mod + ("kernel",)
            else:
                target = ("params",) + mod + ("scale",)
        elif kind == "bias":
            target = ("params",) + mod + ("bias",)
        elif kind == "running_mean":
            target = ("batch_stats",) + mod + ("mean",)
        elif kind == "running_var":
            target = ("batch_stats",) + mod + ("var",)
        else:
            target = None
        if target is None or target not in flat_expected or target in assigned or target in bad_shape:
            unexpected.append(key)
            continue
        arr = np.asarray(value.detach().cpu().double().numpy() if hasattr(value, "detach") else value, dtype)
        want = tuple(flat_expected[target].shape)
        if target[-1] == "kernel" and arr.ndim == 4:
            arr = arr.transpose(2, 3, 1, 0)
        elif target[-1] == "kernel" and arr.ndim == 2:
            arr = arr.T
        if arr.shape != want:
            mismatched.append(
                (key, tuple(np.shape(value)), _to_torch_layout(want) if target[-1] == "kernel" else want)
            )
            bad_shape.add(target)
            continue
        assigned[target] = arr
    missing = [
        f"{_torch_name(k[1:])} (flax {'/'.join(k)}, shape {tuple(v.shape)})"
        for k, v in flat_expected.items()
        if k not in assigned and k not in bad_shape
    ]
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(arch, num_classes, missing, unexpected, mismatched)
    flat = {k: jnp.asarray(v) for k, v in assigned.items()}
    nested = traverse_util.unflatten_dict(flat)
    return {"params": nested.get("params", {}), "batch_stats": nested.get("batch_stats", {})}


def load_torch_checkpoint(
    path: str | os.PathLike, arch: str, *, num_classes: int
) -> dict[str, dict[str, Any]]:
    """Read a reference PyTorch checkpoint file and convert it to flax variables for ``arch``.

    Args:
      path: a ``torch.save`` file: ``{"model": state_dict, ...}`` (KD CIFAR teachers) or a plain
        state_dict (torchvision). Read with ``weights_only=True``.
      arch: registry name, e.g. ``"resnet32x4"``, ``"wrn_40_2"``, ``"imagenet_resnet34"``.
      num_classes: classifier outputs of the checkpoint (see :func:`default_num_classes`).

    Returns:
      ``{"params": ..., "batch_stats": ...}`` of float32 ``jax.Array``; use as
      ``model.apply(variables, x, train=False)``.

    Raises:
      TeacherFileNotFoundError, TorchNotInstalledError, ValueError: see :func:`read_state_dict`.
      CheckpointMismatchError: the keys or shapes do not fit ``arch``.
    """
    from sld_jax.models import get_model

    get_model(arch, num_classes=num_classes)  # unknown names / bad class counts fail before any file I/O
    return convert_state_dict(read_state_dict(path), arch, num_classes=num_classes)


def save_teacher_dir(
    out_dir: str | os.PathLike,
    variables: Mapping[str, Any],
    *,
    arch: str,
    num_classes: int,
    source: str = "",
    overwrite: bool = False,
) -> str:
    """Write teacher variables as an orbax checkpoint plus ``teacher.json`` metadata.

    Layout: ``out_dir/variables/`` (``ocp.StandardCheckpointer`` of ``{"params", "batch_stats"}``) and
    ``out_dir/teacher.json`` (``{"format", "arch", "num_classes", "source", "params"}``).

    Args:
      out_dir: directory to create (its parent need not exist).
      variables: ``{"params", "batch_stats"}`` pytrees of arrays.
      arch: registry name the variables belong to.
      num_classes: classifier outputs.
      source: where the weights came from (recorded only).
      overwrite: replace an existing teacher in ``out_dir`` instead of refusing.

    Returns:
      The absolute path of ``out_dir``.

    Raises:
      FileExistsError: ``out_dir`` already holds a teacher and ``overwrite`` is False.
    """
    import orbax.checkpoint as ocp

    out_dir = os.path.abspath(os.fspath(out_dir))
    var_dir = os.path.join(out_dir, TEACHER_VARIABLES_DIR)
    meta_path = os.path.join(out_dir, TEACHER_METADATA_FILE)
    if not overwrite and (os.path.exists(var_dir) or os.path.exists(meta_path)):
        raise FileExistsError(
            f"{out_dir!r} already holds a teacher; choose another --out or pass --overwrite."
        )
    os.makedirs(out_dir, exist_ok=True)
    tree = {
        "params": jax.tree.map(lambda a: np.asarray(a, np.float32), dict(variables["params"])),
        "batch_stats": jax.tree.map(
            lambda a: np.asarray(a, np.float32), dict(variables.get("batch_stats", {}))
        ),
    }
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(var_dir, tree, force=overwrite)
    meta = {
        "format": _FORMAT,
        "arch": arch,
        "num_classes": int(num_classes),
        "source": source,
        "params": int(sum(np.size(a) for a in jax.tree.leaves(tree["params"]))),
    }
    atomic.write_text(meta_path, json.dumps(meta, indent=2))
    return out_dir


def load_teacher_dir(directory: str | os.PathLike) -> tuple[str, int, dict[str, dict[str, Any]]]:
    """Read a directory written by :func:`save_teacher_dir` (or ``sld-import-teacher``).

    Args:
      directory: the ``--out`` directory of ``sld-import-teacher``.

    Returns:
      ``(arch, num_classes, variables)`` with ``variables = {"params", "batch_stats"}`` as float32
      host (numpy) arrays, checked against the shapes of ``get_model(arch, num_classes=...)``.

    Raises:
      FileNotFoundError: ``directory`` has no ``teacher.json`` / ``variables/``.
      ValueError: the metadata is not a teacher's, or the stored shapes do not fit the architecture.
    """
    import orbax.checkpoint as ocp

    directory = os.path.abspath(os.fspath(directory))
    meta_path = os.path.join(directory, TEACHER_METADATA_FILE)
    var_dir = os.path.join(directory, TEACHER_VARIABLES_DIR)
    if not (os.path.isfile(meta_path) and os.path.isdir(var_dir)):
        raise FileNotFoundError(
            f"{directory!r} is not a teacher directory (needs {TEACHER_METADATA_FILE} and {TEACHER_VARIABLES_DIR}/); "
            "create one with sld-import-teacher."
        )
    with open(meta_path) as f:
        meta = json.load(f)
    if meta.get("format") != _FORMAT or not isinstance(meta.get("arch"), str):
        raise ValueError(
            f"{meta_path!r} is not sld_jax teacher metadata (format {meta.get('format')!r}); "
            "re-run sld-import-teacher."
        )
    arch, num_classes = meta["arch"], int(meta["num_classes"])
    expected = _expected_variables(arch, num_classes)
    target = jax.tree.map(lambda s: np.zeros(s.shape, np.float32), expected)
    with ocp.StandardCheckpointer() as ckptr:
        restored = ckptr.restore(var_dir, target)
    from sld_jax.models import get_model, variables_mismatch

    restored = {"params": restored.get("params", {}), "batch_stats": restored.get("batch_stats", {})}
    bad = variables_mismatch(restored, get_model(arch, num_classes=num_classes), image_size=_SHAPE_PROBE)
    if bad:
        raise ValueError(
            f"the variables in {var_dir!r} do not fit {arch!r} with num_classes={num_classes}: {bad}; "
            "re-run sld-import-teacher."
        )
    variables = jax.tree.map(lambda a: np.asarray(a, np.float32), restored)
    return arch, num_classes, {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sld-import-teacher",
        description="Convert a reference PyTorch teacher checkpoint (KD CIFAR-100 teacher or torchvision ImageNet "
        "state_dict) into an sld_jax teacher directory (orbax checkpoint + teacher.json).",
    )
    p.add_argument(
        "--arch", required=True, help="registry name, e.g. resnet32x4, wrn_40_2, vgg13, imagenet_resnet34"
    )
    p.add_argument(
        "--checkpoint", required=True, help="the .pth file (read with torch.load(weights_only=True))"
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="classifier outputs (default: 100 for CIFAR, 1000 for ImageNet)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing teacher in --out")
    # Handled by sld_jax.cli.one_line_user_errors before parsing; listed here for --help.
    p.add_argument("--verbose", action="store_true", help="show the traceback of a user error too")
    return p


def _one_line(e: BaseException, most: int = 3) -> str:
    """``str(e)`` on one line: a multi-line message (a :class:`CheckpointMismatchError`) keeps its
    first line and its first ``most`` items."""
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()] or [type(e).__name__]
    head, items = lines[0], lines[1:]
    if items:
        more = f"; and {len(items) - most} more" if len(items) > most else ""
        head = f"{head.rstrip(':')}: {'; '.join(items[:most])}{more}"
    return head


def import_teacher(argv: Sequence[str]) -> int:
    """``sld-import-teacher`` without its error handling: converts and writes, or raises.

    Args:
      argv: command-line arguments without the program name.

    Returns:
      0 once ``--out`` is written (a summary line is printed).

    Raises:
      UserError: anything the user can fix (unknown ``--arch``, a missing, corrupt or mismatched
        ``--checkpoint``, torch not installed, an existing or unwritable ``--out``), with a
        one-line message; :func:`main` prints it and exits with status 2.
      SystemExit: bad arguments (argparse, status 2).
    """
    args = _parser().parse_args(argv)
    try:
        num_classes = args.num_classes if args.num_classes is not None else default_num_classes(args.arch)
        variables = load_torch_checkpoint(args.checkpoint, args.arch, num_classes=num_classes)
        out = save_teacher_dir(
            args.out,
            variables,
            arch=args.arch,
            num_classes=num_classes,
            source=os.path.abspath(args.checkpoint),
            overwrite=args.overwrite,
        )
    except UserError:
        raise
    except (ImportError, OSError, ValueError) as e:  # unknown arch, mismatched keys, --out exists
        raise TeacherImportError(_one_line(e)) from e
    n = sum(int(np.size(a)) for a in jax.tree.leaves(variables["params"]))
    print(f"wrote {out} ({args.arch}, num_classes={num_classes}, {n:,} parameters) from {args.checkpoint}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``sld-import-teacher``: convert ``--checkpoint`` for ``--arch`` and write ``--out``.

    The same entry point as :func:`sld_jax.cli.import_teacher_main`: a user error is printed as one
    line on stderr and exits with status 2, like every sld_jax command (``--verbose`` keeps its
    traceback).

    Args:
      argv: command-line arguments without the program name (None: ``sys.argv[1:]``).

    Returns:
      0 on success, 2 on a user error or bad arguments (argparse exits with 2 itself).
    """
    from sld_jax.cli import import_teacher_main

    return import_teacher_main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
