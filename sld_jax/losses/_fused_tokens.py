"""Validation, token flattening and padding, and the reduction behind :mod:`sld_jax.losses.fused_linear`."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from sld_jax.losses import _checks, _fused_chunks


def check_matrix(name: str, x: object, what: str) -> None:
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{name} must be an array {what}, got {type(x).__name__}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must be floating point (float32 or bfloat16), got {x.dtype}.")


def check_hidden_and_kernel(hidden_name, hidden, kernel_name, kernel, bias_name, bias):
    """Checks hidden states ``[..., H]``, a kernel ``[H, V]`` and an optional bias ``[V]`` (floating).

    Raises TypeError for non-arrays or non-floating dtypes and one-sentence ValueErrors naming the
    shapes for a wrong rank or mismatched sizes, before any shape is indexed.
    """
    check_matrix(hidden_name, hidden, "of shape [..., H]")
    check_matrix(kernel_name, kernel, "of shape [H, V]")
    if hidden.ndim < 1:
        raise ValueError(
            f"{hidden_name} must have shape [..., H] (at least one axis), got {hidden.shape}; "
            "pass the final hidden states with the hidden size as the last axis."
        )
    if kernel.ndim != 2:
        raise ValueError(
            f"{kernel_name} must be a 2-D [H, V] output kernel (H = {hidden_name}'s last axis, "
            f"{hidden.shape[-1]}), got shape {kernel.shape}; pass the projection matrix itself "
            "(e.g. the Dense layer's kernel, or a [V, H] embedding table transposed), not a vector "
            "or a stacked/batched kernel."
        )
    if hidden.shape[-1] != kernel.shape[0]:
        raise ValueError(
            f"{hidden_name}'s last axis ({hidden.shape[-1]}) must equal {kernel_name}'s first axis "
            f"({kernel.shape[0]}); pass the output kernel as [hidden, vocab] (transpose a [vocab, "
            "hidden] embedding table)."
        )
    if bias is not None:
        check_matrix(bias_name, bias, f"of shape [{kernel.shape[1]}]")
        if bias.shape != (kernel.shape[1],):
            raise ValueError(
                f"{bias_name} must have shape ({kernel.shape[1]},) ({kernel_name}'s last axis), got {bias.shape}."
            )


def check_chunk(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a Python int >= 1, got {value!r}.")
    return int(value)


def _vocab_chunk(vocab_chunk, local_columns: int, vocab_axis_name) -> int:
    if vocab_chunk is None:
        return local_columns
    vocab_chunk = check_chunk("vocab_chunk", vocab_chunk)
    if local_columns % vocab_chunk:
        divisors = [d for d in range(1, min(vocab_chunk, local_columns) + 1) if local_columns % d == 0]
        where = (
            f"each shard's vocabulary slice ({local_columns})"
            if vocab_axis_name
            else f"the vocabulary size ({local_columns})"
        )
        raise ValueError(
            f"vocab_chunk ({vocab_chunk}) must divide {where}; use e.g. vocab_chunk={divisors[-1]}, or pad "
            "the kernels' vocabulary axis (with -inf biases) to a multiple of it."
        )
    return vocab_chunk


def _num_shards(axis_name) -> int:
    if axis_name is None:
        return 1
    try:
        return int(jax.lax.axis_size(axis_name))
    except NameError:
        raise ValueError(
            f"vocab_axis_name={axis_name!r} names no mesh axis here: call the loss inside jax.shard_map "
            "over a mesh with that axis, or pass vocab_axis_name=None."
        ) from None


def objective(
    student_hidden,
    student_kernel,
    student_bias,
    teacher_kind,
    teacher_tok,
    teacher_const,
    labels,
    *,
    where,
    temperatures,
    student_swap,
    ce_weight,
    kd_weight,
    token_chunk,
    vocab_chunk,
    logit_soft_cap,
    stop_gradient_pseudo_teacher,
    vocab_axis_name,
    token_axis_name,
    divergence="forward_kl",
    beta=None,
    temperature_scaling=True,
    teacher_transform="swap",
    conditional_swap_alpha=None,
):
    """Validates, flattens and pads the tokens, runs the kernel and reduces over valid tokens."""
    check_hidden_and_kernel(
        "student_hidden", student_hidden, "student_kernel", student_kernel, "student_bias", student_bias
    )
    lead = student_hidden.shape[:-1]
    if not hasattr(labels, "dtype") or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(
            f"labels must be integer token ids of shape {lead}, got {getattr(labels, 'dtype', type(labels).__name__)}."
        )
    if labels.shape != lead:
        raise ValueError(f"labels must have shape {lead} (student_hidden.shape[:-1]), got {labels.shape}.")
    _checks.check_mask_array(where, lead)
    if not isinstance(student_swap, (bool, np.bool_)):
        raise TypeError(
            "student_swap must be a Python bool (it is static under jit); pass e.g. "
            f"student_swap=bool(epoch > gamma), got {type(student_swap).__name__}."
        )
    sg = _checks.check_static_bool("stop_gradient_pseudo_teacher", stop_gradient_pseudo_teacher)
    scaling = _checks.check_static_bool("temperature_scaling", temperature_scaling)
    temps = _checks.check_temperatures(temperatures) if teacher_kind != "none" else ()
    divergence, beta = _kernel_divergence(divergence, beta, teacher_kind)
    alpha = _check_transform(teacher_transform, conditional_swap_alpha, student_swap)
    token_chunk = check_chunk("token_chunk", token_chunk)
    if logit_soft_cap is not None:
        logit_soft_cap = _checks.check_static_number(
            "logit_soft_cap", logit_soft_cap, low=0.0, low_inclusive=False
        )
    local_columns = student_kernel.shape[1]
    vocab = local_columns * _num_shards(vocab_axis_name)
    if where is not None:
        where = where.astype(bool)
    _checks.check_labels(labels, _Shape(lead + (vocab,)), "the student's logits", where)
    cfg = _fused_chunks.Config(
        temps=temps,
        student_temps=temps if 1.0 in temps else temps + (1.0,),
        teacher_temps=temps
        + ((1.0,) if teacher_transform == "conditional_swap" and 1.0 not in temps else ()),
        scales=tuple(float(t) * float(t) if scaling else 1.0 for t in temps),
        divergence=divergence,
        beta=beta,
        transform=teacher_transform,
        alpha=alpha,
        student_swap=bool(student_swap),
        stop_gradient_pseudo_teacher=sg,
        token_chunk=0,
        vocab_chunk=_vocab_chunk(vocab_chunk, local_columns, vocab_axis_name),
        soft_cap=logit_soft_cap,
        teacher_kind=teacher_kind,
        vocab_axis_name=vocab_axis_name,
    )
    # Flatten the leading axes into one token axis and pad it to a multiple of the chunk.
    n = int(np.prod(lead, dtype=np.int64))
    chunk = max(1, min(token_chunk, n))
    padded = -(-n // chunk) * chunk
    cfg = _replace(cfg, token_chunk=chunk)

    def tokens(x):
        x = x.reshape((n,) + x.shape[len(lead) :])
        return jnp.pad(x, [(0, padded - n)] + [(0, 0)] * (x.ndim - 1)) if padded > n else x

    valid = tokens(jnp.ones(lead, bool) if where is None else where)
    y = jnp.where(valid, tokens(labels.astype(jnp.int32)), 0)
    tok = tuple(tokens(x) for x in teacher_tok)
    if teacher_kind == "topk":
        tok = tok + (y,)
    bias = jnp.zeros((local_columns,), student_kernel.dtype) if student_bias is None else student_bias
    ce, kd, t_fired, s_fired = _fused_chunks.per_token(
        tokens(student_hidden), student_kernel, bias, tok, teacher_const, y, valid, cfg
    )

    def total(x):
        x = jnp.sum(jnp.where(valid, x, 0.0))
        return x if token_axis_name is None else jax.lax.psum(x, token_axis_name)

    count = total(valid.astype(jnp.float32))
    denom = jnp.maximum(count, 1.0)
    ce_sum, kd_sum = total(ce), total(kd)
    loss = (ce_weight * ce_sum + kd_weight * kd_sum) / denom
    stop = jax.lax.stop_gradient
    metrics = {
        "loss": stop(loss),
        "ce": stop(ce_weight * ce_sum / denom),
        "kd": stop(kd_weight * kd_sum / denom),
        "ce_sum": stop(ce_sum),
        "kd_sum": stop(kd_sum),
        "valid_tokens": count,
        "teacher_swap_fraction": stop(total(t_fired) / denom),
        "student_swap_fraction": stop(total(s_fired) / denom),
    }
    return loss, metrics


def _kernel_divergence(divergence, beta, teacher_kind) -> tuple[str, float]:
    """The kernel's divergence for the user's ``(divergence, beta)``: JSD at β = 0 is the forward KL
    and at β = 1 the reverse KL (TRL's convention); a sparse teacher has no reverse KL."""
    if divergence not in _fused_chunks.DIVERGENCES:
        raise ValueError(
            f"divergence must be one of {', '.join(_fused_chunks.DIVERGENCES)}, got {divergence!r}."
        )
    if beta is not None and divergence != "jsd":
        raise ValueError(f"beta is JSD's mixing weight; divergence={divergence!r} has none: drop beta=.")
    beta = 0.5 if beta is None else _checks.check_static_number("beta", beta, low=0.0, high=1.0)
    if divergence == "jsd" and beta in (0.0, 1.0):
        divergence = "forward_kl" if beta == 0.0 else "reverse_kl"
    if teacher_kind == "topk" and divergence in ("reverse_kl", "symmetric_kl"):
        raise ValueError(
            f"divergence={divergence!r} needs the teacher's probability of every token, but a top-k teacher "
            "has none outside its k entries (log 0 = -inf); use forward_kl, jsd (0 <= beta < 1) or tvd, or "
            "pass the full teacher logits."
        )
    return divergence, beta


def _check_transform(teacher_transform, alpha, student_swap):
    """The conditional swap's α (None for the other transforms), after checking the transform."""
    if teacher_transform not in _fused_chunks.TRANSFORMS:
        raise ValueError(
            f"teacher_transform must be None, 'swap' or 'conditional_swap', got {teacher_transform!r}."
        )
    if student_swap and teacher_transform is None:
        raise ValueError(
            "student_swap=True adds SLD's pseudo-teacher term, which comes with a teacher swap: pass "
            "teacher_transform='swap' (or 'conditional_swap'), or student_swap=False."
        )
    if teacher_transform != "conditional_swap":
        if alpha is not None:
            raise ValueError(
                f"conditional_swap_alpha is the conditional swap's threshold; teacher_transform="
                f"{teacher_transform!r} has none: drop it, or pass teacher_transform='conditional_swap'."
            )
        return None
    if alpha is None:
        return 0.5
    return _checks.check_static_number(
        "conditional_swap_alpha", alpha, low=0.0, high=1.0, low_inclusive=False
    )


class _Shape:
    """A stand-in with only ``shape`` for the label check (no ``[N, V]`` array is ever built)."""

    def __init__(self, shape):
        self.shape = tuple(shape)


def _replace(cfg, **changes):
    return dataclasses.replace(cfg, **changes)
