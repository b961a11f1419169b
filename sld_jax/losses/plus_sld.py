"""SLD added to a baseline: "DKD + SLD" and "MLKD + SLD" as library objectives.

"+ SLD" is the baseline's own objective with the teacher swapped (``teacher_transform``, default
:func:`~sld_jax.losses.swap_logits`) plus, once the γ gate opens (``student_swap=True``, decided on
the host with :func:`~sld_jax.losses.student_swap_active`), SLD's pseudo-teacher term on every
view:

.. math:: L = L_{\\mathrm{base}}(s, g(t)) + w_{pt} \\sum_v \\overline{\\mathrm{PT}}(s_v),
   \\quad \\mathrm{PT}(s) = \\sum_T T^2\\,\\mathrm{KL}(\\sigma(\\mathrm{swap}(s)/T) \\,\\|\\, \\sigma(s/T))

with batch means over the real examples (:func:`~sld_jax.losses.pseudo_teacher_loss`). The
pseudo-teacher's weight and temperatures are SLD's (0.9, T = 1..6), named ``pseudo_teacher_*`` so
that they never collide with the baseline's own ``temperatures`` or ``kd_weight``. RKD + SLD, which
adds RKD to the SLD objective instead, is :func:`~sld_jax.losses.rkd_sld_objective`.
"""

from __future__ import annotations

from typing import Sequence

import jax

from sld_jax.losses import _checks, _two_views
from sld_jax.losses.divergences import LogitTransform, masked_mean
from sld_jax.losses.dkd import dkd_objective
from sld_jax.losses.mlkd import MLKD_TEMPERATURES, mlkd_objective
from sld_jax.losses.sld import DEFAULT_TEMPERATURES, pseudo_teacher_loss
from sld_jax.losses.swap import swap_logits

#: SLD's pseudo-teacher weight (its KD weight) in the "+ SLD" objectives.
PSEUDO_TEACHER_WEIGHT = 0.9


def add_pseudo_teacher(
    loss: jax.Array,
    terms: dict[str, jax.Array],
    students: Sequence[jax.Array | None],
    labels: jax.Array,
    *,
    student_swap: bool,
    weight: float,
    temperatures: Sequence[float],
    stop_gradient_pseudo_teacher: bool,
    where: jax.Array | None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``(loss, terms)`` of an objective with SLD's pseudo-teacher term added when ``student_swap``.

    Args:
      loss, terms: the baseline objective's result.
      students: the student logits ``[B, C]`` of each view (a None view is skipped).
      labels: ``[B]`` integer labels.
      student_swap: the static γ gate; False returns ``(loss, terms)`` unchanged.
      weight: the term's weight; temperatures, stop_gradient_pseudo_teacher: see
        :func:`~sld_jax.losses.pseudo_teacher_loss`.
      where: ``[B]`` bool or None; masked rows are zeroed before the term (a NaN there is harmless).

    Returns:
      ``(loss + term, terms)`` with ``pseudo_teacher`` (weighted, gradient-stopped) and the new
      ``loss`` in ``terms``.
    """
    if not _checks.check_static_bool("student_swap", student_swap):
        return loss, terms
    views = [s for s in students if s is not None]
    keep, labels, views = _two_views.mask_rows(where, labels, *views)
    term = weight * sum(
        masked_mean(
            pseudo_teacher_loss(
                s,
                labels,
                temperatures=temperatures,
                stop_gradient_pseudo_teacher=stop_gradient_pseudo_teacher,
            ),
            keep,
        )
        for s in views
    )
    loss = loss + term
    return loss, dict(terms, pseudo_teacher=jax.lax.stop_gradient(term), loss=loss)


def dkd_sld_objective(
    student_weak: jax.Array,
    student_strong: jax.Array | None,
    teacher_weak: jax.Array,
    teacher_strong: jax.Array | None,
    labels: jax.Array,
    *,
    student_swap: bool,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 4.0,
    warmup_factor: float | jax.Array | None = None,
    epoch: int | jax.Array | None = None,
    warmup: float = 20.0,
    ce_weight: float = 1.0,
    teacher_transform: LogitTransform | None = swap_logits,
    logit_standardization: bool = False,
    pseudo_teacher_weight: float = PSEUDO_TEACHER_WEIGHT,
    pseudo_teacher_temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    stop_gradient_pseudo_teacher: bool = False,
    where: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """DKD + SLD: :func:`~sld_jax.losses.dkd_objective` on the swapped teacher, plus the γ-gated
    pseudo-teacher term (module docstring).

    Args:
      student_weak, student_strong, teacher_weak, teacher_strong, labels: as
        :func:`~sld_jax.losses.dkd_objective`; so are ``alpha``, ``beta``, ``temperature``,
        ``warmup_factor``, ``epoch``, ``warmup``, ``ce_weight``, ``logit_standardization`` and
        ``where``.
      student_swap: the static γ gate (:func:`~sld_jax.losses.student_swap_active`).
      teacher_transform: the teacher-side processor (default: the swap).
      pseudo_teacher_weight, pseudo_teacher_temperatures, stop_gradient_pseudo_teacher: the
        pseudo-teacher term's weight (SLD's 0.9), temperatures (1..6) and detaching.

    Returns:
      ``(loss, terms)``: DKD's terms, plus ``pseudo_teacher`` (weighted) when the gate is open.

    Examples:
      >>> import jax.numpy as jnp
      >>> s = jnp.array([[2., 0., 0.], [0., 1., 0.]]); t = jnp.array([[0., 3., 0.], [0., 2., 0.]])
      >>> y = jnp.array([1, 1])  # the student is wrong on the first example: its swap fires
      >>> loss, terms = dkd_sld_objective(s, s, t, t, y, student_swap=True, warmup_factor=1.0)
      >>> round(float(loss), 4), round(float(terms["pseudo_teacher"]), 4)
      (16.5658, 7.6383)
    """
    loss, terms = dkd_objective(
        student_weak,
        student_strong,
        teacher_weak,
        teacher_strong,
        labels,
        alpha=alpha,
        beta=beta,
        temperature=temperature,
        warmup_factor=warmup_factor,
        epoch=epoch,
        warmup=warmup,
        ce_weight=ce_weight,
        teacher_transform=teacher_transform,
        logit_standardization=logit_standardization,
        where=where,
    )
    return add_pseudo_teacher(
        loss,
        terms,
        (student_weak, student_strong),
        labels,
        student_swap=student_swap,
        weight=pseudo_teacher_weight,
        temperatures=pseudo_teacher_temperatures,
        stop_gradient_pseudo_teacher=stop_gradient_pseudo_teacher,
        where=where,
    )


def mlkd_sld_objective(
    student_weak: jax.Array,
    student_strong: jax.Array,
    teacher_weak: jax.Array,
    teacher_strong: jax.Array,
    labels: jax.Array,
    *,
    student_swap: bool,
    temperatures: Sequence[float] = MLKD_TEMPERATURES,
    ce_weight: float = 0.1,
    kd_weight: float = 0.9,
    reference_quirks: bool = True,
    teacher_transform: LogitTransform | None = swap_logits,
    logit_standardization: bool = False,
    pseudo_teacher_weight: float = PSEUDO_TEACHER_WEIGHT,
    pseudo_teacher_temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    stop_gradient_pseudo_teacher: bool = False,
    where: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """MLKD + SLD: :func:`~sld_jax.losses.mlkd_objective` on the swapped teacher (every MLKD term and
    confidence mask), plus the γ-gated pseudo-teacher term on the raw student logits (module
    docstring). With ``logit_standardization=True`` this is LS-MLKD + SLD.

    Args:
      student_weak, student_strong, teacher_weak, teacher_strong, labels: as
        :func:`~sld_jax.losses.mlkd_objective`; so are ``temperatures`` (MLKD's), ``ce_weight``,
        ``kd_weight``, ``reference_quirks``, ``logit_standardization`` and ``where``.
      student_swap: the static γ gate (:func:`~sld_jax.losses.student_swap_active`).
      teacher_transform: the teacher-side processor (default: the swap).
      pseudo_teacher_weight, pseudo_teacher_temperatures, stop_gradient_pseudo_teacher: the
        pseudo-teacher term's weight (SLD's 0.9), temperatures (1..6) and detaching.

    Returns:
      ``(loss, terms)``: MLKD's terms, plus ``pseudo_teacher`` (weighted) when the gate is open.

    Examples:
      >>> import jax.numpy as jnp
      >>> s = jnp.array([[2., 0., 0.], [0., 1., 0.]]); t = jnp.array([[0., 3., 0.], [0., 2., 0.]])
      >>> y = jnp.array([1, 1])
      >>> loss, terms = mlkd_sld_objective(s, s, t, t, y, student_swap=False)  # before γ
      >>> round(float(loss), 4), "pseudo_teacher" in terms
      (8.5795, False)
    """
    loss, terms = mlkd_objective(
        student_weak,
        student_strong,
        teacher_weak,
        teacher_strong,
        labels,
        temperatures=temperatures,
        ce_weight=ce_weight,
        kd_weight=kd_weight,
        reference_quirks=reference_quirks,
        teacher_transform=teacher_transform,
        logit_standardization=logit_standardization,
        where=where,
    )
    return add_pseudo_teacher(
        loss,
        terms,
        (student_weak, student_strong),
        labels,
        student_swap=student_swap,
        weight=pseudo_teacher_weight,
        temperatures=pseudo_teacher_temperatures,
        stop_gradient_pseudo_teacher=stop_gradient_pseudo_teacher,
        where=where,
    )
