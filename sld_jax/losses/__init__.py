"""Pure, per-example distillation losses: SLD, its ablation variants and the baselines.

Every loss takes arrays positionally and hyper-parameters as keywords, accepts any leading batch
shape ``[..., C]``, reduces in float32, and works under ``jit``, ``vmap`` and ``grad``.
"""

from sld_jax.losses.kd import cross_entropy
from sld_jax.losses.kd import kd_loss
from sld_jax.losses.kd import kl_divergence_from_logits
from sld_jax.losses.kd import masked_mean
from sld_jax.losses.kd import multi_temperature_kd
from sld_jax.losses.sld import DEFAULT_TEMPERATURES
from sld_jax.losses.sld import sld_loss
from sld_jax.losses.sld import sld_loss_per_temperature
from sld_jax.losses.sld import sld_objective
from sld_jax.losses.sld import student_swap_active
from sld_jax.losses.swap import swap_fired
from sld_jax.losses.swap import swap_logits

__all__ = [
    "DEFAULT_TEMPERATURES",
    "cross_entropy",
    "kd_loss",
    "kl_divergence_from_logits",
    "masked_mean",
    "multi_temperature_kd",
    "sld_loss",
    "sld_loss_per_temperature",
    "sld_objective",
    "student_swap_active",
    "swap_fired",
    "swap_logits",
]
