"""Distillation losses for language models from hidden states and output kernels, never building
the ``[N, V]`` logits.

At ``N`` tokens and a vocabulary of ``V`` entries the dense path (a divergence on materialised
logits) holds several ``[N, V]`` float32 arrays; at N = 8,192 and V = 128k one of them is 4 GiB.
:func:`fused_linear_distill_loss` computes ``ce_weight · CE + kd_weight · Σ_T c_T D_T(p_T, q_T)``
from the final hidden states and the output-projection kernels with peak temporary memory
``O(token_chunk × V)`` (or ``O(token_chunk × vocab_chunk)`` with vocabulary blocking), independent
of ``N``: the forward pass keeps per-token statistics only and the backward pass (a
``custom_vjp``) recomputes each chunk's logits (see :mod:`sld_jax.losses._fused_chunks`).

* ``divergence``: ``"forward_kl"`` KL(p‖q), ``"reverse_kl"`` KL(q‖p) (MiniLLM), ``"symmetric_kl"``
  (their sum), ``"jsd"`` (the generalised Jensen–Shannon divergence of GKD with ``beta``, in TRL's
  convention: ``M = β p + (1 - β) q``, ``JSD_β = β KL(p‖M) + (1 - β) KL(q‖M)``, and β = 0 / 1 are the
  forward / reverse KL), ``"tvd"`` (total variation, ``½ Σ |p - q|``). ``p`` is the teacher's
  distribution (after ``teacher_transform``), ``q`` the student's, both at temperature T. JSD and
  TVD take a second pass over the vocabulary (free when the local vocabulary is one block, one
  more logits matmul per block with ``vocab_chunk``); the KL divergences take one.
* ``teacher_transform``: None (plain distillation), ``"swap"`` (SLD's label/argmax swap) or
  ``"conditional_swap"`` (swap only where the teacher's top-1 and label probabilities at T = 1
  differ by less than ``conditional_swap_alpha``); ``student_swap`` adds SLD's pseudo-teacher term.
* ``temperature_scaling``: ``c_T = T²`` (Hinton's convention and SLD's) or 1 (Liger's, torchtune's).

:func:`fused_linear_sld_loss` is this loss with SLD's settings (forward KL, swap, T = 1..6, CE 0.1,
KD 0.9). Three teacher forms share one kernel: teacher hidden states and kernel (logits recomputed
per chunk), precomputed teacher logits ``[N, V]`` (``_from_teacher_logits``), and an offline sparse
teacher, its top-k logits and indices plus the label's logit (``_from_teacher_topk``; make one with
:func:`sparse_teacher_logits`). :func:`fused_linear_cross_entropy` is the cross-entropy alone, for
evaluation.

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

_COMMON_ARGS = """
      labels: ``[...]`` integer token ids in ``[0, V)`` (global ids under ``vocab_axis_name``).
      where: ``[...]`` bool (optax's convention), False for padded or ignored tokens; None = all.
        The loss is normalised by the number of valid tokens.
      token_chunk: tokens per chunk (static int >= 1); peak memory grows with it, not with N.
      vocab_chunk: None (whole local vocabulary per chunk) or an int dividing the (local)
        vocabulary: the logits of a chunk are then built ``vocab_chunk`` columns at a time,
        combined with an online log-sum-exp.
      logit_soft_cap: None or ``c > 0``: logits become ``c * tanh(z / c)`` (Gemma-style).
      student_bias: optional ``[V]`` bias of the student's output projection.
      vocab_axis_name: mesh axis over which the kernels' (and biases') vocabulary axis is sharded,
        inside ``jax.shard_map``; None when unsharded.
      token_axis_name: mesh axis over which the tokens are sharded, inside ``jax.shard_map``: the
        sums and the count of valid tokens are ``psum``-ed over it, so every shard returns the
        global mean. None: this call's tokens only."""

_DISTILL_ARGS = """
      divergence: ``"forward_kl"`` (default), ``"reverse_kl"``, ``"symmetric_kl"``, ``"jsd"`` or
        ``"tvd"`` (see the module docstring; ``p`` the teacher, ``q`` the student).
      beta: JSD's β in [0, 1] (TRL's convention: ``M = β p + (1 - β) q``; 0 is the forward KL, 1 the
        reverse KL); None: 0.5. Only for ``"jsd"``.
      temperatures: K positive Python floats (static); the divergence is summed over them.
        Default ``(1.0,)``.
      temperature_scaling: multiply each temperature's divergence by T² (True, Hinton's and SLD's
        convention) or not (False, Liger's and torchtune's).
      teacher_transform: None, ``"swap"`` or ``"conditional_swap"`` (applied to the teacher's
        logits before the divergence; exact, from per-token statistics).
      conditional_swap_alpha: the conditional swap's threshold α in (0, 1]; None: 0.5. Only for
        ``"conditional_swap"``.
      student_swap: Python bool (static): add SLD's pseudo-teacher term (needs a teacher swap).
      ce_weight, kd_weight: weights of the mean CE and the mean distillation term (default 0 and
        1: the divergence alone).
      stop_gradient_pseudo_teacher: detach ``swap(s)`` in the pseudo-teacher term (SLD's reference
        does not)."""

_SLD_ARGS = """
      temperatures: K positive Python floats (static); default ``(1, ..., 6)``.
      student_swap: Python bool (static): add the pseudo-teacher term (after epoch/step γ).
      ce_weight, kd_weight: weights of the mean CE and the mean SLD term.
      stop_gradient_pseudo_teacher: detach ``swap(s)`` in the pseudo-teacher term (the reference
        does not)."""

_RETURNS = """

    Returns:
      ``(loss, metrics)``: the float32 scalar ``ce_weight * mean CE + kd_weight * mean KD`` over
      valid tokens, and float32 scalars ``loss``, ``ce`` and ``kd`` (weighted means), ``ce_sum``
      and ``kd_sum`` (unweighted sums over valid tokens), ``valid_tokens``,
      ``teacher_swap_fraction`` (fraction of valid tokens whose teacher distribution the transform
      changed: its argmax is not the label and the swap applies) and ``student_swap_fraction``
      (fraction whose student argmax is not the label).
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
    "divergence",
    "beta",
    "temperature_scaling",
    "teacher_transform",
    "conditional_swap_alpha",
)
#: SLD's settings of the distillation loss.
_SLD_SETTINGS = dict(divergence="forward_kl", temperature_scaling=True, teacher_transform="swap")


def _options(scope: dict) -> dict:
    return {name: scope[name] for name in _OPTION_NAMES if name in scope}


def _document(*sections):
    """Puts the argument sections shared by the fused forms into ``fn``'s docstring (one source)."""
    text = "".join(sections)

    def put(fn):
        fn.__doc__ = fn.__doc__.replace("\n      <shared arguments>\n", text + "\n")
        return fn

    return put


def _linear_teacher(student_hidden, student_kernel, teacher_hidden, teacher_kernel, teacher_bias):
    """The teacher's hidden states and projection, checked: ``("linear", tok, const)``."""
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
    bias = (
        jnp.zeros((teacher_kernel.shape[1],), teacher_kernel.dtype) if teacher_bias is None else teacher_bias
    )
    stop = jax.lax.stop_gradient
    return "linear", (stop(teacher_hidden),), (stop(teacher_kernel), stop(bias))


def _logits_teacher(student_hidden, student_kernel, teacher_logits):
    """Precomputed teacher logits, checked: ``("logits", tok, const)``."""
    check_matrix("teacher_logits", teacher_logits, "of shape [..., V]")
    expected = student_hidden.shape[:-1] + (student_kernel.shape[-1],)
    if teacher_logits.shape != expected:
        raise ValueError(
            f"teacher_logits must have shape {expected} (tokens of student_hidden, vocabulary of "
            f"student_kernel), got {teacher_logits.shape}."
        )
    return "logits", (jax.lax.stop_gradient(teacher_logits),), ()


def _topk_teacher(student_hidden, teacher_topk_values, teacher_topk_indices, teacher_label_logits):
    """A sparse teacher, checked: ``("topk", tok, const)``."""
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
    return "topk", tok, ()


def _loss(student_hidden, student_kernel, student_bias, labels, options, teacher, *teacher_args):
    """Checks the student, then the teacher (``teacher(*teacher_args)``), and runs the objective."""
    check_hidden_and_kernel(
        "student_hidden", student_hidden, "student_kernel", student_kernel, "student_bias", student_bias
    )
    kind, tok, const = teacher(*teacher_args)
    return objective(student_hidden, student_kernel, student_bias, kind, tok, const, labels, **options)


@_document(_DISTILL_ARGS, _COMMON_ARGS, _RETURNS)
def fused_linear_distill_loss(
    student_hidden: jax.Array,
    student_kernel: jax.Array,
    teacher_hidden: jax.Array,
    teacher_kernel: jax.Array,
    labels: jax.Array,
    *,
    divergence: str = "forward_kl",
    beta: float | None = None,
    temperatures: Sequence[float] = (1.0,),
    temperature_scaling: bool = True,
    teacher_transform: str | None = None,
    conditional_swap_alpha: float | None = None,
    student_swap: bool = False,
    ce_weight: float = 0.0,
    kd_weight: float = 1.0,
    where: jax.Array | None = None,
    token_chunk: int = 1024,
    vocab_chunk: int | None = None,
    logit_soft_cap: float | None = None,
    student_bias: jax.Array | None = None,
    teacher_bias: jax.Array | None = None,
    stop_gradient_pseudo_teacher: bool = False,
    vocab_axis_name: str | None = None,
    token_axis_name: str | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    r"""Distillation of a language model from hidden states, without building ``[N, V]`` logits.

    With ``s = h_s W_s + b_s`` and ``t = h_t W_t + b_t`` (each soft-capped when asked),
    :math:`q_T = \mathrm{softmax}(s/T)` and :math:`p_T = \mathrm{softmax}(\tau(t)/T)` with ``τ`` the
    teacher transform, equal to

    .. math::
        L = w_{ce}\,\overline{\mathrm{CE}(s, y)} + w_{kd}\,\overline{\textstyle\sum_T c_T\, D(p_T, q_T)}

    (means over valid tokens; ``c_T = T²`` or 1) — the same value as the divergence on materialised
    logits — with peak temporary memory ``O(token_chunk × V)`` instead of ``O(N × V)``. The teacher
    is never differentiated; the gradients w.r.t. ``student_hidden``, ``student_kernel`` and
    ``student_bias`` are computed by a hand-written backward pass that recomputes each chunk's
    logits. Forward-mode differentiation is not defined.

    Args:
      student_hidden: ``[..., Hs]`` floating (bf16 or float32) final hidden states.
      student_kernel: ``[Hs, V]`` output projection (the local ``[Hs, V / shards]`` slice under
        ``vocab_axis_name``).
      teacher_hidden: ``[..., Ht]`` teacher hidden states, same leading shape.
      teacher_kernel: ``[Ht, V]`` teacher output projection.
      teacher_bias: optional ``[V]`` bias of the teacher's output projection.
      <shared arguments>

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> k = jax.random.split(jax.random.key(0), 4)
      >>> hs, ws = jax.random.normal(k[0], (6, 4)), jax.random.normal(k[1], (4, 10))
      >>> ht, wt = jax.random.normal(k[2], (6, 8)), jax.random.normal(k[3], (8, 10))
      >>> y = jnp.array([0, 1, 2, 3, 4, 5])
      >>> for d in ("forward_kl", "reverse_kl", "jsd", "tvd"):
      ...     loss, _ = fused_linear_distill_loss(hs, ws, ht, wt, y, divergence=d)
      ...     print(d, round(float(loss), 3))
      forward_kl 3.552
      reverse_kl 3.698
      jsd 0.434
      tvd 0.768

    References:
      Agarwal et al., "On-Policy Distillation of Language Models: Learning from Self-Generated
      Mistakes" (GKD), 2024 (arXiv:2306.13649); Gu et al., "MiniLLM", 2024 (arXiv:2306.08543);
      Limantoro et al., "Swapped Logit Distillation", 2025 (arXiv:2504.20108); the blockwise
      log-sum-exp with recomputation in the backward pass follows Wijmans et al., "Cut Your
      Losses in Large-Vocabulary Language Models", 2024 (arXiv:2411.09009).
    """
    options = _options(locals())
    teacher = (_linear_teacher, student_hidden, student_kernel, teacher_hidden, teacher_kernel, teacher_bias)
    return _loss(student_hidden, student_kernel, student_bias, labels, options, *teacher)


@_document(_DISTILL_ARGS, _COMMON_ARGS, _RETURNS)
def fused_linear_distill_loss_from_teacher_logits(
    student_hidden: jax.Array,
    student_kernel: jax.Array,
    teacher_logits: jax.Array,
    labels: jax.Array,
    *,
    divergence: str = "forward_kl",
    beta: float | None = None,
    temperatures: Sequence[float] = (1.0,),
    temperature_scaling: bool = True,
    teacher_transform: str | None = None,
    conditional_swap_alpha: float | None = None,
    student_swap: bool = False,
    ce_weight: float = 0.0,
    kd_weight: float = 1.0,
    where: jax.Array | None = None,
    token_chunk: int = 1024,
    vocab_chunk: int | None = None,
    logit_soft_cap: float | None = None,
    student_bias: jax.Array | None = None,
    stop_gradient_pseudo_teacher: bool = False,
    vocab_axis_name: str | None = None,
    token_axis_name: str | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Like :func:`fused_linear_distill_loss`, with precomputed teacher logits ``[..., V]``.

    The student's logits are still never materialised; the teacher's are read a chunk at a time
    (used as given: ``logit_soft_cap`` applies to the student only). Entries of ``-inf`` are
    allowed (probability 0; not with the reverse or symmetric KL).

    Args:
      student_hidden: ``[..., Hs]`` floating final hidden states.
      student_kernel: ``[Hs, V]`` output projection (local slice under ``vocab_axis_name``).
      teacher_logits: ``[..., V]`` floating (bf16 accepted; read in float32), leading shape of
        ``labels`` (local vocabulary slice under ``vocab_axis_name``).
      <shared arguments>

    Examples:
      >>> import jax.numpy as jnp
      >>> hs, ws = jnp.ones((3, 2)), jnp.eye(2, 5)
      >>> t = jnp.array([[0., 3., 0., 0., 0.]] * 3)
      >>> loss, m = fused_linear_distill_loss_from_teacher_logits(hs, ws, t, jnp.array([0, 1, 2]),
      ...                                                         divergence="tvd")
      >>> round(float(loss), 4)
      0.5117
    """
    options = _options(locals())
    teacher = (_logits_teacher, student_hidden, student_kernel, teacher_logits)
    return _loss(student_hidden, student_kernel, student_bias, labels, options, *teacher)


@_document(_DISTILL_ARGS, _COMMON_ARGS, _RETURNS)
def fused_linear_distill_loss_from_teacher_topk(
    student_hidden: jax.Array,
    student_kernel: jax.Array,
    teacher_topk_values: jax.Array,
    teacher_topk_indices: jax.Array,
    teacher_label_logits: jax.Array,
    labels: jax.Array,
    *,
    divergence: str = "forward_kl",
    beta: float | None = None,
    temperatures: Sequence[float] = (1.0,),
    temperature_scaling: bool = True,
    teacher_transform: str | None = None,
    conditional_swap_alpha: float | None = None,
    student_swap: bool = False,
    ce_weight: float = 0.0,
    kd_weight: float = 1.0,
    where: jax.Array | None = None,
    token_chunk: int = 1024,
    vocab_chunk: int | None = None,
    logit_soft_cap: float | None = None,
    student_bias: jax.Array | None = None,
    stop_gradient_pseudo_teacher: bool = False,
    vocab_axis_name: str | None = None,
    token_axis_name: str | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    r"""Like :func:`fused_linear_distill_loss`, from an offline sparse teacher: top-k logits + the label's.

    What this computes exactly: the teacher's logits are taken to be ``-inf`` outside the set
    :math:`S = \mathrm{topk}(t) \cup \{y\}`, i.e. at every temperature the teacher distribution
    is :math:`p^{(k)}_T = \mathrm{softmax}(t_S / T)`, the full :math:`\mathrm{softmax}(t/T)`
    restricted to ``S`` and renormalised. The swap itself is exact: the teacher's argmax is in
    the top-k (first maximal index among the stored entries, ties to the lowest vocabulary id)
    and the label's logit is stored, so ``swap(t)`` exchanges the same two entries as on the full
    logits. The only approximation is the truncation: for each ``T`` the divergence differs from
    the full-logit one by the contribution of the tail mass :math:`1 - \sum_{c \in S}
    \mathrm{softmax}(t/T)_c`, which grows with ``T`` (at T = 6 a flat tail over a 128k vocabulary
    can hold much of the mass: check it on your teacher, e.g. with :func:`sparse_teacher_logits`
    and the dense form on a sample). The student side (its log-sum-exp, CE and pseudo-teacher
    term) is exact. With ``k = V`` this equals :func:`fused_linear_distill_loss_from_teacher_logits`.

    Args:
      student_hidden: ``[..., Hs]`` floating final hidden states.
      student_kernel: ``[Hs, V]`` output projection (local slice under ``vocab_axis_name``).
      teacher_topk_values: ``[..., k]`` floating: the teacher's k largest logits per token.
      teacher_topk_indices: ``[..., k]`` integer global vocabulary ids of those logits (distinct
        per token).
      teacher_label_logits: ``[...]`` floating: the teacher's logit at the label.
      <shared arguments>

    Raises:
      ValueError: for ``"reverse_kl"``, ``"symmetric_kl"`` and JSD with β = 1, which need the
        teacher's probability of every token.

    Examples:
      >>> import jax.numpy as jnp
      >>> t = jnp.array([[0., 3., 1., -1.], [2., 0., 0., 1.]]); y = jnp.array([0, 0])
      >>> vals, idx, at_label = sparse_teacher_logits(t, y, k=2)
      >>> loss, m = fused_linear_distill_loss_from_teacher_topk(
      ...     jnp.ones((2, 2)), jnp.ones((2, 4)), vals, idx, at_label, y, teacher_transform="swap")
      >>> round(float(loss), 4), float(m["teacher_swap_fraction"])
      (0.8331, 0.5)
    """
    options = _options(locals())
    teacher = (_topk_teacher, student_hidden, teacher_topk_values, teacher_topk_indices, teacher_label_logits)
    return _loss(student_hidden, student_kernel, student_bias, labels, options, *teacher)


@_document(_SLD_ARGS, _COMMON_ARGS, _RETURNS)
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

    :func:`fused_linear_distill_loss` with SLD's settings: forward KL at T = 1..6 with T² scaling,
    the teacher swap and (``student_swap``) the pseudo-teacher term, CE 0.1 and KD 0.9. Equal to

    .. math::
        L = w_{ce}\,\overline{\mathrm{CE}(s, y)} + w_{kd}\,\overline{\ell_{\mathrm{SLD}}(s, t, y)}

    where the means run over valid tokens and :math:`\ell_{\mathrm{SLD}}` is :func:`sld_loss` — the
    single-view :func:`sld_objective` on materialised logits.

    Args:
      student_hidden: ``[..., Hs]`` floating (bf16 or float32) final hidden states.
      student_kernel: ``[Hs, V]`` output projection (the local ``[Hs, V / shards]`` slice under
        ``vocab_axis_name``).
      teacher_hidden: ``[..., Ht]`` teacher hidden states, same leading shape.
      teacher_kernel: ``[Ht, V]`` teacher output projection.
      teacher_bias: optional ``[V]`` bias of the teacher's output projection.
      <shared arguments>

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
      Limantoro et al., "Swapped Logit Distillation", 2025 (arXiv:2504.20108).
    """
    return fused_linear_distill_loss(
        student_hidden,
        student_kernel,
        teacher_hidden,
        teacher_kernel,
        labels,
        teacher_bias=teacher_bias,
        student_bias=student_bias,
        **_options(locals()),
        **_SLD_SETTINGS,
    )


@_document(_SLD_ARGS, _COMMON_ARGS, _RETURNS)
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
    """Like :func:`fused_linear_sld_loss`, with precomputed teacher logits ``[..., V]``
    (:func:`fused_linear_distill_loss_from_teacher_logits` with SLD's settings).

    Args:
      student_hidden: ``[..., Hs]`` floating final hidden states.
      student_kernel: ``[Hs, V]`` output projection (local slice under ``vocab_axis_name``).
      teacher_logits: ``[..., V]`` floating (bf16 accepted; read in float32), leading shape of
        ``labels`` (local vocabulary slice under ``vocab_axis_name``); ``-inf`` entries allowed.
      <shared arguments>

    Examples:
      >>> import jax.numpy as jnp
      >>> hs, ws = jnp.ones((3, 2)), jnp.eye(2, 5)
      >>> t = jnp.array([[0., 3., 0., 0., 0.]] * 3)
      >>> loss, m = fused_linear_sld_loss_from_teacher_logits(hs, ws, t, jnp.array([0, 1, 2]),
      ...                                                     student_swap=False)
      >>> round(float(m["teacher_swap_fraction"]), 3)
      0.667
    """
    return fused_linear_distill_loss_from_teacher_logits(
        student_hidden,
        student_kernel,
        teacher_logits,
        labels,
        student_bias=student_bias,
        **_options(locals()),
        **_SLD_SETTINGS,
    )


@_document(_SLD_ARGS, _COMMON_ARGS, _RETURNS)
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
    """Like :func:`fused_linear_sld_loss`, from an offline sparse teacher (top-k logits + the
    label's): :func:`fused_linear_distill_loss_from_teacher_topk` with SLD's settings, which says
    what is exact and what is truncated. With ``k = V`` this equals
    :func:`fused_linear_sld_loss_from_teacher_logits`.

    Args:
      student_hidden: ``[..., Hs]`` floating final hidden states.
      student_kernel: ``[Hs, V]`` output projection (local slice under ``vocab_axis_name``).
      teacher_topk_values: ``[..., k]`` floating: the teacher's k largest logits per token.
      teacher_topk_indices: ``[..., k]`` integer global vocabulary ids of those logits.
      teacher_label_logits: ``[...]`` floating: the teacher's logit at the label.
      <shared arguments>

    Examples:
      >>> import jax.numpy as jnp
      >>> t = jnp.array([[0., 3., 1., -1.], [2., 0., 0., 1.]]); y = jnp.array([0, 0])
      >>> vals, idx, at_label = sparse_teacher_logits(t, y, k=2)
      >>> loss, m = fused_linear_sld_loss_from_teacher_topk(
      ...     jnp.ones((2, 2)), jnp.ones((2, 4)), vals, idx, at_label, y, student_swap=False)
      >>> float(m["teacher_swap_fraction"])
      0.5
    """
    return fused_linear_distill_loss_from_teacher_topk(
        student_hidden,
        student_kernel,
        teacher_topk_values,
        teacher_topk_indices,
        teacher_label_logits,
        labels,
        student_bias=student_bias,
        **_options(locals()),
        **_SLD_SETTINGS,
    )


def fused_linear_cross_entropy(
    hidden: jax.Array,
    kernel: jax.Array,
    labels: jax.Array,
    *,
    where: jax.Array | None = None,
    bias: jax.Array | None = None,
    token_chunk: int = 1024,
    vocab_chunk: int | None = None,
    logit_soft_cap: float | None = None,
    vocab_axis_name: str | None = None,
    token_axis_name: str | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The mean cross-entropy of a language model from hidden states, without building ``[N, V]``
    logits: evaluation (perplexity, bits per token) at the memory of the fused losses.

    Args:
      hidden: ``[..., H]`` floating final hidden states.
      kernel: ``[H, V]`` output projection (local slice under ``vocab_axis_name``).
      labels: ``[...]`` integer token ids in ``[0, V)``.
      where: ``[...]`` bool, False for padded or ignored tokens; None = all.
      bias: optional ``[V]`` bias of the output projection.
      token_chunk, vocab_chunk, logit_soft_cap, vocab_axis_name, token_axis_name: as in
        :func:`fused_linear_distill_loss`.

    Returns:
      ``(loss, metrics)``: the float32 mean CE over valid tokens (nats), and float32 scalars
      ``loss``, ``ce_sum``, ``valid_tokens`` and ``top1`` (fraction of valid tokens whose argmax
      is the label).

    Examples:
      >>> import jax.numpy as jnp
      >>> loss, m = fused_linear_cross_entropy(jnp.ones((2, 2)), jnp.eye(2, 4), jnp.array([0, 3]))
      >>> round(float(loss), 4), float(m["top1"])
      (1.5064, 0.5)
    """
    loss, m = objective(
        hidden,
        kernel,
        bias,
        "none",
        (),
        (),
        labels,
        where=where,
        temperatures=(),
        student_swap=False,
        ce_weight=1.0,
        kd_weight=0.0,
        token_chunk=token_chunk,
        vocab_chunk=vocab_chunk,
        logit_soft_cap=logit_soft_cap,
        stop_gradient_pseudo_teacher=False,
        vocab_axis_name=vocab_axis_name,
        token_axis_name=token_axis_name,
        teacher_transform=None,
    )
    top1 = 1.0 - m["student_swap_fraction"]
    return loss, {"loss": m["loss"], "ce_sum": m["ce_sum"], "valid_tokens": m["valid_tokens"], "top1": top1}


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
