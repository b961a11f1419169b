"""Methods by name: the training objective of each (``vanilla``, ``kd``, ``sld``, ``dkd``, ...).

An objective maps the student's and the frozen teacher's logits of one (device-local) batch to a
scalar loss and a dict of float32 scalar terms to log. It knows nothing of models or data: the
train step calls it with logits.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from sld_jax import losses

METHODS = ("vanilla", "kd", "sld", "dkd", "mlkd", "dkd+sld", "mlkd+sld")
#: Methods that train on a weak and a strong view (the SLD/MLKD recipe); the others use the weak view.
TWO_VIEW_METHODS = ("sld", "mlkd", "dkd+sld", "mlkd+sld")
#: Methods whose objective has the γ-gated student swap (two compiled step variants).
STUDENT_SWAP_METHODS = ("sld", "dkd+sld", "mlkd+sld")


@dataclasses.dataclass(frozen=True)
class Objective:
    """A method's objective and its static properties.

    Attributes:
      name: the method name.
      uses_teacher: whether the teacher is needed (False for ``vanilla``).
      two_views: whether the step feeds a weak and a strong view.
      has_student_swap: whether ``epoch > gamma`` switches a second step variant on.
      fn: ``fn(student_logits, teacher_logits, labels, mask, *, epoch, student_swap)`` ->
        ``(loss, terms)``. ``student_logits``/``teacher_logits`` are tuples of ``[B, C]`` arrays,
        one per view (teacher_logits is None without a teacher); ``epoch`` is a float32 scalar
        (traced), ``student_swap`` a static bool.
    """

    name: str
    uses_teacher: bool
    two_views: bool
    has_student_swap: bool
    fn: Callable[..., tuple[jax.Array, dict[str, jax.Array]]]


def _diagnostics(student_logits, teacher_logits, labels, mask) -> dict[str, jax.Array]:
    """SLD diagnostics: how often each swap fires and teacher–student top-1 agreement."""
    terms = {
        "student_swap_fraction": jnp.mean(jnp.stack([
            losses.masked_mean(losses.swap_fired(s, labels).astype(jnp.float32), mask)
            for s in student_logits])),
    }
    if teacher_logits is not None:
        terms["teacher_swap_fraction"] = jnp.mean(jnp.stack([
            losses.masked_mean(losses.swap_fired(t, labels).astype(jnp.float32), mask)
            for t in teacher_logits]))
        terms["teacher_student_agreement"] = jnp.mean(jnp.stack([
            losses.masked_mean((jnp.argmax(s, -1) == jnp.argmax(t, -1)).astype(jnp.float32), mask)
            for s, t in zip(student_logits, teacher_logits)]))
    return terms


def _teacher_transform(loss_cfg: ml_collections.ConfigDict):
    name = loss_cfg.get("teacher_transform", "swap")
    kwargs = dict(loss_cfg.get("teacher_transform_kwargs", {}) or {})
    if name in (None, "none", ""):
        return None
    if name == "swap" and not kwargs:
        return losses.swap_logits
    if not hasattr(losses, "get_teacher_transform"):
        raise ValueError(f"teacher_transform {name!r} is not available in this version of sld_jax.losses.")
    return losses.get_teacher_transform(name, **kwargs)


def get_objective(method: str, loss_cfg: ml_collections.ConfigDict) -> Objective:
    """Builds the objective of ``method`` from the ``config.loss`` section.

    Raises:
      ValueError: for an unknown method, naming the nearest valid one.
    """
    if method not in METHODS:
        near = difflib.get_close_matches(method, METHODS, n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.{hint}")
    ce_w = float(loss_cfg.get("ce_weight", 1.0))
    kd_w = float(loss_cfg.get("kd_weight", 0.0))
    temps = tuple(float(t) for t in loss_cfg.get("temperatures", losses.DEFAULT_TEMPERATURES))
    gamma = int(loss_cfg.get("gamma", 150))
    del gamma  # the gate is decided on the host (see train.loop); kept in config for reference
    two_views = method in TWO_VIEW_METHODS
    transform = _teacher_transform(loss_cfg) if method != "vanilla" else None

    def ce_terms(student_logits, labels, mask):
        return sum(losses.masked_mean(losses.cross_entropy(s, labels), mask) for s in student_logits)

    if method == "vanilla":
        def fn(student_logits, teacher_logits, labels, mask, *, epoch, student_swap):
            del teacher_logits, epoch, student_swap
            ce = ce_w * ce_terms(student_logits, labels, mask)
            return ce, {"ce": ce, "loss": ce}
        return Objective(method, False, False, False, fn)

    if method == "kd":
        temperature = float(loss_cfg.get("kd_temperature", 4.0))

        def fn(student_logits, teacher_logits, labels, mask, *, epoch, student_swap):
            del epoch, student_swap
            ce = ce_w * ce_terms(student_logits, labels, mask)
            kd = 0.0
            for s, t in zip(student_logits, teacher_logits):
                t = t if transform is None else transform(t, labels)
                kd = kd + losses.masked_mean(losses.kd_loss(s, t, temperature=temperature), mask)
            kd = kd_w * kd
            loss = ce + kd
            return loss, {"ce": ce, "kd": kd, "loss": loss}
        return Objective(method, True, False, False, fn)

    if method == "sld":
        stop_pt = bool(loss_cfg.get("stop_gradient_pseudo_teacher", False))

        def fn(student_logits, teacher_logits, labels, mask, *, epoch, student_swap):
            del epoch
            sw, ss = student_logits
            tw, ts = teacher_logits
            loss, terms = losses.sld_objective(
                sw, ss, tw, ts, labels, student_swap=student_swap, ce_weight=ce_w, kd_weight=kd_w,
                temperatures=temps, mask=mask, stop_gradient_pseudo_teacher=stop_pt,
                teacher_transform=transform)
            return loss, {k: terms[k] for k in ("ce", "kd", "loss")}
        return Objective(method, True, True, True, fn)

    return _baseline_objective(method, loss_cfg, ce_w, kd_w, temps, transform, two_views)


def _baseline_objective(method, loss_cfg, ce_w, kd_w, temps, transform, two_views) -> Objective:
    """DKD / MLKD and their compositions with SLD, from the loss library's baselines."""
    base, _, plus = method.partition("+")
    with_sld = plus == "sld"
    hyper: dict[str, Any] = dict(loss_cfg.get(base, {}) or {})
    baseline = getattr(losses, f"{base}_objective", None)
    if baseline is None:
        raise ValueError(f"method {method!r} needs losses.{base}_objective, which this version lacks.")
    stop_pt = bool(loss_cfg.get("stop_gradient_pseudo_teacher", False))

    def fn(student_logits, teacher_logits, labels, mask, *, epoch, student_swap):
        if two_views:
            sw, ss = student_logits
            tw, ts = teacher_logits
        else:  # single view: the baselines take None for the strong view
            (sw,), (tw,) = student_logits, teacher_logits
            ss, ts = None, None
        kwargs = dict(hyper, mask=mask, ce_weight=ce_w)
        if base == "dkd":
            kwargs["epoch"] = epoch
        if with_sld:
            kwargs["teacher_transform"] = transform
        loss, terms = baseline(sw, ss, tw, ts, labels, **kwargs)
        if with_sld and student_swap:
            pseudo = 0.0
            for s in (sw, ss) if two_views else (sw,):
                # KL(sg(s) || s) is exactly 0 with a zero gradient: only the pseudo-teacher term remains.
                pseudo = pseudo + losses.masked_mean(
                    losses.sld_loss(s, s, labels, temperatures=temps, student_swap=True,
                                    stop_gradient_pseudo_teacher=stop_pt, teacher_transform=None),
                    mask)
            pseudo = kd_w * pseudo
            loss = loss + pseudo
            terms = dict(terms, pseudo_teacher=pseudo, loss=loss)
        return loss, {k: v for k, v in terms.items() if jnp.ndim(v) == 0}

    return Objective(method, True, two_views, with_sld, fn)


def objective_with_diagnostics(objective: Objective):
    """Wraps ``objective.fn`` so its terms also carry the SLD diagnostics."""

    def fn(student_logits, teacher_logits, labels, mask, *, epoch, student_swap):
        loss, terms = objective.fn(student_logits, teacher_logits, labels, mask,
                                   epoch=epoch, student_swap=student_swap)
        terms = dict(terms)
        terms.update(_diagnostics(student_logits, teacher_logits, labels, mask))
        return loss, terms

    return fn
