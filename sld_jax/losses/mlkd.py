"""Multi-level logit distillation (MLKD; Jin et al. 2023): instance, batch and class alignment.

The reference objective (``KD_ours.py`` of the authors, ``MLKD.py`` in the SLD repository) has
four known quirks, reproduced by ``mlkd_objective(..., reference_quirks=True)`` (the default, to
reproduce its numbers):

1. the weak-view confidence mask multiplies an already batch-averaged KD value, so it scales the
   term by the *fraction* of masked examples instead of selecting examples (same for the
   batch-level term, and the class mask for the class-level term);
2. the strong-view KD sum takes its 4th and 5th terms (T = 2 and 6) from the *weak* view;
3. the strong-view batch- and class-level terms are computed but never added to the loss;
4. the temperatures are (4, 3, 5, 2, 6) with the base temperature 4 first (no T = 1).

``reference_quirks=False`` gives the corrected form: masks select examples (classes) before the
reduction, the strong view uses its own logits at every temperature, and the strong-view batch-
and class-level terms are added (with the masks the reference gives them: the instance mask on
the batch level, none on the class level). The temperatures are an argument in both forms.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from sld_jax.losses import _checks, _two_views
from sld_jax.losses.divergences import LogitTransform, cross_entropy, masked_mean, multi_temperature_kd

#: The reference's temperatures, in its order (the base temperature 4 first).
MLKD_TEMPERATURES = (4.0, 3.0, 5.0, 2.0, 6.0)

#: With ``reference_quirks``, the strong-view KD terms at these positions use the weak view.
_QUIRK_WEAK_POSITIONS = (3, 4)


def mlkd_confidence_masks(
    teacher_logits: jax.Array, *, where: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """The reference's confidence masks, from the teacher's weak-view softmax (T = 1).

    An example is selected when its top probability is at most the batch median
    (``np.percentile(·, 50)``, linear interpolation); a class is selected when its summed
    probability over the batch is at most the median over classes. Both keep the *less*
    confident half, as the reference's ``le`` comparisons do.

    Args:
      teacher_logits: ``[B, C]`` floating.
      where: ``[B]`` bool or None; padded examples are ignored by both medians and never selected.

    Returns:
      ``(instance_mask [B] bool, class_mask [C] bool)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> inst, cls = mlkd_confidence_masks(jnp.array([[4., 0.], [1., 0.], [0., 2.], [0., 0.]]))
      >>> inst
      Array([False,  True, False,  True], dtype=bool)
    """
    _checks.check_logits("teacher_logits", teacher_logits)
    _checks.check_batch_matrix("teacher_logits", teacher_logits)
    mask = where
    _checks.check_mask_array(mask, teacher_logits.shape[:1])
    p = jax.nn.softmax(_checks.as_float32(jax.lax.stop_gradient(teacher_logits)), axis=-1)
    confidence = jnp.max(p, axis=-1)
    if mask is None:
        threshold = jnp.percentile(confidence, 50.0)
        instance = confidence <= threshold
        class_confidence = jnp.sum(p, axis=0)
    else:
        keep = mask.astype(bool)
        threshold = jnp.nanpercentile(jnp.where(keep, confidence, jnp.nan), 50.0)
        instance = (confidence <= threshold) & keep
        class_confidence = jnp.sum(jnp.where(keep[:, None], p, 0.0), axis=0)
    return instance, class_confidence <= jnp.percentile(class_confidence, 50.0)


def _probabilities(logits: jax.Array, temperature: float, mask: jax.Array | None) -> jax.Array:
    p = jax.nn.softmax(_checks.as_float32(logits) / temperature, axis=-1)
    return p if mask is None else jnp.where(mask[:, None], p, 0.0)


def _gram_alignment(
    student_logits, teacher_logits, temperature, weights, mask, *, over_classes: bool
) -> jax.Array:
    _checks.check_logits("student_logits", student_logits)
    _checks.check_logits("teacher_logits", teacher_logits)
    _checks.check_same_shape("student_logits", student_logits, "teacher_logits", teacher_logits)
    _checks.check_batch_matrix("student_logits", student_logits)
    _checks.check_mask_array(mask, student_logits.shape[:1])
    (temperature,) = _checks.check_temperatures((temperature,))
    mask = None if mask is None else mask.astype(bool)
    ps = _probabilities(student_logits, temperature, mask)
    pt = _probabilities(jax.lax.stop_gradient(teacher_logits), temperature, mask)
    spec = "bi,bj->ij" if over_classes else "ic,jc->ij"
    hi = jax.lax.Precision.HIGHEST
    diff = jnp.einsum(spec, pt, pt, precision=hi) - jnp.einsum(spec, ps, ps, precision=hi)
    squared = jnp.square(diff)
    if weights is not None:
        size = student_logits.shape[1] if over_classes else student_logits.shape[0]
        if tuple(weights.shape) != (size,):
            what = "class_weights" if over_classes else "weights"
            raise ValueError(f"{what} must have shape ({size},), got {tuple(weights.shape)}.")
        w = weights.astype(bool) if weights.dtype == bool else weights.astype(jnp.float32)
        squared = jnp.where(w, squared, 0.0) if w.dtype == bool else squared * w
    if over_classes:
        norm = student_logits.shape[1]
    elif mask is None:
        norm = student_logits.shape[0]
    else:
        norm = jnp.maximum(jnp.sum(mask, dtype=jnp.float32), 1.0)
    return jnp.sum(squared) / norm


def batch_alignment_loss(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    *,
    temperature: float,
    weights: jax.Array | None = None,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""MLKD's batch-level term: :math:`\sum_{ij} w_j (G^t - G^s)_{ij}^2 / B`, :math:`G = P P^\top`.

    ``P = softmax(logits / T)`` is ``[B, C]`` and ``G`` the ``[B, B]`` Gram matrix of the
    examples' predictions (no T² factor, as the reference's ``bc_loss``).

    Args:
      student_logits, teacher_logits: ``[B, C]`` floating (teacher gradient-stopped).
      temperature: positive Python float.
      weights: ``[B]`` bool or float weights on the Gram columns, or None (the corrected form's
        per-example mask).
      where: ``[B]`` bool, False for padded rows (they are zeroed and B counts real rows only).

    Returns:
      float32 scalar.

    Examples:
      >>> import jax.numpy as jnp
      >>> z = jnp.array([[1., 0.], [0., 2.]])
      >>> batch_alignment_loss(z, z, temperature=4.0)
      Array(0., dtype=float32)
    """
    return _gram_alignment(student_logits, teacher_logits, temperature, weights, where, over_classes=False)


def class_alignment_loss(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    *,
    temperature: float,
    class_weights: jax.Array | None = None,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""MLKD's class-level term: :math:`\sum_{ij} w_j (G^t - G^s)_{ij}^2 / C`, :math:`G = P^\top P`.

    Args:
      student_logits, teacher_logits: ``[B, C]`` floating (teacher gradient-stopped).
      temperature: positive Python float.
      class_weights: ``[C]`` bool or float weights on the Gram columns, or None.
      where: ``[B]`` bool, False for padded rows (zeroed before the Gram matrix).

    Returns:
      float32 scalar (no T² factor, as the reference's ``cc_loss``).

    Examples:
      >>> import jax.numpy as jnp
      >>> z = jnp.array([[1., 0.], [0., 2.]])
      >>> class_alignment_loss(z, z, temperature=4.0)
      Array(0., dtype=float32)
    """
    return _gram_alignment(
        student_logits, teacher_logits, temperature, class_weights, where, over_classes=True
    )


def mlkd_objective(
    student_weak: jax.Array,
    student_strong: jax.Array,
    teacher_weak: jax.Array,
    teacher_strong: jax.Array,
    labels: jax.Array,
    *,
    temperatures: Sequence[float] = MLKD_TEMPERATURES,
    ce_weight: float = 0.1,
    kd_weight: float = 0.9,
    reference_quirks: bool = True,
    teacher_transform: LogitTransform | None = None,
    logit_standardization: bool = False,
    where: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    r"""The MLKD objective of a batch with a weak and a strong view.

    Quirks reproduced (``reference_quirks=True``), with :math:`f` the masked fraction of
    examples, :math:`g` that of classes and :math:`\overline{\cdot}` batch means:

    .. math::
        L &= w_{ce}[\overline{\mathrm{CE}}(s_w) + \overline{\mathrm{CE}}(s_s)]
           + w_{kd}\sum_k \big[f\,\overline{\mathrm{KD}}_{T_k}(s_w, t_w)
           + \overline{\mathrm{KD}}_{T_k}(s_{v_k}, t_{v_k})\big] \\
          &\quad + w_{kd}\sum_k \big[g\,\mathrm{CC}_{T_k}(s_w, t_w) + f\,\mathrm{BC}_{T_k}(s_w, t_w)\big]

    where :math:`v_k` is the weak view for the 4th and 5th temperature and the strong view
    otherwise, KD includes T², and CC/BC are :func:`class_alignment_loss` /
    :func:`batch_alignment_loss`. Corrected form (``reference_quirks=False``): the weak KD term
    is the batch mean of the per-example KD where the instance mask holds, the strong KD uses the
    strong view throughout, and :math:`\mathrm{CC}(s_w, t_w; g\text{-weighted}) +
    \mathrm{CC}(s_s, t_s) + \mathrm{BC}(s_w, t_w; f\text{-weighted}) + \mathrm{BC}(s_s, t_s;
    f\text{-weighted})` with the masks as column weights.

    The masks come from :func:`mlkd_confidence_masks` of the (processed) weak-view teacher. With
    a ``teacher_transform`` ("MLKD + swap") every teacher term, masks included, uses the processed
    logits; the swap leaves each example's confidence unchanged. With ``logit_standardization``
    only the instance-level KD terms see z-scored logits, as in Sun et al.'s code.

    Args:
      student_weak, student_strong, teacher_weak, teacher_strong: ``[B, C]`` logits.
      labels: ``[B]`` integer labels.
      temperatures: static temperatures (reference: (4, 3, 5, 2, 6)).
      ce_weight, kd_weight: reference 0.1 and 0.9 (its KD config); ``kd_weight`` also weights
        the batch- and class-level terms.
      reference_quirks: static bool, True (default) to reproduce the reference's numbers.
      teacher_transform: teacher-side processor, e.g. ``swap_logits``.
      logit_standardization: z-score the logits of the instance-level terms.
      where: ``[B]`` bool (optax's name), False for padded examples.

    Returns:
      ``(loss, terms)`` with weighted float32 scalars ``ce``, ``kd``, ``cc``, ``bc`` and ``loss``.

    Examples:
      >>> import jax.numpy as jnp
      >>> z = jnp.array([[3., 1., 0.], [0., 2., 1.]]); y = jnp.array([0, 1])
      >>> loss, terms = mlkd_objective(z, z, z, z, y)
      >>> {k: round(float(v), 4) for k, v in terms.items()}  # the teacher is the student: no KD
      {'ce': 0.0577, 'kd': 0.0, 'cc': 0.0, 'bc': 0.0, 'loss': 0.0577}
    """
    if student_strong is None or teacher_strong is None:
        raise ValueError("mlkd_objective needs both views: pass student_strong and teacher_strong.")
    _checks.check_batch_matrix("student_weak", student_weak)
    quirks = _checks.check_static_bool("reference_quirks", reference_quirks)
    standardize = _checks.check_static_bool("logit_standardization", logit_standardization)
    temps = _checks.check_temperatures(temperatures)
    views, labels, mask = _two_views.prepare(
        student_weak, student_strong, teacher_weak, teacher_strong, labels, where
    )
    (sw, tw), (ss, ts) = views
    tw = _two_views.teacher_target(tw, labels, teacher_transform)
    ts = _two_views.teacher_target(ts, labels, teacher_transform)
    instance_mask, class_mask = mlkd_confidence_masks(tw, where=mask)

    ce = masked_mean(cross_entropy(sw, labels), mask) + masked_mean(cross_entropy(ss, labels), mask)
    kd_pairs = [(sw, tw), (ss, ts)]
    if standardize:
        kd_pairs = [_two_views.standardize_pair(s, t) for s, t in kd_pairs]
    kd_weak = multi_temperature_kd(*kd_pairs[0], temperatures=temps)  # [B, K]
    kd_strong = multi_temperature_kd(*kd_pairs[1], temperatures=temps)

    fraction = masked_mean(instance_mask, mask)
    if quirks:
        class_fraction = jnp.mean(class_mask.astype(jnp.float32))
        from_weak = jnp.asarray([k in _QUIRK_WEAK_POSITIONS for k in range(len(temps))])
        kd = fraction * masked_mean(jnp.sum(kd_weak, -1), mask) + masked_mean(
            jnp.sum(jnp.where(from_weak, kd_weak, kd_strong), -1), mask
        )
        cc = sum(class_alignment_loss(sw, tw, temperature=t, where=mask) for t in temps) * class_fraction
        bc = sum(batch_alignment_loss(sw, tw, temperature=t, where=mask) for t in temps) * fraction
    else:
        kd = masked_mean(jnp.where(instance_mask, jnp.sum(kd_weak, -1), 0.0), mask) + masked_mean(
            jnp.sum(kd_strong, -1), mask
        )
        cc = sum(
            class_alignment_loss(sw, tw, temperature=t, class_weights=class_mask, where=mask)
            + class_alignment_loss(ss, ts, temperature=t, where=mask)
            for t in temps
        )
        bc = sum(
            batch_alignment_loss(sw, tw, temperature=t, weights=instance_mask, where=mask)
            + batch_alignment_loss(ss, ts, temperature=t, weights=instance_mask, where=mask)
            for t in temps
        )
    return _two_views.finish(
        {"ce": ce_weight * ce, "kd": kd_weight * kd, "cc": kd_weight * cc, "bc": kd_weight * bc}
    )
