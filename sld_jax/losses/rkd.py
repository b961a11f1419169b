"""Relational knowledge distillation (RKD; Park et al. 2019) on pooled embeddings, and RKD + SLD.

RKD matches the *relations* between the examples of a batch rather than each example's output:
the distances between every pair of embeddings (normalised by their mean) and the angles of every
triplet. It is a feature-based method, so it composes with SLD's logit terms by addition
(:func:`rkd_sld_objective`).

The reference is the RKD distiller of mdistiller (``mdistiller/distillers/RKD.py``, which the SLD
authors' tree inherits), reproduced exactly:

* the embeddings are the pooled pre-logit features (mdistiller's ``pooled_feat``; sld_jax's
  ``features["pooled"]``) of one (the weak) view, flattened to ``[B, D]``;
* pairwise distances from ``|a|² + |b|² - 2 a·b`` clamped below at ``eps = 1e-12`` then square-
  rooted (``squared=False``), the diagonal set to 0; each side divided by the mean of its
  off-diagonal distances (the reference's mean over the entries ``> 0``, which are exactly the
  off-diagonal ones after the clamp); the student's mean is differentiated, the teacher is not;
* the angle of the triplet ``(i, j, k)`` is the cosine between ``e_j - e_i`` and ``e_k - e_i``
  (unit vectors from ``F.normalize``: ``v / max(|v|, 1e-12)``, so a zero difference gives 0);
* both terms are smooth-L1 (Huber with δ = 1) averaged over *all* ``B²`` pairs and ``B³``
  triplets, the degenerate ones (``i = j``, or ``j = i`` / ``k = i``) included in the count;
* weights: distance 25, angle 50, feature weight 1, cross-entropy weight 1, no KD term; CIFAR-100
  recipe as mdistiller's ``rkd.yaml`` (LR 0.05, weight decay 5e-4, 240 epochs, stages
  150/180/210, batch 64).

Where the reference differs from the paper (Park et al., CVPR 2019): the paper averages its
Huber losses over the *distinct* pairs and triplets, whereas the reference's means also count the
degenerate ones, which scales the distance term by ``(B-1)/B`` and the angle term by
``(B-1)(B-2)/B²`` relative to the paper's form (constants for a fixed batch: 0.98 and 0.95 at
B = 64); and the clamp at ``eps`` makes a pair of
coincident embeddings have distance ``1e-6`` (with zero gradient), not 0. Under data parallelism
the pairs and triplets are those of each device's slice, as under PyTorch's ``DataParallel``.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from sld_jax.losses import _checks, _two_views
from sld_jax.losses.divergences import LogitTransform, cross_entropy, masked_mean
from sld_jax.losses.sld import DEFAULT_TEMPERATURES, sld_objective
from sld_jax.losses.swap import swap_logits

#: mdistiller's RKD weights (``CFG.RKD``): distance 25, angle 50, pairwise-distance clamp 1e-12.
RKD_DISTANCE_WEIGHT = 25.0
RKD_ANGLE_WEIGHT = 50.0
RKD_EPS = 1e-12
#: ``F.normalize``'s default floor on the norm of a difference vector.
_NORMALIZE_EPS = 1e-12

_HI = jax.lax.Precision.HIGHEST


def _check_embeddings(name: str, x: jax.Array) -> None:
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{name} must be an array of shape [B, D], got {type(x).__name__}.")
    if x.ndim != 2:
        raise ValueError(
            f"{name} must have shape [B, D] (the pooled features; reshape to (B, -1) first), got {x.shape}."
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must be floating point, got {x.dtype}; cast it with .astype(jnp.float32).")


def _huber(x: jax.Array, y: jax.Array) -> jax.Array:
    """Elementwise smooth-L1 (Huber, δ = 1): ``0.5 d²`` for ``|d| < 1``, else ``|d| - 0.5``."""
    d = x - y
    a = jnp.abs(d)
    return jnp.where(a < 1.0, 0.5 * d * d, a - 0.5)


def _pairwise_distances(e: jax.Array, squared: bool, eps: float) -> jax.Array:
    """``[B, B]`` distances from the expanded square, clamped at ``eps``, zero diagonal."""
    norms = jnp.sum(e * e, axis=-1)
    gram = jnp.matmul(e, e.T, precision=_HI)
    d = jnp.maximum(norms[:, None] + norms[None, :] - 2.0 * gram, eps)
    if not squared:
        d = jnp.sqrt(d)
    return jnp.where(jnp.eye(e.shape[0], dtype=bool), 0.0, d)


def _normalized_distances(e, valid, squared, eps):
    """Distances divided by their mean over the valid off-diagonal pairs."""
    d = _pairwise_distances(e, squared, eps)
    pairs = valid[:, None] & valid[None, :] & ~jnp.eye(e.shape[0], dtype=bool)
    count = jnp.sum(pairs, dtype=jnp.float32)
    mean = jnp.sum(jnp.where(pairs, d, 0.0)) / jnp.maximum(count, 1.0)
    return d / jnp.where(count > 0, mean, 1.0)


def _angles(e: jax.Array) -> jax.Array:
    """``[B, B, B]`` cosines: entry ``(i, j, k)`` between ``e_j - e_i`` and ``e_k - e_i``."""
    diff = e[None, :, :] - e[:, None, :]  # [i, j] = e_j - e_i
    sq = jnp.sum(diff * diff, axis=-1, keepdims=True)
    # Double where: a zero difference (j == i) has norm 0 and must get a finite gradient.
    norm = jnp.where(sq > 0, jnp.sqrt(jnp.where(sq > 0, sq, 1.0)), 0.0)
    unit = diff / jnp.maximum(norm, _NORMALIZE_EPS)
    return jnp.einsum("ijd,ikd->ijk", unit, unit, precision=_HI)


def rkd_terms(
    student_embeddings: jax.Array,
    teacher_embeddings: jax.Array,
    *,
    where: jax.Array | None = None,
    eps: float = RKD_EPS,
    squared: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """The unweighted RKD distance and angle losses ``(distance, angle)``, float32 scalars.

    See :func:`rkd_loss` for the arguments.

    Examples:
      >>> import jax.numpy as jnp
      >>> s = jnp.array([[0., 0.], [3., 0.], [0., 4.]]); t = jnp.array([[0., 0.], [1., 0.], [2., 0.]])
      >>> [round(float(x), 4) for x in rkd_terms(s, t)]  # 1/18 and 0.12
      [0.0556, 0.12]
    """
    _check_embeddings("student_embeddings", student_embeddings)
    _check_embeddings("teacher_embeddings", teacher_embeddings)
    b = student_embeddings.shape[0]
    if teacher_embeddings.shape[0] != b:
        raise ValueError(
            "student_embeddings and teacher_embeddings must have the same batch size (their feature "
            f"sizes may differ), got {student_embeddings.shape} and {teacher_embeddings.shape}."
        )
    _checks.check_mask_array(where, (b,))
    eps = _checks.check_static_number("eps", eps, low=0.0, low_inclusive=False)
    squared = _checks.check_static_bool("squared", squared)
    s = _checks.as_float32(student_embeddings)
    t = _checks.as_float32(jax.lax.stop_gradient(teacher_embeddings))
    if where is None:
        valid = jnp.ones((b,), bool)
    else:
        valid = where.astype(bool)
        # A select, not a product: padded rows get an exactly-zero gradient and a NaN there is harmless.
        s = jnp.where(valid[:, None], s, 0.0)
        t = jnp.where(valid[:, None], t, 0.0)
    n = jnp.sum(valid, dtype=jnp.float32)

    pairs = valid[:, None] & valid[None, :]
    dist = _huber(
        _normalized_distances(s, valid, squared, eps), _normalized_distances(t, valid, squared, eps)
    )
    distance = jnp.sum(jnp.where(pairs, dist, 0.0)) / jnp.maximum(n * n, 1.0)

    triplets = pairs[:, :, None] & valid[None, None, :]
    ang = _huber(_angles(s), _angles(t))
    angle = jnp.sum(jnp.where(triplets, ang, 0.0)) / jnp.maximum(n * n * n, 1.0)
    return distance, angle


def rkd_loss(
    student_embeddings: jax.Array,
    teacher_embeddings: jax.Array,
    *,
    distance_weight: float = RKD_DISTANCE_WEIGHT,
    angle_weight: float = RKD_ANGLE_WEIGHT,
    where: jax.Array | None = None,
    eps: float = RKD_EPS,
    squared: bool = False,
) -> jax.Array:
    r"""Relational KD: distance-wise plus angle-wise Huber losses over the batch's pairs and triplets.

    .. math::
        L = \frac{w_d}{n^2} \sum_{i,j} h\Big(\frac{\|s_i - s_j\|}{\mu_s}, \frac{\|t_i - t_j\|}{\mu_t}\Big)
          + \frac{w_a}{n^3} \sum_{i,j,k} h\big(\langle u^s_{ij}, u^s_{ik}\rangle,
                                              \langle u^t_{ij}, u^t_{ik}\rangle\big)

    where :math:`h` is smooth-L1 (Huber, δ = 1), :math:`\mu` the mean distance over the
    :math:`n(n-1)` distinct pairs, :math:`u_{ij} = (e_j - e_i)/\max(\|e_j - e_i\|, 10^{-12})`
    and the sums run over the :math:`n` real (``where``) examples. This is a batch-level loss (a
    scalar, not per example): masked examples are left out of every pair and triplet, so the
    result equals the loss of the slice of real examples. The teacher is never differentiated.

    Args:
      student_embeddings: ``[B, Ds]`` floating, the student's pooled features.
      teacher_embeddings: ``[B, Dt]`` floating, the teacher's (``Dt`` may differ from ``Ds``).
      distance_weight, angle_weight: the reference's 25 and 50.
      where: ``[B]`` bool, False for padded examples, or None.
      eps: positive floor of the squared pairwise distances (reference 1e-12).
      squared: static bool, use squared distances (reference False).

    Returns:
      float32 scalar.

    Examples:
      >>> import jax.numpy as jnp
      >>> s = jnp.array([[0., 0.], [3., 0.], [0., 4.]]); t = jnp.array([[0., 0.], [1., 0.], [2., 0.]])
      >>> round(float(rkd_loss(s, t)), 4)  # 25 / 18 + 50 * 0.12
      7.3889
      >>> float(rkd_loss(2. * s + 1., s))  # relations are invariant to scale and translation
      0.0

    References:
      Park et al., "Relational Knowledge Distillation", CVPR 2019 (arXiv:1904.05068).

    .. seealso:: :func:`rkd_objective`, :func:`rkd_sld_objective`.
    """
    distance_weight = _checks.check_static_number("distance_weight", distance_weight, low=0.0)
    angle_weight = _checks.check_static_number("angle_weight", angle_weight, low=0.0)
    distance, angle = rkd_terms(student_embeddings, teacher_embeddings, where=where, eps=eps, squared=squared)
    return distance_weight * distance + angle_weight * angle


def _embedding_views(name: str, embeddings, num_views: int) -> list[jax.Array]:
    """The per-view embeddings as a list: an array is one view, a tuple/list one entry per view."""
    views = list(embeddings) if isinstance(embeddings, (tuple, list)) else [embeddings]
    views = [v for v in views if v is not None]
    if not views or len(views) > num_views:
        raise ValueError(
            f"{name} must be one [B, D] array per view given (weak, or weak and strong), "
            f"at most {num_views} here; got {len(views)}."
        )
    return views


def _rkd_sum(student_embeddings, teacher_embeddings, num_views, mask, **kwargs) -> jax.Array:
    """Sum of :func:`rkd_loss` over the views whose embeddings are given."""
    s_views = _embedding_views("student_embeddings", student_embeddings, num_views)
    t_views = _embedding_views("teacher_embeddings", teacher_embeddings, num_views)
    if len(s_views) != len(t_views):
        raise ValueError(
            "student_embeddings and teacher_embeddings must cover the same views, got "
            f"{len(s_views)} and {len(t_views)} arrays."
        )
    return sum(rkd_loss(s, t, where=mask, **kwargs) for s, t in zip(s_views, t_views))


def rkd_objective(
    student_weak: jax.Array,
    student_strong: jax.Array | None,
    teacher_weak: jax.Array,
    teacher_strong: jax.Array | None,
    labels: jax.Array,
    *,
    student_embeddings: jax.Array | Sequence[jax.Array],
    teacher_embeddings: jax.Array | Sequence[jax.Array],
    where: jax.Array | None = None,
    ce_weight: float = 1.0,
    rkd_weight: float = 1.0,
    distance_weight: float = RKD_DISTANCE_WEIGHT,
    angle_weight: float = RKD_ANGLE_WEIGHT,
    eps: float = RKD_EPS,
    squared: bool = False,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    r"""mdistiller's RKD objective: :math:`w_{ce}\,\overline{\mathrm{CE}}(s) + w_{rkd}\,\mathrm{RKD}(f_s, f_t)`.

    Summed over the views given (the reference uses one view: pass the strong logits as None and
    the weak embeddings only). The teacher's logits are validated but unused: RKD distils the
    embeddings only (the teacher's embeddings are gradient-stopped).

    Args:
      student_weak, student_strong, teacher_weak, teacher_strong: ``[B, C]`` logits (the strong
        pair may be None).
      labels: ``[B]`` integer labels.
      student_embeddings, teacher_embeddings: ``[B, D]`` pooled features, or a tuple with one
        such array per view (weak, then strong); the feature sizes of the two sides may differ.
      where: ``[B]`` bool (optax's name), False for padded examples.
      ce_weight, rkd_weight: reference 1 and 1.
      distance_weight, angle_weight, eps, squared: see :func:`rkd_loss`.

    Returns:
      ``(loss, terms)`` with weighted float32 scalars ``ce``, ``rkd`` and ``loss``.

    Examples:
      >>> import jax.numpy as jnp
      >>> z = jnp.array([[3., 1.], [0., 2.], [1., 1.]]); y = jnp.array([0, 1, 0])
      >>> f = jnp.array([[0., 0.], [3., 0.], [0., 4.]])
      >>> loss, terms = rkd_objective(z, None, z, None, y, student_embeddings=f,
      ...                             teacher_embeddings=2. * f)
      >>> float(terms["rkd"])
      0.0
    """
    mask = where
    views, labels, mask = _two_views.prepare(
        student_weak, student_strong, teacher_weak, teacher_strong, labels, mask
    )
    ce = sum(masked_mean(cross_entropy(s, labels), mask) for s, _ in views)
    rkd = _rkd_sum(
        student_embeddings,
        teacher_embeddings,
        len(views),
        mask,
        distance_weight=distance_weight,
        angle_weight=angle_weight,
        eps=eps,
        squared=squared,
    )
    return _two_views.finish({"ce": ce_weight * ce, "rkd": rkd_weight * rkd})


def rkd_sld_objective(
    student_weak: jax.Array,
    student_strong: jax.Array | None,
    teacher_weak: jax.Array,
    teacher_strong: jax.Array | None,
    labels: jax.Array,
    *,
    student_embeddings: jax.Array | Sequence[jax.Array],
    teacher_embeddings: jax.Array | Sequence[jax.Array],
    where: jax.Array | None = None,
    student_swap: bool,
    ce_weight: float = 0.1,
    kd_weight: float = 0.9,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    stop_gradient_pseudo_teacher: bool = False,
    teacher_transform: LogitTransform | None = swap_logits,
    rkd_weight: float = 1.0,
    distance_weight: float = RKD_DISTANCE_WEIGHT,
    angle_weight: float = RKD_ANGLE_WEIGHT,
    eps: float = RKD_EPS,
    squared: bool = False,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    r"""RKD + SLD: the SLD objective on the logits plus RKD on the embeddings of every view given.

    .. math::
        L = L_{\mathrm{SLD}}(s_w, s_s, t_w, t_s) + w_{rkd} \sum_{v} \mathrm{RKD}(f^s_v, f^t_v)

    :math:`L_{\mathrm{SLD}}` is :func:`~sld_jax.losses.sld_objective` exactly (its CE 0.1 and KD
    0.9 weights, the teacher swap, the γ-gated pseudo-teacher), and the RKD term is
    :func:`rkd_loss` with mdistiller's weights. RKD has no logits of its own, so nothing of it is
    swapped: SLD's terms replace RKD's cross-entropy.

    Args:
      student_weak, student_strong, teacher_weak, teacher_strong, labels: as
        :func:`~sld_jax.losses.sld_objective`; so are ``where``, ``student_swap``, ``ce_weight``,
        ``kd_weight``, ``temperatures``, ``stop_gradient_pseudo_teacher`` and
        ``teacher_transform``.
      student_embeddings, teacher_embeddings: ``[B, D]`` or one such array per view.
      rkd_weight, distance_weight, angle_weight, eps, squared: see :func:`rkd_objective`.

    Returns:
      ``(loss, terms)``: the terms of :func:`~sld_jax.losses.sld_objective` plus ``rkd``
      (weighted), with ``loss`` the total.

    Examples:
      >>> import jax.numpy as jnp
      >>> z = jnp.array([[3., 1.], [0., 2.], [1., 1.]]); y = jnp.array([0, 1, 0])
      >>> f = jnp.array([[0., 0.], [3., 0.], [0., 4.]])
      >>> loss, terms = rkd_sld_objective(z, z, z, z, y, student_embeddings=(f, f),
      ...                                 teacher_embeddings=(f, f), student_swap=True)
      >>> sorted(terms)[:4]
      ['ce', 'kd', 'loss', 'rkd']
    """
    mask = where
    loss, terms = sld_objective(
        student_weak,
        student_strong,
        teacher_weak,
        teacher_strong,
        labels,
        student_swap=student_swap,
        ce_weight=ce_weight,
        kd_weight=kd_weight,
        temperatures=temperatures,
        where=mask,
        stop_gradient_pseudo_teacher=stop_gradient_pseudo_teacher,
        teacher_transform=teacher_transform,
    )
    if mask is not None:
        mask = mask.astype(bool)
    num_views = 1 if student_strong is None else 2
    rkd = rkd_weight * _rkd_sum(
        student_embeddings,
        teacher_embeddings,
        num_views,
        mask,
        distance_weight=distance_weight,
        angle_weight=angle_weight,
        eps=eps,
        squared=squared,
    )
    loss = loss + rkd
    return loss, dict(terms, rkd=jax.lax.stop_gradient(rkd), loss=loss)
