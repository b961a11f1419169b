"""Methods by name: a plain table pointing at the loss library's objectives.

Every objective in :mod:`sld_jax.losses` is called the same way::

    loss, terms = objective(student_weak, student_strong, teacher_weak, teacher_strong, labels,
                            *, where=..., <hyper-parameters>)

(the strong pair is None for single-view methods, the teacher pair None without a teacher). A
:class:`Method` row says which library function a method uses, which of the step's inputs it needs,
and which ``config.loss`` fields become its keyword arguments. Nothing here computes or composes a
loss ("+ SLD" methods are library objectives too: :mod:`sld_jax.losses.plus_sld`); the trainer
adds only the logged diagnostics (how often each swap fires, teacher-student agreement). A new
method is one row of :data:`METHODS` (or one :func:`register` call).

>>> sorted(METHODS)[:3]
['dkd', 'dkd+sld', 'kd']
>>> get_method("slld")
Traceback (most recent call last):
...
ValueError: unknown method 'slld'; choose one of ... Did you mean 'sld'?
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from sld_jax import losses

#: ``(keyword, config.loss path)``: "x" is ``config.loss.x``; "dkd.*" spreads ``config.loss.dkd``;
#: "teacher_transform" resolves ``teacher_transform`` + ``teacher_transform_kwargs`` to a function.
HParams = tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True)
class Method:
    """One training method: a library objective and the step inputs it needs (hashable, static).

    Attributes:
      objective: a ``sld_jax.losses.*_objective`` function.
      uses_teacher: the step runs the frozen teacher and passes its logits.
      two_views: the step feeds a weak and a strong view (else the weak view only).
      gamma_gated: the objective takes the γ gate as ``student_swap=`` (a static bool); such a
        method compiles two step variants, chosen on the host by ``epoch > gamma``.
      takes_epoch: the objective gets the (traced, float32, 1-based) ``epoch=`` (DKD's warm-up).
      uses_features: the objective gets ``student_embeddings=`` / ``teacher_embeddings=``: tuples
        of the models' pooled pre-logit features ``[B, D]``, one per view.
      hparams: the keyword arguments read from ``config.loss``.
    """

    objective: Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
    uses_teacher: bool = True
    two_views: bool = False
    gamma_gated: bool = False
    takes_epoch: bool = False
    uses_features: bool = False
    hparams: HParams = ()


_TRANSFORM = (("teacher_transform", "teacher_transform"),)
_WEIGHTS = (("ce_weight", "ce_weight"), ("kd_weight", "kd_weight"))
_SLD = (
    _WEIGHTS
    + (("temperatures", "temperatures"), ("stop_gradient_pseudo_teacher", "stop_gradient_pseudo_teacher"))
    + _TRANSFORM
)
_DKD = (("ce_weight", "ce_weight"), ("", "dkd.*"))
_MLKD = _WEIGHTS + (("", "mlkd.*"),)
_RKD = (("", "rkd.*"),)
# The pseudo-teacher term of "+ SLD" baselines: SLD's weight, temperatures and detaching.
_PSEUDO_TEACHER = (
    ("pseudo_teacher_weight", "kd_weight"),
    ("pseudo_teacher_temperatures", "temperatures"),
    ("stop_gradient_pseudo_teacher", "stop_gradient_pseudo_teacher"),
)

METHODS: dict[str, Method] = {
    "vanilla": Method(losses.ce_objective, uses_teacher=False, hparams=(("ce_weight", "ce_weight"),)),
    "kd": Method(losses.kd_objective, hparams=_WEIGHTS + (("temperature", "kd_temperature"),) + _TRANSFORM),
    "sld": Method(losses.sld_objective, two_views=True, gamma_gated=True, hparams=_SLD),
    "dkd": Method(losses.dkd_objective, takes_epoch=True, hparams=_DKD),
    "mlkd": Method(losses.mlkd_objective, two_views=True, hparams=_MLKD),
    "dkd+sld": Method(
        losses.dkd_sld_objective,
        two_views=True,
        gamma_gated=True,
        takes_epoch=True,
        hparams=_DKD + _TRANSFORM + _PSEUDO_TEACHER,
    ),
    "mlkd+sld": Method(
        losses.mlkd_sld_objective,
        two_views=True,
        gamma_gated=True,
        hparams=_MLKD + _TRANSFORM + _PSEUDO_TEACHER,
    ),
    "rkd": Method(losses.rkd_objective, uses_features=True, hparams=(("ce_weight", "ce_weight"),) + _RKD),
    "rkd+sld": Method(
        losses.rkd_sld_objective,
        two_views=True,
        gamma_gated=True,
        uses_features=True,
        hparams=_SLD + _RKD,
    ),
}


def get_method(name: str) -> Method:
    """The :class:`Method` called ``name``.

    Raises:
      ValueError: for an unknown name, naming the nearest valid one.
    """
    if name not in METHODS:
        near = difflib.get_close_matches(name, METHODS, n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}.{hint}")
    return METHODS[name]


def register(name: str, method: Method) -> Method:
    """Adds ``method`` to :data:`METHODS` as ``name`` (then ``--config.method=name`` trains it).

    Raises:
      ValueError: ``name`` is taken (pass another name; the built-in rows are never replaced).
    """
    if name in METHODS:
        raise ValueError(f"method {name!r} exists already; register the new one under another name.")
    if not isinstance(method, Method):
        raise TypeError(f"register needs a Method row, got {type(method).__name__}.")
    METHODS[name] = method
    return method


def teacher_transform(loss_cfg: ml_collections.ConfigDict):
    """``config.loss.teacher_transform`` (+ ``teacher_transform_kwargs``) as a function, or None."""
    name = loss_cfg.get("teacher_transform", "swap")
    kwargs = dict(loss_cfg.get("teacher_transform_kwargs", None) or {})
    if name in (None, "none", ""):
        return None
    if name == "swap" and not kwargs:
        return losses.swap_logits
    return losses.get_teacher_transform(name, **kwargs)


def _static(value: Any) -> Any:
    """Config values as hashable Python values (sequences become tuples)."""
    if isinstance(value, (list, tuple)):
        return tuple(_static(v) for v in value)
    return value


def objective_kwargs(method: Method, loss_cfg: ml_collections.ConfigDict) -> tuple[tuple[str, Any], ...]:
    """The method's keyword arguments from ``config.loss``, as a hashable tuple of pairs."""
    kwargs: dict[str, Any] = {}
    for keyword, path in method.hparams:
        if path == "teacher_transform":
            kwargs[keyword] = teacher_transform(loss_cfg)
        elif path.endswith(".*"):
            kwargs.update({k: _static(v) for k, v in (loss_cfg.get(path[:-2]) or {}).items()})
        else:
            kwargs[keyword] = _static(loss_cfg[path])
    return tuple(sorted(kwargs.items()))


def apply(
    method: Method,
    kwargs: tuple[tuple[str, Any], ...],
    student_logits: Sequence[jax.Array],
    teacher_logits: Sequence[jax.Array] | None,
    labels: jax.Array,
    mask: jax.Array,
    *,
    epoch: jax.Array,
    student_swap: bool,
    student_embeddings: Sequence[jax.Array] = (),
    teacher_embeddings: Sequence[jax.Array] = (),
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Calls the method's objective on one device-local batch; adds the diagnostics to its terms.

    Args:
      method: the :class:`Method`.
      kwargs: :func:`objective_kwargs` of the run's config.
      student_logits: one ``[B, C]`` array per view (weak, then strong for two-view methods).
      teacher_logits: the same for the teacher, or None without a teacher.
      labels: ``[B]`` int32; mask: ``[B]`` bool (False for padding), the objective's ``where``.
      epoch: float32 scalar, 1-based (traced).
      student_swap: the γ gate's static value (passed to ``gamma_gated`` objectives).
      student_embeddings, teacher_embeddings: ``[B, D]`` pooled features per view
        (``uses_features`` methods).

    Returns:
      ``(loss, terms)``: the scalar loss and float32 scalar terms (means over the real examples).
    """
    sw, ss = student_logits[0], (student_logits[1] if len(student_logits) > 1 else None)
    tw = ts = None
    if teacher_logits is not None:
        tw, ts = teacher_logits[0], (teacher_logits[1] if len(teacher_logits) > 1 else None)
    call = dict(kwargs, where=mask)
    if method.takes_epoch:
        call["epoch"] = epoch
    if method.gamma_gated:
        call["student_swap"] = student_swap
    if method.uses_features:
        call.update(
            student_embeddings=tuple(student_embeddings), teacher_embeddings=tuple(teacher_embeddings)
        )
    loss, terms = method.objective(sw, ss, tw, ts, labels, **call)
    terms = {k: v for k, v in terms.items() if jnp.ndim(v) == 0}
    for name, value in diagnostics(student_logits, teacher_logits, labels, mask).items():
        terms.setdefault(name, value)  # an objective's own figures (SLD's swap rates) are kept
    return loss, terms


def diagnostics(student_logits, teacher_logits, labels, mask) -> dict[str, jax.Array]:
    """How often each swap fires and teacher-student top-1 agreement, averaged over the views."""

    def mean_over_views(values):
        return jax.lax.stop_gradient(
            jnp.mean(jnp.stack([losses.masked_mean(v.astype(jnp.float32), mask) for v in values]))
        )

    terms = {"student_swap_fraction": mean_over_views([losses.swap_fired(s, labels) for s in student_logits])}
    if teacher_logits is not None:
        terms["teacher_swap_fraction"] = mean_over_views(
            [losses.swap_fired(t, labels) for t in teacher_logits]
        )
        terms["teacher_student_agreement"] = mean_over_views(
            [jnp.argmax(s, -1) == jnp.argmax(t, -1) for s, t in zip(student_logits, teacher_logits)]
        )
    return terms
