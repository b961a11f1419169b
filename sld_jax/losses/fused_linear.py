"""SLD for language models: the loss from hidden states and output kernels, never building logits.

At ``N`` tokens and a vocabulary of ``V`` entries the dense path (:func:`sld_loss` on materialised
logits) holds several ``[N, V]`` float32 arrays; at N = 8,192 and V = 128k one of them is 4 GiB.
:func:`fused_linear_sld_loss` computes the same objective from the final hidden states and the
output-projection kernels with peak temporary memory ``O(token_chunk × V)`` (or
``O(token_chunk × vocab_chunk)`` with vocabulary blocking), independent of ``N``: the forward pass
keeps per-token statistics only and the backward pass (a ``custom_vjp``) recomputes each chunk's
logits. The swap exchanges two entries of a row, so each row's log-sum-exp is unchanged and SLD
needs per token only the row maxima and first argmaxes, the label's logits and one log-sum-exp per
temperature (see :mod:`sld_jax.losses._fused_sld_chunks`).

Three teacher forms share one kernel:

* :func:`fused_linear_sld_loss`: teacher hidden states and kernel (logits recomputed per chunk);
* :func:`fused_linear_sld_loss_from_teacher_logits`: precomputed teacher logits ``[N, V]``;
* :func:`fused_linear_sld_loss_from_teacher_topk`: an offline sparse teacher, its top-k logits and
  indices plus the label's logit (make one with :func:`sparse_teacher_logits`).

Vocabulary parallelism: inside ``jax.shard_map`` with the kernels' (and biases') last axis sharded
over a mesh axis, pass ``vocab_axis_name``; tokens may at the same time be sharded over another
axis (``token_axis_name``, for the global count of valid tokens).

Mixed precision: bf16 hidden states and kernels are multiplied with float32 accumulation
(``preferred_element_type``); logits are never rounded to bf16; all reductions are float32; the
gradients come back in the inputs' dtypes. With bf16 inputs the backward matmuls take the logits'
gradient rounded to bf16 (as any bf16 layer's backward does).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from sld_jax.losses import _checks
from sld_jax.losses._fused_tokens import check_chunk, check_hidden_and_kernel, check_matrix, objective
from sld_jax.losses.sld import DEFAULT_TEMPERATURES

_SHARED_ARGS = """
      labels: ``[...]`` integer token ids in ``[0, V)`` (global ids under ``vocab_axis_name``).
      where: ``[...]`` bool (optax's convention), False for padded or ignored tokens; None = all.
        The loss is normalised by the number of valid tokens.
      temperatures: K positive Python floats (static); default ``(1, ..., 6)``.
      student_swap: Python bool (static): add the pseudo-teacher term (after epoch/step γ).
      ce_weight, kd_weight: weights of the mean CE and the mean SLD term.
      token_chunk: tokens per chunk (static int >= 1); peak memory grows with it, not with N.
      vocab_chunk: None (whole local vocabulary per chunk) or an int dividing the (local)
        vocabulary: the logits of a chunk are then built ``vocab_chunk`` columns at a time,
        combined with an online log-sum-exp.
      logit_soft_cap: None or ``c > 0``: logits become ``c * tanh(z / c)`` (Gemma-style).
      student_bias: optional ``[V]`` bias of the student's output projection.
      stop_gradient_pseudo_teacher: detach ``swap(s)`` in the pseudo-teacher term (the reference
        does not).
      vocab_axis_name: mesh axis over which the kernels' (and biases') vocabulary axis is sharded,
        inside ``jax.shard_map``; None when unsharded.
      token_axis_name: mesh axis over which the tokens are sharded, inside ``jax.shard_map``: the
        sums and the count of valid tokens are ``psum``-ed over it, so every shard returns the
        global mean. None: this call's tokens only.

    Returns:
      ``(loss, metrics)``: the float32 scalar ``ce_weight * mean CE + kd_weight * mean SLD`` over
      valid tokens, and float32 scalars ``loss``, ``ce`` and ``kd`` (weighted means), ``ce_sum``
      and ``kd_sum`` (unweighted sums over valid tokens), ``valid_tokens``,
      ``teacher_swap_fraction`` and ``student_swap_fraction`` (fraction of valid tokens whose
      teacher / student argmax is not the label).
"""


#: The keyword options every fused form passes on to ``objective`` unchanged.
_OPTION_NAMES = (
    "where",
    "temperatures",
    "student_swap",
    "ce_weight",
    "kd_weight",
    "token_chunk",
    "vocab_chunk",
    "logit_soft_cap",
    "stop_gradient_pseudo_teacher",
    "vocab_axis_name",
    "token_axis_name",
)


def _options(scope: dict) -> dict:
    return {name: scope[name] for name in _OPTION_NAMES}


def _with_shared_args(fn):
    """Puts the arguments common to the three fused forms into ``fn``'s docstring (one source)."""
    marker = "\n      <shared arguments: labels ... token_axis_name, and Returns; see _SHARED_ARGS>\n"
    fn.__doc__ = fn.__doc__.replace(marker, _SHARED_ARGS)
    return fn


@_with_shared_args
def fused_linear_sld_loss(
    student_hidden: jax.Array,
    student_kernel: jax.Array,
    teacher_hidden: jax.Array,
    teacher_kernel: jax.Array,
    labels: jax.Array,
    *,
    where: jax.Array | None = None,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    student_swap: bool,
    ce_weight: float = 0.1,
    kd_weight: float = 0.9,
    token_chunk: int = 1024,
    vocab_chunk: int | None = None,
    logit_soft_cap: float | None = None,
    student_bias: jax.Array | None = None,
    teacher_bias: jax.Array | None = None,
    stop_gradient_pseudo_teacher: bool = False,
    vocab_axis_name: str | None = None,
    token_axis_name: str | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    r"""The SLD objective of a language model from hidden states, without building ``[N, V]`` logits.

    With ``s = h_s W_s + b_s`` and ``t = h_t W_t + b_t`` (each soft-capped when asked), equal to

    .. math::
        L = w_{ce}\,\overline{\mathrm{CE}(s, y)} + w_{kd}\,\overline{\ell_{\mathrm{SLD}}(s, t, y)}

    where the means run over valid tokens and :math:`\ell_{\mathrm{SLD}}` is :func:`sld_loss`
    (teacher swap, and the pseudo-teacher term when ``student_swap``) — the single-view
    :func:`sld_objective` on materialised logits — with peak temporary memory
    ``O(token_chunk × V)`` instead of ``O(N × V)``. The teacher is never differentiated; the
    gradients w.r.t. ``student_hidden``, ``student_kernel`` and ``student_bias`` are computed by a
    hand-written backward pass that recomputes each chunk's logits. Forward-mode differentiation
    is not defined.

    Args:
      student_hidden: ``[..., Hs]`` floating (bf16 or float32) final hidden states.
      student_kernel: ``[Hs, V]`` output projection (the local ``[Hs, V / shards]`` slice under
        ``vocab_axis_name``).
      teacher_hidden: ``[..., Ht]`` teacher hidden states, same leading shape.
      teacher_kernel: ``[Ht, V]`` teacher output projection.
      teacher_bias: optional ``[V]`` bias of the teacher's output projection.
      <shared arguments: labels ... token_axis_name, and Returns; see _SHARED_ARGS>

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> k = jax.random.split(jax.random.key(0), 4)
      >>> hs, ws = jax.random.normal(k[0], (6, 4)), jax.random.normal(k[1], (4, 10))
      >>> ht, wt = jax.random.normal(k[2], (6, 8)), jax.random.normal(k[3], (8, 10))
      >>> y = jnp.array([0, 1, 2, 3, 4, 5])
      >>> loss, metrics = fused_linear_sld_loss(hs, ws, ht, wt, y, student_swap=True, token_chunk=4)
      >>> int(metrics["valid_tokens"]), round(float(loss), 2)
      (6, 44.09)

    References:
      Limantoro et al., "Swapped Logit Distillation", 2025 (arXiv:2504.20108); the blockwise
      log-sum-exp with recomputation in the backward pass follows Wijmans et al., "Cut Your
      Losses in Large-Vocabulary Language Models", 2024 (arXiv:2411.09009).
    """
    check_hidden_and_kernel(
        "student_hidden", student_hidden, "student_kernel", student_kernel, "student_bias", student_bias
    )
    check_hidden_and_kernel(
        "teacher_hidden", teacher_hidden, "teacher_kernel", teacher_kernel, "teacher_bias", teacher_bias
    )
    if teacher_hidden.shape[:-1] != student_hidden.shape[:-1]:
        raise ValueError(
            f"teacher_hidden and student_hidden must have the same leading (token) shape, got "
            f"{teacher_hidden.shape[:-1]} and {student_hidden.shape[:-1]}."
        )
    if teacher_kernel.shape[1] != student_kernel.shape[1]:
        raise ValueError(
            f"teacher_kernel and student_kernel must have the same vocabulary size, got "
            f"{teacher_kernel.shape[1]} and {student_kernel.shape[1]}."
        )
    teacher_kernel = jax.lax.stop_gradient(teacher_kernel)
    bias = (
        jnp.zeros((teacher_kernel.shape[1],), teacher_kernel.dtype) if teacher_bias is None else teacher_bias
    )
    return objective(
        student_hidden,
        student_kernel,
        student_bias,
        "linear",
        (jax.lax.stop_gradient(teacher_hidden),),
        (teacher_kernel, jax.lax.stop_gradient(bias)),
        labels,
        **_options(locals()),
    )


@_with_shared_args
def fused_linear_sld_loss_from_teacher_logits(
    student_hidden: jax.Array,
    student_kernel: jax.Array,
    teacher_logits: jax.Array,
    labels: jax.Array,
    *,
    where: jax.Array | None = None,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    student_swap: bool,
    ce_weight: float = 0.1,
    kd_weight: float = 0.9,
    token_chunk: int = 1024,
    vocab_chunk: int | None = None,
    logit_soft_cap: float | None = None,
    student_bias: jax.Array | None = None,
    stop_gradient_pseudo_teacher: bool = False,
    vocab_axis_name: str | None = None,
    token_axis_name: str | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Like :func:`fused_linear_sld_loss`, with precomputed teacher logits ``[..., V]``.

    The student's logits are still never materialised; the teacher's are read a chunk at a time
    (used as given: ``logit_soft_cap`` applies to the student only). Entries of ``-inf`` are
    allowed (probability 0).

    Args:
      student_hidden: ``[..., Hs]`` floating final hidden states.
      student_kernel: ``[Hs, V]`` output projection (local slice under ``vocab_axis_name``).
      teacher_logits: ``[..., V]`` floating (bf16 accepted; read in float32), leading shape of
        ``labels`` (local vocabulary slice under ``vocab_axis_name``).
      <shared arguments: labels ... token_axis_name, and Returns; see _SHARED_ARGS>

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> hs, ws = jnp.ones((3, 2)), jnp.eye(2, 5)
      >>> t = jnp.array([[0., 3., 0., 0., 0.]] * 3)
      >>> loss, m = fused_linear_sld_loss_from_teacher_logits(hs, ws, t, jnp.array([0, 1, 2]),
      ...                                                     student_swap=False)
      >>> round(float(m["teacher_swap_fraction"]), 3)
      0.667
    """
    check_hidden_and_kernel(
        "student_hidden", student_hidden, "student_kernel", student_kernel, "student_bias", student_bias
    )
    check_matrix("teacher_logits", teacher_logits, "of shape [..., V]")
    expected = student_hidden.shape[:-1] + (student_kernel.shape[-1],)
    if teacher_logits.shape != expected:
        raise ValueError(
            f"teacher_logits must have shape {expected} (tokens of student_hidden, vocabulary of "
            f"student_kernel), got {teacher_logits.shape}."
        )
    return objective(
        student_hidden,
        student_kernel,
        student_bias,
        "logits",
        (jax.lax.stop_gradient(teacher_logits),),
        (),
        labels,
        **_options(locals()),
    )


@_with_shared_args
def fused_linear_sld_loss_from_teacher_topk(
    student_hidden: jax.Array,
    student_kernel: jax.Array,
    teacher_topk_values: jax.Array,
    teacher_topk_indices: jax.Array,
    teacher_label_logits: jax.Array,
    labels: jax.Array,
    *,
    where: jax.Array | None = None,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    student_swap: bool,
    ce_weight: float = 0.1,
    kd_weight: float = 0.9,
    token_chunk: int = 1024,
    vocab_chunk: int | None = None,
    logit_soft_cap: float | None = None,
    student_bias: jax.Array | None = None,
    stop_gradient_pseudo_teacher: bool = False,
    vocab_axis_name: str | None = None,
    token_axis_name: str | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    r"""Like :func:`fused_linear_sld_loss`, from an offline sparse teacher: top-k logits + the label's.

    What this computes exactly: the teacher's logits are taken to be ``-inf`` outside the set
    :math:`S = \mathrm{topk}(t) \cup \{y\}`, i.e. at every temperature the teacher distribution
    is :math:`p^{(k)}_T = \mathrm{softmax}(t_S / T)`, the full :math:`\mathrm{softmax}(t/T)`
    restricted to ``S`` and renormalised. The swap itself is exact: the teacher's argmax is in
    the top-k (first maximal index among the stored entries, ties to the lowest vocabulary id)
    and the label's logit is stored, so ``swap(t)`` exchanges the same two entries as on the full
    logits. The only approximation is the truncation: for each ``T`` the KL differs from the
    full-logit SLD term by the contribution of the tail mass :math:`1 - \sum_{c \in S}
    \mathrm{softmax}(t/T)_c`, which grows with ``T`` (at T = 6 a flat tail over a 128k vocabulary
    can hold much of the mass: check it on your teacher, e.g. with :func:`sparse_teacher_logits`
    and the dense form on a sample). The student side (its log-sum-exp, CE and pseudo-teacher
    term) is exact. With ``k = V`` this equals :func:`fused_linear_sld_loss_from_teacher_logits`.

    Args:
      student_hidden: ``[..., Hs]`` floating final hidden states.
      student_kernel: ``[Hs, V]`` output projection (local slice under ``vocab_axis_name``).
      teacher_topk_values: ``[..., k]`` floating: the teacher's k largest logits per token.
      teacher_topk_indices: ``[..., k]`` integer global vocabulary ids of those logits (distinct
        per token).
      teacher_label_logits: ``[...]`` floating: the teacher's logit at the label.
      <shared arguments: labels ... token_axis_name, and Returns; see _SHARED_ARGS>

    Examples:
      >>> import jax.numpy as jnp
      >>> t = jnp.array([[0., 3., 1., -1.], [2., 0., 0., 1.]]); y = jnp.array([0, 0])
      >>> vals, idx, at_label = sparse_teacher_logits(t, y, k=2)
      >>> loss, m = fused_linear_sld_loss_from_teacher_topk(
      ...     jnp.ones((2, 2)), jnp.ones((2, 4)), vals, idx, at_label, y, student_swap=False)
      >>> float(m["teacher_swap_fraction"])
      0.5
    """
    check_hidden_and_kernel(
        "student_hidden", student_hidden, "student_kernel", student_kernel, "student_bias", student_bias
    )
    lead = student_hidden.shape[:-1]
    check_matrix("teacher_topk_values", teacher_topk_values, "of shape [..., k]")
    check_matrix("teacher_label_logits", teacher_label_logits, "of shape [...]")
    if not hasattr(teacher_topk_indices, "dtype") or not jnp.issubdtype(
        teacher_topk_indices.dtype, jnp.integer
    ):
        raise TypeError("teacher_topk_indices must be integer vocabulary ids of shape [..., k].")
    if teacher_topk_values.ndim != len(lead) + 1 or teacher_topk_values.shape[:-1] != lead:
        raise ValueError(
            f"teacher_topk_values must have shape {lead} + (k,), got {teacher_topk_values.shape}."
        )
    if teacher_topk_indices.shape != teacher_topk_values.shape:
        raise ValueError(
            f"teacher_topk_indices must have the shape of teacher_topk_values {teacher_topk_values.shape}, "
            f"got {teacher_topk_indices.shape}."
        )
    if teacher_label_logits.shape != lead:
        raise ValueError(f"teacher_label_logits must have shape {lead}, got {teacher_label_logits.shape}.")
    stop = jax.lax.stop_gradient
    tok = (stop(teacher_topk_values), teacher_topk_indices.astype(jnp.int32), stop(teacher_label_logits))
    return objective(
        student_hidden,
        student_kernel,
        student_bias,
        "topk",
        tok,
        (),
        labels,
        **_options(locals()),
    )


def sparse_teacher_logits(
    teacher_logits: jax.Array, labels: jax.Array, *, k: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The offline sparse form of teacher logits: ``(top-k values, their ids, the label's logit)``.

    Args:
      teacher_logits: ``[..., V]`` floating.
      labels: ``[...]`` integer ids in ``[0, V)``.
      k: static int in ``[1, V]`` (e.g. 128).

    Returns:
      ``values [..., k]`` (teacher dtype, descending; ties in ascending id order),
      ``indices [..., k]`` int32 and ``label_logits [...]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> v, i, at_label = sparse_teacher_logits(jnp.array([[0., 3., 1.]]), jnp.array([2]), k=1)
      >>> i.tolist(), at_label.tolist()
      ([[1]], [1.0])
    """
    _checks.check_logits("teacher_logits", teacher_logits)
    _checks.check_labels(labels, teacher_logits, "teacher_logits")
    k = check_chunk("k", k)
    if k > teacher_logits.shape[-1]:
        raise ValueError(f"k must be at most the vocabulary size {teacher_logits.shape[-1]}, got {k}.")
    values, indices = jax.lax.top_k(teacher_logits, k)
    at_label = jnp.take_along_axis(teacher_logits, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return values, indices.astype(jnp.int32), at_label
