"""sld_jax: Swapped Logit Distillation in JAX/Flax."""

__version__ = "0.1.0"
