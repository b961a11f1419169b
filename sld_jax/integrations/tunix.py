"""A tunix distillation strategy with the fused-linear distillation loss (no ``[tokens, vocab]`` logits).

:class:`FusedDistillStrategy` plugs :func:`sld_jax.losses.fused_linear_distill_loss` into Google's
tunix (``tunix.distillation.DistillationTrainer``, tested with google-tunix 0.1.7): any divergence
(forward / reverse / symmetric KL, JSD, TVD), SLD's teacher swap and its γ-gated pseudo-teacher
term, at a peak temporary memory of ``O(token_chunk × V)`` instead of ``O(tokens × V)``. Install
it with ``pip install 'sld_jax[tunix]'``.

The forward functions return the models' final hidden states and output projections instead of
logits, and ``labels_fn`` returns integer next-token ids and a mask (tunix's ``LogitStrategy``
takes logits and one-hot labels)::

    import optax
    from tunix.distillation import DistillationTrainer, TrainingConfig

    from sld_jax.integrations.tunix import FusedDistillStrategy

    def forward_fn(model, input_tokens, input_mask):   # called as forward_fn(model, **inputs)
        hidden = model.backbone(input_tokens)           # [B, T, H], after the final norm
        return {"hidden": hidden[:, :-1], "kernel": model.lm_head.kernel[...]}  # [B, T-1, H], [H, V]

    def labels_fn(input_tokens, input_mask):            # called as labels_fn(**inputs)
        return input_tokens[:, 1:], input_mask[:, 1:]   # [B, T-1] ids and mask

    strategy = FusedDistillStrategy.sld(forward_fn, forward_fn, labels_fn, gamma_steps=2_000)
    trainer = DistillationTrainer(student, teacher, strategy, optax.adamw(1e-4),
                                  TrainingConfig(eval_every_n_steps=500, max_steps=10_000))
    trainer.train(train_ds, eval_ds)

A model with tied embeddings returns ``"kernel": model.embedder.embedding[...].T``.

Without tunix this module still imports (so that tools that import every module of the package,
such as pytest's ``--doctest-modules``, work), but ``from sld_jax.integrations.tunix import
FusedDistillStrategy`` raises an ImportError naming the install command.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

from sld_jax.losses.fused_linear import (
    fused_linear_cross_entropy,
    fused_linear_distill_loss,
    fused_linear_distill_loss_from_teacher_logits,
)
from sld_jax.losses.sld import DEFAULT_TEMPERATURES

INSTALL_HINT = (
    "sld_jax.integrations.tunix needs Google's tunix library: pip install 'sld_jax[tunix]' "
    "(or pip install 'google-tunix>=0.1.7')."
)

try:
    from tunix.distillation.strategies import BaseStrategy
except ModuleNotFoundError as error:
    if error.name is None or (error.name != "tunix" and not error.name.startswith("tunix.")):
        raise  # tunix is installed but one of its own dependencies is not: its message says which
    _TUNIX_MISSING: ModuleNotFoundError | None = error
    BaseStrategy = object  # lets the class below be defined; it is removed at the end of the module
else:
    _TUNIX_MISSING = None

__all__ = ["FusedDistillStrategy"]

#: The key under which :meth:`FusedDistillStrategy.get_teacher_outputs` passes the step counter.
STEP_KEY = "step"
_LINEAR_KEYS = ("hidden", "kernel", "bias")


def _linear_output(who: str, output: Any) -> dict:
    """``output`` of a forward function as ``{"hidden", "kernel"[, "bias"]}``, checked."""
    if not isinstance(output, Mapping):
        raise TypeError(
            f"the {who} forward function must return a dict with 'hidden' [..., H] and 'kernel' [H, V] "
            f"(and optionally 'bias' [V]), got {type(output).__name__}."
        )
    missing = [key for key in ("hidden", "kernel") if key not in output]
    unknown = sorted(set(output) - set(_LINEAR_KEYS))
    if missing or unknown:
        raise ValueError(
            f"the {who} forward function must return a dict with the keys 'hidden', 'kernel' and "
            f"optionally 'bias'; missing {missing}, unexpected {unknown}."
        )
    return {key: output[key] for key in _LINEAR_KEYS if output.get(key) is not None}


def _teacher_output(output: Any, *, with_step: bool) -> dict:
    """The teacher's output, ``{"hidden", "kernel"[, "bias"]}`` or ``{"logits"}``, checked."""
    if isinstance(output, Mapping):
        output = dict(output)
        if with_step:
            output.pop(STEP_KEY, None)
        elif STEP_KEY in output:
            raise ValueError(
                f"the teacher forward function's output may not have a {STEP_KEY!r} key: the strategy "
                "adds its step counter under that key."
            )
        if "logits" in output:
            if len(output) != 1:
                raise ValueError(
                    "the teacher forward function must return either {'logits': [..., V]} or "
                    f"{{'hidden', 'kernel'[, 'bias']}}, got the keys {sorted(output)}."
                )
            return output
    return _linear_output("teacher", output)


def _labels_and_mask(labels: Any, hidden: jax.Array) -> tuple[jax.Array, jax.Array | None]:
    """``labels_fn``'s result as ``(labels, where)``: an integer array, or a pair of them."""
    if isinstance(labels, (tuple, list)):
        if len(labels) != 2:
            raise ValueError(
                f"labels_fn must return labels [...] or (labels, where), got a sequence of {len(labels)}."
            )
        labels, where = labels
    else:
        where = None
    dtype = getattr(labels, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(
            f"labels_fn must return integer token ids of shape {hidden.shape[:-1]} (and optionally a mask "
            f"of that shape), not one-hot targets; got {dtype if dtype is not None else type(labels).__name__}."
        )
    return labels, where


def _check_start(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a Python int, got {type(value).__name__}.")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}.")
    return value


class FusedDistillStrategy(BaseStrategy):
    """A tunix ``BaseStrategy`` whose loss is :func:`~sld_jax.losses.fused_linear_distill_loss`.

    ``loss = ce_weight · mean CE + kd_weight · mean Σ_T c_T D_T(p_T, q_T)`` over the valid tokens,
    computed from the hidden states and output kernels a chunk of ``token_chunk`` tokens at a time,
    so that neither model's ``[tokens, V]`` logits are ever built (the teacher's are, when its
    forward function returns ``{"logits"}``).

    Contracts (``inputs`` is the dict the trainer builds from a batch; by default
    ``{"input_tokens": [B, T], "input_mask": [B, T]}``):

    * ``student_forward_fn(model, **inputs)`` returns ``{"hidden": [..., Hs], "kernel": [Hs, V]}``
      and optionally ``"bias": [V]``: the final hidden states (float32 or bfloat16, after the final
      norm; the positions that predict ``labels``) and the output projection of the same model.
      It runs inside the differentiated train step, so the gradients reach the kernel (and bias)
      as well as every parameter behind the hidden states.
    * ``teacher_forward_fn(model, **inputs)`` returns the same for the teacher (``Ht`` may differ
      from ``Hs``; ``V`` may not), or ``{"logits": [..., V]}`` (then the teacher's logits are built
      once per batch outside the train step, and passed in as data). The teacher is never
      differentiated. The key ``"step"`` is reserved (see below).
    * ``labels_fn(**inputs)`` returns integer token ids ``[...]`` (the leading shape of
      ``"hidden"``), or a pair ``(labels, where)`` with ``where`` a ``[...]`` mask (bool, or
      integer / float with nonzero = valid) of the tokens that count; the loss is the mean over them.

    The γ gate: with ``gamma_steps = G``, SLD's pseudo-teacher term (``student_swap``) is off for
    the first ``G`` training micro-batches and on from micro-batch ``G + 1`` (counted from 1:
    ``student_swap_active(k, gamma=G)`` for micro-batch ``k``); ``G = 0`` turns it on throughout
    and None (the default) off throughout. tunix gives a strategy no step count, so the strategy
    keeps one: :meth:`get_teacher_outputs`, which the trainer calls once per training micro-batch
    on the host (outside the jitted step, and never for evaluation batches), adds the number of
    micro-batches trained so far to the teacher's output as ``"step"`` (an int32 scalar) and
    advances it. The jitted step reads it as data, so the gate switches without a retrace: the two
    variants of the loss are the two branches of one ``jax.lax.cond``. Its cost: both variants
    (forward and backward) are compiled, about twice the loss's compile time; each step runs one.
    With ``gradient_accumulation_steps = k`` the counter counts micro-batches (pass ``G · k`` for
    G optimizer steps). The counter is the strategy's own state, not the trainer's: a run resumed
    from a checkpoint restarts it at ``start_step``: after building the trainer, set
    ``strategy.step = trainer.iter_steps`` (the micro-batches it restored).

    The losses' options are keywords, passed on unchanged (see
    :func:`~sld_jax.losses.fused_linear_distill_loss`); they are checked when the strategy is built.
    ``where``, ``student_bias``, ``teacher_bias`` and ``student_swap`` come from the contracts and
    the γ gate above. The vocabulary- and token-sharded forms (``vocab_axis_name``,
    ``token_axis_name``) are for ``jax.shard_map`` and are not offered here: tunix shards with
    ``jit`` and the tensors' shardings.

    :meth:`compute_loss` returns ``(loss, metrics)``: the loss's metrics (``loss``, ``ce``, ``kd``,
    ``ce_sum``, ``kd_sum``, ``valid_tokens``, ``teacher_swap_fraction``,
    ``student_swap_fraction``) plus ``step`` and ``pseudo_teacher`` (1.0 when the term was on).
    tunix 0.1.7's trainer logs only the loss and drops these (override its
    ``_post_process_train_step(aux)`` to keep them). :meth:`compute_eval_loss` is the student's mean
    cross-entropy (:func:`~sld_jax.losses.fused_linear_cross_entropy`), with metrics ``loss``,
    ``ce_sum``, ``valid_tokens`` and ``top1``.

    Args:
      student_forward_fn, teacher_forward_fn, labels_fn: as above (tunix wraps each in ``nnx.jit``).
      gamma_steps: None, or an int >= 0: the training micro-batches before the pseudo-teacher term
        turns on. Needs ``teacher_transform="swap"`` or ``"conditional_swap"``.
      start_step: the step counter's initial value (micro-batches already trained), default 0.
      divergence, beta, temperatures, temperature_scaling, teacher_transform,
      conditional_swap_alpha, ce_weight, kd_weight, token_chunk, vocab_chunk, logit_soft_cap,
      stop_gradient_pseudo_teacher: as in :func:`~sld_jax.losses.fused_linear_distill_loss` (with its
        defaults: the forward KL alone at T = 1). ``token_chunk``, ``vocab_chunk`` and
        ``logit_soft_cap`` apply to the evaluation loss too.

    Raises:
      TypeError, ValueError: on an invalid option, ``gamma_steps`` or ``start_step``.
    """

    def __init__(
        self,
        student_forward_fn: Callable[..., Mapping[str, jax.Array]],
        teacher_forward_fn: Callable[..., Mapping[str, jax.Array]],
        labels_fn: Callable[..., jax.Array | tuple[jax.Array, jax.Array]],
        *,
        gamma_steps: int | None = None,
        start_step: int = 0,
        divergence: str = "forward_kl",
        beta: float | None = None,
        temperatures: Sequence[float] = (1.0,),
        temperature_scaling: bool = True,
        teacher_transform: str | None = None,
        conditional_swap_alpha: float | None = None,
        ce_weight: float = 0.0,
        kd_weight: float = 1.0,
        token_chunk: int = 1024,
        vocab_chunk: int | None = None,
        logit_soft_cap: float | None = None,
        stop_gradient_pseudo_teacher: bool = False,
    ):
        if gamma_steps is not None:
            _check_start("gamma_steps", gamma_steps)
            if teacher_transform is None:
                raise ValueError(
                    "gamma_steps turns on SLD's pseudo-teacher term, which comes with a teacher swap: pass "
                    "teacher_transform='swap' (or 'conditional_swap'), or gamma_steps=None."
                )
        self._options = dict(
            divergence=divergence,
            beta=beta,
            temperatures=tuple(temperatures),
            temperature_scaling=temperature_scaling,
            teacher_transform=teacher_transform,
            conditional_swap_alpha=conditional_swap_alpha,
            ce_weight=ce_weight,
            kd_weight=kd_weight,
            token_chunk=token_chunk,
            vocab_chunk=vocab_chunk,
            logit_soft_cap=logit_soft_cap,
            stop_gradient_pseudo_teacher=stop_gradient_pseudo_teacher,
        )
        self._eval_options = dict(
            token_chunk=token_chunk, vocab_chunk=vocab_chunk, logit_soft_cap=logit_soft_cap
        )
        self._check_options((False,) if gamma_steps is None else (False, True))
        self.gamma_steps = gamma_steps
        self._step = _check_start("start_step", start_step)
        super().__init__(student_forward_fn, teacher_forward_fn, labels_fn)

    @classmethod
    def sld(
        cls,
        student_forward_fn: Callable[..., Mapping[str, jax.Array]],
        teacher_forward_fn: Callable[..., Mapping[str, jax.Array]],
        labels_fn: Callable[..., jax.Array | tuple[jax.Array, jax.Array]],
        **options: Any,
    ) -> FusedDistillStrategy:
        """The strategy with SLD's settings (those of :func:`~sld_jax.losses.fused_linear_sld_loss`):
        forward KL at T = 1..6 with T² scaling, the teacher swap, ``ce_weight=0.1``,
        ``kd_weight=0.9``; ``options`` (e.g. ``gamma_steps=``) are the constructor's keywords and
        override these."""
        settings = dict(
            divergence="forward_kl",
            temperatures=DEFAULT_TEMPERATURES,
            temperature_scaling=True,
            teacher_transform="swap",
            ce_weight=0.1,
            kd_weight=0.9,
        )
        return cls(student_forward_fn, teacher_forward_fn, labels_fn, **{**settings, **options})

    @property
    def step(self) -> int:
        """Training micro-batches seen so far (the γ gate's counter); settable, e.g. on a resume."""
        return self._step

    @step.setter
    def step(self, value: int) -> None:
        self._step = _check_start("step", value)

    def _check_options(self, student_swaps: tuple[bool, ...]) -> None:
        """Raises now, not at the first train step, on an option the loss rejects (traced on shapes only)."""
        vocab = self._options["vocab_chunk"] if isinstance(self._options["vocab_chunk"], int) else 2
        hidden = jax.ShapeDtypeStruct((1, 2), jnp.float32)
        kernel = jax.ShapeDtypeStruct((2, vocab), jnp.float32)
        labels = jax.ShapeDtypeStruct((1,), jnp.int32)
        for student_swap in student_swaps:

            def loss(h, k, y, student_swap=student_swap):
                return fused_linear_distill_loss(h, k, h, k, y, student_swap=student_swap, **self._options)

            jax.eval_shape(loss, hidden, kernel, labels)

    def get_teacher_outputs(self, teacher_model: Any, inputs: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """The teacher's output (``stop_gradient``-ed) plus ``"step"``, the micro-batches trained so far
        (an int32 scalar); advances the counter. The trainer calls it once per training micro-batch,
        on the host."""
        output = _teacher_output(super().get_teacher_outputs(teacher_model, inputs), with_step=False)
        output[STEP_KEY] = jnp.asarray(self._step, jnp.int32)
        self._step += 1
        return output

    def _loss(self, student, teacher, labels, where, *, student_swap):
        options = dict(
            where=where, student_bias=student.get("bias"), student_swap=student_swap, **self._options
        )
        if "logits" in teacher:
            return fused_linear_distill_loss_from_teacher_logits(
                student["hidden"], student["kernel"], teacher["logits"], labels, **options
            )
        return fused_linear_distill_loss(
            student["hidden"],
            student["kernel"],
            teacher["hidden"],
            teacher["kernel"],
            labels,
            teacher_bias=teacher.get("bias"),
            **options,
        )

    def compute_loss(
        self, student_output: Mapping[str, jax.Array], teacher_output: Mapping[str, jax.Array], labels: Any
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The distillation loss and its metrics (see the class docstring); ``teacher_output`` is
        :meth:`get_teacher_outputs`'s."""
        student = _linear_output("student", student_output)
        teacher = _teacher_output(teacher_output, with_step=True)
        labels, where = _labels_and_mask(labels, student["hidden"])
        if self.gamma_steps is None or self.gamma_steps == 0:
            student_swap = self.gamma_steps == 0
            loss, metrics = self._loss(student, teacher, labels, where, student_swap=student_swap)
            pseudo_teacher = jnp.float32(student_swap)
        else:
            if STEP_KEY not in teacher_output:
                raise ValueError(
                    f"teacher_output has no {STEP_KEY!r}: with gamma_steps, compute_loss needs the output of "
                    "FusedDistillStrategy.get_teacher_outputs, which adds the step counter."
                )
            on = jnp.asarray(teacher_output[STEP_KEY]) >= self.gamma_steps
            loss, metrics = jax.lax.cond(
                on,
                lambda *args: self._loss(*args, student_swap=True),
                lambda *args: self._loss(*args, student_swap=False),
                student,
                teacher,
                labels,
                where,
            )
            pseudo_teacher = on.astype(jnp.float32)
        metrics = dict(metrics, pseudo_teacher=pseudo_teacher)
        if STEP_KEY in teacher_output:
            metrics[STEP_KEY] = jnp.asarray(teacher_output[STEP_KEY], jnp.int32)
        return loss, metrics

    def compute_eval_loss(
        self, student_output: Mapping[str, jax.Array], labels: Any
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The student's mean cross-entropy over the valid tokens (nats), and its metrics."""
        student = _linear_output("student", student_output)
        labels, where = _labels_and_mask(labels, student["hidden"])
        return fused_linear_cross_entropy(
            student["hidden"],
            student["kernel"],
            labels,
            where=where,
            bias=student.get("bias"),
            **self._eval_options,
        )


if _TUNIX_MISSING is not None:
    # Without tunix the module imports (pytest's --doctest-modules imports every module of the
    # package), and asking for the strategy raises the install hint.
    del FusedDistillStrategy, BaseStrategy

    def __getattr__(name: str) -> Any:
        if name in __all__:
            raise ImportError(INSTALL_HINT) from _TUNIX_MISSING
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
