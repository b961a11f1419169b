"""Pure, per-example distillation losses: SLD, its ablation variants and the baselines.

Every loss takes arrays positionally and hyper-parameters as keywords, accepts any leading batch
shape ``[..., C]`` (the batch- and class-level MLKD terms need ``[B, C]``), reduces in float32,
and works under ``jit``, ``vmap`` and ``grad``. Two-view objectives share one call style::

    loss, terms = <name>_objective(student_weak, student_strong, teacher_weak, teacher_strong,
                                   labels, *, <hyper-parameters>, where=None)

RKD (:mod:`sld_jax.losses.rkd`) distils pooled embeddings instead of logits: its objectives also
take ``student_embeddings=`` and ``teacher_embeddings=``. Every teacher-side logit processor
(:mod:`sld_jax.losses.processing`) plugs into their ``teacher_transform=`` slot.
"""

from sld_jax.losses.dkd import dkd_loss
from sld_jax.losses.dkd import dkd_objective
from sld_jax.losses.dkd import dkd_warmup_factor
from sld_jax.losses.fused_linear import fused_linear_cross_entropy
from sld_jax.losses.fused_linear import fused_linear_distill_loss
from sld_jax.losses.fused_linear import fused_linear_distill_loss_from_teacher_logits
from sld_jax.losses.fused_linear import fused_linear_distill_loss_from_teacher_topk
from sld_jax.losses.fused_linear import fused_linear_sld_loss
from sld_jax.losses.fused_linear import fused_linear_sld_loss_from_teacher_logits
from sld_jax.losses.fused_linear import fused_linear_sld_loss_from_teacher_topk
from sld_jax.losses.fused_linear import sparse_teacher_logits
from sld_jax.losses.kd import ce_objective
from sld_jax.losses.kd import kd_loss
from sld_jax.losses.kd import kd_objective
from sld_jax.losses.divergences import cross_entropy
from sld_jax.losses.divergences import kl_divergence_from_logits
from sld_jax.losses.divergences import masked_mean
from sld_jax.losses.divergences import multi_temperature_kd
from sld_jax.losses.divergences import standardize_logits
from sld_jax.losses.mlkd import MLKD_TEMPERATURES
from sld_jax.losses.mlkd import batch_alignment_loss
from sld_jax.losses.mlkd import class_alignment_loss
from sld_jax.losses.mlkd import mlkd_confidence_masks
from sld_jax.losses.mlkd import mlkd_objective
from sld_jax.losses.plus_sld import dkd_sld_objective
from sld_jax.losses.plus_sld import mlkd_sld_objective
from sld_jax.losses.processing import TEACHER_TRANSFORMS
from sld_jax.losses.processing import conditional_swap
from sld_jax.losses.processing import extreme_addition
from sld_jax.losses.processing import get_teacher_transform
from sld_jax.losses.processing import ground_truth_addition
from sld_jax.losses.processing import label_smoothing_targets
from sld_jax.losses.processing import max_addition
from sld_jax.losses.processing import multi_swap
from sld_jax.losses.processing import scale_target_logit
from sld_jax.losses.processing import target_reduction
from sld_jax.losses.rkd import rkd_loss
from sld_jax.losses.rkd import rkd_objective
from sld_jax.losses.rkd import rkd_sld_objective
from sld_jax.losses.rkd import rkd_terms
from sld_jax.losses.sld import DEFAULT_TEMPERATURES
from sld_jax.losses.sld import pseudo_teacher_loss
from sld_jax.losses.sld import sld_loss
from sld_jax.losses.sld import sld_loss_per_temperature
from sld_jax.losses.sld import sld_objective
from sld_jax.losses.sld import student_swap_active
from sld_jax.losses.standardize import standardized_kd_loss
from sld_jax.losses.standardize import standardized_kd_objective
from sld_jax.losses.swap import swap_fired
from sld_jax.losses.swap import swap_logits
from sld_jax.losses.validation import checked_labels

__all__ = [
    "DEFAULT_TEMPERATURES",
    "MLKD_TEMPERATURES",
    "TEACHER_TRANSFORMS",
    "batch_alignment_loss",
    "ce_objective",
    "checked_labels",
    "class_alignment_loss",
    "conditional_swap",
    "cross_entropy",
    "dkd_loss",
    "dkd_objective",
    "dkd_sld_objective",
    "dkd_warmup_factor",
    "extreme_addition",
    "fused_linear_cross_entropy",
    "fused_linear_distill_loss",
    "fused_linear_distill_loss_from_teacher_logits",
    "fused_linear_distill_loss_from_teacher_topk",
    "fused_linear_sld_loss",
    "fused_linear_sld_loss_from_teacher_logits",
    "fused_linear_sld_loss_from_teacher_topk",
    "sparse_teacher_logits",
    "get_teacher_transform",
    "ground_truth_addition",
    "kd_loss",
    "kd_objective",
    "kl_divergence_from_logits",
    "label_smoothing_targets",
    "masked_mean",
    "max_addition",
    "mlkd_confidence_masks",
    "mlkd_objective",
    "mlkd_sld_objective",
    "multi_swap",
    "multi_temperature_kd",
    "pseudo_teacher_loss",
    "rkd_loss",
    "rkd_objective",
    "rkd_sld_objective",
    "rkd_terms",
    "scale_target_logit",
    "sld_loss",
    "sld_loss_per_temperature",
    "sld_objective",
    "standardize_logits",
    "standardized_kd_loss",
    "standardized_kd_objective",
    "student_swap_active",
    "swap_fired",
    "swap_logits",
    "target_reduction",
]
