"""Teacher-side logit processing: the SLD swap and the alternatives of the paper's ablation.

Every processor is a pure function ``(logits [..., C], labels [...]) -> logits [..., C]`` with its
hyper-parameters keyword-only, so it plugs into the ``teacher_transform=`` slot of
:func:`~sld_jax.losses.sld_loss`, :func:`~sld_jax.losses.sld_objective` and the baselines, either
through ``functools.partial`` or by name with :func:`get_teacher_transform`::

    transform = get_teacher_transform("conditional_swap", alpha=0.3)
    loss = sld_loss(s, t, y, student_swap=False, teacher_transform=transform)

The paper (Limantoro et al. 2025) motivates the swap by comparing it with processors that *add* a
value to the target logit, and states that "the best value addition to the target cannot be
determined". The exact formulas of its ablation are not in the released code, so each docstring
below states the interpretation implemented here. As the swap, every processor by default changes
only the rows the teacher misclassifies (``argmax != label``, first maximal index) and leaves the
others untouched; ``only_misclassified=False`` applies it to every row. Processors keep the input
dtype; the teacher is gradient-stopped by the losses before processing.
"""

from __future__ import annotations

import functools
import inspect
from typing import Callable

import jax
import jax.numpy as jnp

from sld_jax.losses import _checks
from sld_jax.losses.swap import swap_logits


def _prepare(logits: jax.Array, labels: jax.Array, only_misclassified: bool):
    _checks.check_logits("logits", logits)
    _checks.check_labels(labels, logits)
    only_misclassified = _checks.check_static_bool("only_misclassified", only_misclassified)
    labels = labels.astype(jnp.int32)
    is_label = jnp.arange(logits.shape[-1], dtype=jnp.int32) == labels[..., None]
    if only_misclassified:
        rows = (jnp.argmax(logits, axis=-1) != labels)[..., None]
    else:
        rows = jnp.ones(logits.shape[:-1] + (1,), bool)
    return labels, is_label, rows


def identity(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """No processing: returns ``logits`` unchanged (plain KD targets).

    Examples:
      >>> import jax.numpy as jnp
      >>> identity(jnp.array([[1., 2.]]), jnp.array([0]))
      Array([[1., 2.]], dtype=float32)
    """
    _checks.check_logits("logits", logits)
    _checks.check_labels(labels, logits)
    return logits


def scale_target_logit(
    logits: jax.Array, labels: jax.Array, *, factor: float, only_misclassified: bool = True
) -> jax.Array:
    r"""Multiplies the ground-truth logit by ``factor``: :math:`z_y \leftarrow \text{factor}\cdot z_y`.

    The common core of :func:`ground_truth_addition` (``1 + fraction``), :func:`extreme_addition`
    (2) and :func:`target_reduction` (0.5). It acts on the raw logit, as the ablation is described;
    note that for a negative target logit a factor above 1 *lowers* it.

    Args:
      logits: ``[..., C]`` floating.
      labels: ``[...]`` integer labels in ``[0, C)``.
      factor: finite Python float.
      only_misclassified: change only rows whose argmax is not the label (default, as the swap).

    Returns:
      ``[..., C]`` logits of the input dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> scale_target_logit(jnp.array([[3., 1., 2.]]), jnp.array([2]), factor=2.0)
      Array([[3., 1., 4.]], dtype=float32)
    """
    factor = _checks.check_static_number("factor", factor)
    _, is_label, rows = _prepare(logits, labels, only_misclassified)
    return jnp.where(is_label & rows, logits * jnp.asarray(factor, logits.dtype), logits)


def ground_truth_addition(
    logits: jax.Array, labels: jax.Array, *, fraction: float = 0.5, only_misclassified: bool = True
) -> jax.Array:
    r"""Ground-truth addition: adds a fraction of the target logit to itself.

    Interpretation: :math:`z_y \leftarrow z_y + \text{fraction}\cdot z_y`, i.e.
    :func:`scale_target_logit` with ``factor = 1 + fraction``. Unlike the swap, the result is not
    a permutation: the distribution changes shape, and the label need not become the argmax.

    Args:
      logits: ``[..., C]`` floating.
      labels: ``[...]`` integer labels.
      fraction: Python float > 0 (default 0.5).
      only_misclassified: see :func:`scale_target_logit`.

    Returns:
      ``[..., C]`` logits of the input dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> ground_truth_addition(jnp.array([[3., 1., 2.]]), jnp.array([2]), fraction=0.25)
      Array([[3. , 1. , 2.5]], dtype=float32)
    """
    fraction = _checks.check_static_number("fraction", fraction, low=0.0, low_inclusive=False)
    return scale_target_logit(logits, labels, factor=1.0 + fraction, only_misclassified=only_misclassified)


def extreme_addition(logits: jax.Array, labels: jax.Array, *, only_misclassified: bool = True) -> jax.Array:
    r"""Extreme addition: the target logit doubled, :math:`z_y \leftarrow 2 z_y`.

    Interpretation: the whole target logit is added to itself (``fraction = 1``).

    Examples:
      >>> import jax.numpy as jnp
      >>> extreme_addition(jnp.array([[3., 1., 2.]]), jnp.array([2]))
      Array([[3., 1., 4.]], dtype=float32)
    """
    return scale_target_logit(logits, labels, factor=2.0, only_misclassified=only_misclassified)


def target_reduction(logits: jax.Array, labels: jax.Array, *, only_misclassified: bool = True) -> jax.Array:
    r"""Reduction: the target logit halved, :math:`z_y \leftarrow 0.5\, z_y`.

    Interpretation: the counterpart of :func:`extreme_addition` that shrinks the target logit.

    Examples:
      >>> import jax.numpy as jnp
      >>> target_reduction(jnp.array([[3., 1., 2.]]), jnp.array([2]))
      Array([[3., 1., 1.]], dtype=float32)
    """
    return scale_target_logit(logits, labels, factor=0.5, only_misclassified=only_misclassified)


def max_addition(logits: jax.Array, labels: jax.Array, *, only_misclassified: bool = True) -> jax.Array:
    r"""Max-addition: adds the maximal logit to the target logit, :math:`z_y \leftarrow z_y + \max_c z_c`.

    Interpretation: the "value addition" the paper contrasts with the swap, using the teacher's own
    top logit as the added value. For positive logits the label becomes the argmax; the other
    entries are unchanged, so (unlike the swap) the distribution changes shape.

    Args:
      logits: ``[..., C]`` floating.
      labels: ``[...]`` integer labels.
      only_misclassified: see :func:`scale_target_logit`.

    Returns:
      ``[..., C]`` logits of the input dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> max_addition(jnp.array([[3., 1., 2.]]), jnp.array([2]))
      Array([[3., 1., 5.]], dtype=float32)
    """
    _, is_label, rows = _prepare(logits, labels, only_misclassified)
    top = jnp.max(logits, axis=-1, keepdims=True)
    return jnp.where(is_label & rows, logits + top, logits)


def label_smoothing_targets(
    logits: jax.Array, labels: jax.Array, *, epsilon: float = 0.1, only_misclassified: bool = True
) -> jax.Array:
    r"""Replaces the teacher by label-smoothing targets, returned as logits.

    Interpretation: the row becomes :math:`\log\big((1-\epsilon)\,\mathrm{onehot}(y) + \epsilon/C\big)`,
    whose softmax at T = 1 is exactly the label-smoothed distribution (at other temperatures the
    losses soften it like any logits). The teacher's values are discarded on the processed rows.

    Args:
      logits: ``[..., C]`` floating.
      labels: ``[...]`` integer labels.
      epsilon: smoothing in (0, 1] (1 gives the uniform distribution); 0 is excluded because the
        logits would be -inf.
      only_misclassified: see :func:`scale_target_logit`.

    Returns:
      ``[..., C]`` logits of the input dtype.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> z = label_smoothing_targets(jnp.zeros((1, 4)), jnp.array([1]), epsilon=0.2,
      ...                             only_misclassified=False)
      >>> jax.nn.softmax(z).round(3)
      Array([[0.05, 0.85, 0.05, 0.05]], dtype=float32)
    """
    epsilon = _checks.check_static_number("epsilon", epsilon, low=0.0, high=1.0, low_inclusive=False)
    _, is_label, rows = _prepare(logits, labels, only_misclassified)
    num_classes = logits.shape[-1]
    on = jnp.log(jnp.float32(1.0 - epsilon + epsilon / num_classes))
    off = jnp.log(jnp.float32(epsilon / num_classes))
    smoothed = jnp.where(is_label, on, off).astype(logits.dtype)
    return jnp.where(rows, smoothed, logits)


def conditional_swap(logits: jax.Array, labels: jax.Array, *, alpha: float = 0.5) -> jax.Array:
    r"""Swaps only where the teacher is *nearly* right: :math:`|\max_c p_c - p_y| < \alpha`.

    Interpretation: with :math:`p = \mathrm{softmax}(z)` at T = 1 (computed in float32), a
    misclassified row is swapped as in :func:`~sld_jax.losses.swap_logits` only when the gap
    between the top probability and the label's probability is below ``alpha``; confidently wrong
    rows are left as they are. ``alpha = 1`` swaps every misclassified row whose top probability
    is below 1, i.e. behaves as the plain swap except for saturated rows.

    Args:
      logits: ``[..., C]`` floating.
      labels: ``[...]`` integer labels.
      alpha: threshold in (0, 1].

    Returns:
      ``[..., C]`` logits of the input dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> z = jnp.array([[2.0, 1.9, -5.], [9., 0., 0.]])
      >>> conditional_swap(z, jnp.array([1, 1]), alpha=0.5)
      Array([[ 1.9,  2. , -5. ],
             [ 9. ,  0. ,  0. ]], dtype=float32)
    """
    alpha = _checks.check_static_number("alpha", alpha, low=0.0, high=1.0, low_inclusive=False)
    labels, _, _ = _prepare(logits, labels, True)
    p = jax.nn.softmax(_checks.as_float32(logits), axis=-1)
    gap = jnp.max(p, axis=-1) - jnp.take_along_axis(p, labels[..., None], axis=-1)[..., 0]
    return jnp.where((gap < alpha)[..., None], swap_logits(logits, labels), logits)


def multi_swap(logits: jax.Array, labels: jax.Array, *, k: int = 3) -> jax.Array:
    r"""Top-k to top-1 cascade: the label climbs to the top and the classes above it move down.

    Interpretation: let :math:`r` be the label's rank (1 = top; ties ranked by index, so
    :math:`r = 1` exactly when ``argmax == label``). If :math:`2 \le r \le k`, the cascade of
    adjacent swaps :math:`r \leftrightarrow r-1, \ldots, 2 \leftrightarrow 1` is applied: the
    label takes the top value, and each class ranked :math:`1..r-1` takes the value of the next
    rank (a cyclic rotation of the top :math:`r` values). If :math:`r > k`, the row falls back to
    the single SLD swap (label ↔ top-1). Each row stays a permutation of itself and the label
    always ends up as an argmax. ``k = 2`` is exactly :func:`~sld_jax.losses.swap_logits`.

    Args:
      logits: ``[..., C]`` floating.
      labels: ``[...]`` integer labels.
      k: static Python int >= 2, the deepest rank handled by the cascade.

    Returns:
      ``[..., C]`` logits of the input dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> multi_swap(jnp.array([[4., 3., 2., 1.]]), jnp.array([2]), k=3)
      Array([[3., 2., 4., 1.]], dtype=float32)
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"k must be a Python int >= 2 (the deepest rank of the cascade), got {k!r}.")
    labels, is_label, _ = _prepare(logits, labels, True)
    order = jnp.argsort(logits, axis=-1, stable=True, descending=True)  # ties by index
    ranks = jnp.argsort(order, axis=-1, stable=True)  # 0-based rank of each class
    ordered = jnp.take_along_axis(logits, order, axis=-1)
    label_rank = jnp.take_along_axis(ranks, labels[..., None], axis=-1)  # [..., 1]
    next_value = jnp.take_along_axis(ordered, jnp.minimum(ranks + 1, logits.shape[-1] - 1), axis=-1)
    rotated = jnp.where(is_label, ordered[..., :1], jnp.where(ranks < label_rank, next_value, logits))
    return jnp.where(label_rank < k, rotated, swap_logits(logits, labels))


#: Name -> processor, for configs and :func:`get_teacher_transform`.
TEACHER_TRANSFORMS: dict[str, Callable[..., jax.Array]] = {
    "identity": identity,
    "swap": swap_logits,
    "conditional_swap": conditional_swap,
    "multi_swap": multi_swap,
    "gt_addition": ground_truth_addition,
    "extreme_addition": extreme_addition,
    "reduction": target_reduction,
    "max_addition": max_addition,
    "label_smoothing": label_smoothing_targets,
}


def get_teacher_transform(name: str, **kwargs) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Returns the processor called ``name`` with its hyper-parameters bound.

    Hyper-parameter names and values are checked now, before any tracing.

    Args:
      name: one of ``TEACHER_TRANSFORMS``: identity, swap, conditional_swap, multi_swap,
        gt_addition, extreme_addition, reduction, max_addition, label_smoothing.
      **kwargs: the processor's keyword-only hyper-parameters (e.g. ``alpha=0.3``).

    Returns:
      A pure ``(logits, labels) -> logits`` (the function itself when no kwargs are given).

    Examples:
      >>> import jax.numpy as jnp
      >>> f = get_teacher_transform("multi_swap", k=2)
      >>> f(jnp.array([[1., 3., 2.]]), jnp.array([2]))
      Array([[1., 2., 3.]], dtype=float32)
    """
    if name not in TEACHER_TRANSFORMS:
        raise ValueError(f"unknown teacher transform {name!r}; valid names: {', '.join(TEACHER_TRANSFORMS)}.")
    fn = TEACHER_TRANSFORMS[name]
    if not kwargs:
        return fn
    params = inspect.signature(fn).parameters
    allowed = [p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(
            f"teacher transform {name!r} takes no argument {unknown[0]!r}; its hyper-parameters "
            f"are: {', '.join(allowed) or 'none'}."
        )
    _validate(name, kwargs)
    return functools.partial(fn, **kwargs)


def _validate(name: str, kwargs: dict) -> None:
    """Eagerly checks hyper-parameter values (the processors check them again at trace time)."""
    bounds = {
        "fraction": dict(low=0.0, low_inclusive=False),
        "factor": {},
        "epsilon": dict(low=0.0, high=1.0, low_inclusive=False),
        "alpha": dict(low=0.0, high=1.0, low_inclusive=False),
    }
    for key, value in kwargs.items():
        if key in bounds:
            _checks.check_static_number(key, value, **bounds[key])
        elif key == "only_misclassified":
            _checks.check_static_bool(key, value)
        elif key == "k" and (isinstance(value, bool) or not isinstance(value, int) or value < 2):
            raise ValueError(f"k must be a Python int >= 2 (the deepest rank of the cascade), got {value!r}.")
