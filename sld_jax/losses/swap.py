"""The SLD swap: correct a wrong prediction by exchanging the label's logit with the maximal one."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sld_jax.losses import _checks


def swap_logits(logits: jax.Array, labels: jax.Array) -> jax.Array:
    r"""Swaps the label's logit with the maximal logit where the prediction is wrong.

    For each example with :math:`m = \operatorname{argmax}_c z_c \ne y` (first maximal index, as
    ``jnp.argmax``), the entries :math:`z_y` and :math:`z_m` trade places; examples whose argmax
    is the label are returned unchanged. The result is a permutation of each row, so the softmax
    keeps its shape and only the two probabilities exchange. Gradients flow through the
    permutation (as with the reference's in-place indexing): d out[y] / d z[m] = 1 and vice versa.

    Args:
      logits: ``[..., C]`` floating logits (any dtype; the output keeps it).
      labels: ``[...]`` integer labels in ``[0, C)``.

    Returns:
      ``[..., C]`` logits of the same dtype, swapped where ``argmax != label``.

    Examples:
      >>> import jax.numpy as jnp
      >>> swap_logits(jnp.array([[1., 3., 2.], [5., 0., 1.]]), jnp.array([2, 0]))
      Array([[1., 2., 3.],
             [5., 0., 1.]], dtype=float32)

    References:
      Limantoro et al., "Swapped Logit Distillation", 2025 (arXiv:2504.20108).
    """
    _checks.check_logits("logits", logits)
    _checks.check_labels(labels, logits)
    labels = labels.astype(jnp.int32)
    max_index = jnp.argmax(logits, axis=-1)
    label_value = jnp.take_along_axis(logits, labels[..., None], axis=-1)
    max_value = jnp.take_along_axis(logits, max_index[..., None], axis=-1)
    classes = jnp.arange(logits.shape[-1], dtype=jnp.int32)
    is_label = classes == labels[..., None]
    is_max = classes == max_index[..., None]
    # Where label == argmax, both selects write the same value back: the row is unchanged.
    return jnp.where(is_label, max_value, jnp.where(is_max, label_value, logits))


def swap_fired(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Returns ``[...]`` bool: True where :func:`swap_logits` changes the row (argmax != label)."""
    return jnp.argmax(logits, axis=-1) != labels
