"""Which ``shard_map`` mesh axes an array varies over: the one definition for the losses and the models.

Inside ``jax.shard_map`` (with its varying-manual-axes type checking) every value carries the set
of mesh axes along which it differs between devices. Code that builds loop carries or custom
gradients must match those sets; this module reads them the same way everywhere. It imports JAX
only (the light install of :mod:`sld_jax.losses` uses it).
"""

from __future__ import annotations

import jax


def varying_axes(x) -> frozenset:
    """The mesh axes along which ``x`` varies inside ``shard_map`` (empty outside it).

    Reads the type's ``manual_axis_type.varying`` where JAX has it, else its ``vma`` field (the
    spelling of earlier JAX releases).

    >>> import jax.numpy as jnp
    >>> varying_axes(jnp.zeros(3))
    frozenset()
    """
    aval = jax.typeof(x)
    manual = getattr(aval, "manual_axis_type", None)
    if manual is not None and getattr(manual, "varying", None) is not None:
        return frozenset(manual.varying)
    return frozenset(getattr(aval, "vma", ()) or ())
