"""The model zoo: a plain name -> constructor dict and :func:`get_model`.

Every model is a ``flax.linen`` module called as
``logits, features = model.apply(variables, x, train=..., mask=None, mutable=[...])`` with ``x``
``[B, H, W, 3]`` (NHWC, normalised), ``logits`` ``[B, num_classes]`` float32 and ``features`` a dict
holding ``"pooled"`` (the pre-logit embedding ``[B, D]``) and ``"stage{i}"`` / ``"stage{i}_preact"``
(each stage's output after / before its final ReLU; ``stage0`` is the stem). Variables are
``{"params", "batch_stats"}``; parameters are float32 whatever the compute ``dtype``.

Submodules are named after the reference PyTorch attribute paths, with an integer component joined
onto the previous one by ``_`` (torch ``layer1.0.conv1.weight`` -> flax ``layer1_0/conv1/kernel``),
so reference checkpoints map mechanically (:mod:`sld_jax.models.torch_import`).

``MODEL_INFO[name]`` records the native input ``resolution``, the trainable ``params`` at the
reference class count (100 for CIFAR, 1000 for ImageNet) and the forward multiply-adds ``macs`` per
image at that resolution (convolutions and linear layers).

>>> model = get_model("resnet8x4", num_classes=100)
>>> model.num_classes, MODEL_INFO["resnet8x4"]["params"]
(100, 1233540)
>>> get_model("resnet8X4", num_classes=10)
Traceback (most recent call last):
...
ValueError: unknown model 'resnet8X4'; did you mean 'resnet8x4'? ...
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from sld_jax.memo import shared
from sld_jax.models.cifar import CIFAR_MODEL_INFO, CIFAR_MODELS
from sld_jax.models.imagenet import IMAGENET_MODEL_INFO, IMAGENET_MODELS
from sld_jax.models.layers import Linear

__all__ = [
    "MODELS",
    "MODEL_INFO",
    "ModelSummary",
    "check_name",
    "get_model",
    "init_variables",
    "variables_mismatch",
    "count_params",
    "count_macs",
    "summarize",
]


# name -> constructor called as ctor(num_classes=..., dtype=..., axis_name=...)
MODELS: dict[str, Callable[..., nn.Module]] = {**CIFAR_MODELS, **IMAGENET_MODELS}
# name -> {"resolution": int, "params": int (at 100 / 1000 classes), "macs": multiply-adds per image}
MODEL_INFO: dict[str, dict[str, Any]] = {**CIFAR_MODEL_INFO, **IMAGENET_MODEL_INFO}


def check_name(name: str) -> None:
    """Raises unless ``name`` is a key of :data:`MODELS`, naming the closest valid ones.

    >>> check_name("wrn_40_2")
    """
    if name not in MODELS:
        close = difflib.get_close_matches(name, list(MODELS), n=3, cutoff=0.0)
        lowered = [k for k in MODELS if k.lower() == name.lower()]
        suggestion = (lowered + [c for c in close if c not in lowered])[:3]
        raise ValueError(
            f"unknown model {name!r}; did you mean {suggestion[0]!r}? "
            f"(close: {', '.join(suggestion)}; all names: sld_jax.models.MODELS)"
        )


def get_model(
    name: str, *, num_classes: int, dtype: Any = jnp.float32, axis_name: str | None = None
) -> nn.Module:
    """Build the zoo model ``name``.

    Args:
      name: a key of :data:`MODELS`, e.g. ``"resnet32x4"``, ``"wrn_40_2"``, ``"imagenet_resnet50"``.
      num_classes: classifier outputs (positive int).
      dtype: compute dtype (``jnp.float32`` or ``jnp.bfloat16``); parameters stay float32 and the
        logits are float32.
      axis_name: mapped axis name for cross-replica BatchNorm statistics (inside ``jax.shard_map``), or
        None for per-device statistics.

    Returns:
      The unbound ``nn.Module``; call ``init``/``apply`` with ``x`` ``[B, H, W, 3]`` and ``train=``.

    Raises:
      ValueError: for an unknown name (naming the closest valid ones) or a non-positive ``num_classes``.
    """
    check_name(name)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}.")
    return MODELS[name](num_classes=num_classes, dtype=dtype, axis_name=axis_name)


def init_variables(model: nn.Module, rng: jax.Array, *, image_size: int) -> dict[str, Any]:
    """``model.init`` on a ``[1, image_size, image_size, 3]`` input (compiled once per model, input
    size and key type in a process, so K seeds or several runs of one model share it).

    Initialisation runs once per seed, but its graph (a threefry draw and an ``erf_inv`` per
    tensor) takes XLA's CPU backend longer to optimise than the whole train step; it is compiled
    with the backend optimisation level 0, which cuts that compile about tenfold. The values are
    a deterministic function of ``rng`` (they may differ in the last bits from an optimised
    build of the same graph).

    Args:
      model: a zoo model.
      rng: a PRNG key.
      image_size: the input's side in pixels.

    Returns:
      ``{"params": ..., "batch_stats": ...}`` float32 variables.

    >>> v = init_variables(get_model("resnet_tiny", num_classes=10), jax.random.PRNGKey(0), image_size=16)
    >>> sorted(v)
    ['batch_stats', 'params']
    """
    if not isinstance(rng, jax.Array):
        rng = jnp.asarray(rng)
    compiled = _shared_init(model, image_size, rng.shape, rng.dtype)
    return dict(compiled(rng, jnp.zeros((1, image_size, image_size, 3), jnp.float32)))


def _compile_init(model: nn.Module, image_size: int, key_shape: tuple, key_dtype) -> Any:
    """The compiled ``model.init`` of :func:`init_variables` for one model, input size and key type."""
    dummy = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    key = jax.ShapeDtypeStruct(key_shape, key_dtype)
    lowered = jax.jit(lambda k, x: model.init(k, x, train=False)).lower(key, dummy)
    return lowered.compile(compiler_options={"xla_backend_optimization_level": 0})


# Built once per process and argument (a run of K seeds, or several runs of one model, compile it once).
_shared_init = shared(_compile_init)


def _shapes(tree) -> dict[str, tuple]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): tuple(leaf.shape) for path, leaf in flat}


def variables_mismatch(variables: Any, model: nn.Module, *, image_size: int) -> str:
    """How ``variables`` differ from ``model``'s in names and shapes ("" when they fit).

    The one check of a checkpoint or a teacher against an architecture (nothing is computed:
    the expected shapes come from ``jax.eval_shape`` of ``model.init``).

    Args:
      variables: a ``{"params", "batch_stats"}`` tree of arrays (anything with ``.shape``).
      model: the zoo model the variables should fit.
      image_size: the input side used to trace the model.

    Returns:
      ``""`` when names and shapes match, else a short description (missing, unexpected and
      mis-shaped entries, at most five of each).

    >>> m = get_model("resnet_tiny", num_classes=10)
    >>> v = init_variables(m, jax.random.PRNGKey(0), image_size=16)
    >>> variables_mismatch(v, m, image_size=16), variables_mismatch(v, get_model("resnet_tiny", num_classes=3), image_size=16)[:13]
    ('', 'wrong shape [')
    """
    expected = jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, image_size, image_size, 3)), train=False)
    )
    got, want = _shapes(variables), _shapes(dict(expected))
    if got == want:
        return ""
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    wrong = sorted(k for k in set(got) & set(want) if got[k] != want[k])
    return "; ".join(
        part
        for part in (
            f"missing {missing[:5]}" if missing else "",
            f"unexpected {extra[:5]}" if extra else "",
            "wrong shape " + ", ".join(f"{k}: {got[k]} vs {want[k]}" for k in wrong[:5]) if wrong else "",
        )
        if part
    )


def count_params(params: Any) -> int:
    """Number of scalars in a parameter pytree (``variables["params"]`` or its ``jax.eval_shape``).

    >>> count_params({"a": jnp.zeros((2, 3)), "b": {"c": jnp.zeros(4)}})
    10
    """
    return int(sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params)))


class ModelSummary(NamedTuple):
    """What :func:`summarize` reports about a model (abstract values: nothing is computed)."""

    logits: jax.ShapeDtypeStruct  # [B, num_classes] float32
    features: dict[str, jax.ShapeDtypeStruct]  # "pooled", "stage{i}", "stage{i}_preact"
    variables: dict[str, Any]  # {"params", "batch_stats"} trees of ShapeDtypeStruct
    params: int  # trainable scalars (the "params" collection)
    macs: int  # forward multiply-adds per image of the convolutions and linear layers


def summarize(model: nn.Module, input_shape: tuple[int, int, int, int] = (1, 32, 32, 3)) -> ModelSummary:
    """Shapes, dtypes, parameter count and multiply-adds of ``model`` at ``input_shape``, without computing.

    Traces ``model.init_with_output`` abstractly (``jax.eval_shape``: nothing is allocated), once per
    model and input shape in a process (a deep model takes a few tenths of a second; the summary
    is shared, so read it only). Multiply-adds
    count, for each convolution, ``H_out * W_out * kh * kw * C_in / groups * C_out`` and, for each linear
    layer, ``in * out`` (the usual convention; BatchNorm, pooling and element-wise work are not counted).

    Args:
      model: a zoo model (any module called as ``(x, train=...)`` returning ``(logits, features)``).
      input_shape: ``[B, H, W, 3]`` of the traced float32 input; ``macs`` is per image (divided by ``B``).

    Returns:
      A :class:`ModelSummary`.

    >>> s = summarize(get_model("resnet8", num_classes=10))
    >>> s.params, s.macs, s.logits.shape, s.features["pooled"].shape
    (78042, 12501632, (1, 10), (1, 64))
    """
    return _shared_summary(model, tuple(input_shape))


def _summarize(model: nn.Module, input_shape: tuple[int, int, int, int]) -> ModelSummary:
    total = [0]

    def count(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        module = context.module
        if context.method_name == "__call__" and isinstance(module, (nn.Conv, nn.Dense, Linear)):
            kernel = module.variables["params"]["kernel"].shape
            total[0] += math.prod(out.shape[:-1]) * math.prod(kernel)
        return out

    def init(x):
        with nn.intercept_methods(count):
            return model.init_with_output(jax.random.key(0), x, train=False)

    (logits, features), variables = jax.eval_shape(init, jax.ShapeDtypeStruct(input_shape, jnp.float32))
    variables = {"params": variables.get("params", {}), "batch_stats": variables.get("batch_stats", {})}
    params = count_params(variables["params"])
    return ModelSummary(logits, dict(features), variables, params, total[0] // input_shape[0])


_shared_summary = shared(_summarize, maxsize=64)


def count_macs(model: nn.Module, input_shape: tuple[int, int, int, int] = (1, 32, 32, 3)) -> int:
    """Forward multiply-adds per image of the convolutions and linear layers (see :func:`summarize`)."""
    return summarize(model, input_shape).macs
