"""Optional drop-ins for other training libraries; each submodule needs its library's extra.

* :mod:`sld_jax.integrations.tunix`: a distillation strategy for Google's tunix
  (``pip install 'sld_jax[tunix]'``) that uses the fused-linear distillation loss.

This package imports none of them: ``import sld_jax.integrations`` loads nothing beyond ``sld_jax``.
"""
