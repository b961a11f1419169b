"""Run-time label validation for jitted code, with ``jax.experimental.checkify``.

Shapes, ranks, dtypes and static hyper-parameters are checked at trace time by every loss, and
label *values* are checked whenever the labels are concrete (eager calls). Inside ``jit`` the
values are unknown at trace time and a loss must not sync with the host, so an out-of-range
label is **not** caught there. What it then does, silently:

* :func:`~sld_jax.losses.cross_entropy` and the CE inside the objectives gather out of bounds:
  a label ``>= C`` or ``< -C`` reads NaN (JAX's ``fill`` mode), so the loss becomes NaN; a label in
  ``[-C, 0)`` wraps around (NumPy indexing) and silently trains the wrong class;
* :func:`~sld_jax.losses.swap_logits` and the processors find no class equal to the label and
  treat the row as misclassified, writing a NaN or wrapped value into the max slot.

Wrap the jitted function with :func:`checked_labels` and checkify to turn this into an error::

    from jax.experimental import checkify

    def step(s, t, y):
        y = checked_labels(y, s.shape[-1])
        return sld_loss(s, t, y, student_swap=False).mean()

    err, value = jax.jit(checkify.checkify(step))(s, t, y)
    err.throw()  # ValueError naming the bad label, raised on the host
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import checkify


def checked_labels(labels: jax.Array, num_classes: int) -> jax.Array:
    """Returns ``labels`` unchanged after a ``checkify.check`` that all lie in ``[0, num_classes)``.

    Under ``checkify.checkify`` (with or without ``jit``) an out-of-range label becomes an error
    that ``err.throw()`` raises on the host. Without checkify, an eager call with bad labels
    raises at once, and a ``jit``-traced call raises at trace time asking for the checkify
    wrapper (a check inside ``jit`` cannot raise on its own). Negative labels are out of range
    too: unchecked inside ``jit``, a label in ``[-C, 0)`` silently reads class ``C + label``.

    Args:
      labels: ``[...]`` integer labels.
      num_classes: static Python int ``C``.

    Returns:
      ``labels`` (same array), for chaining.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jax.experimental import checkify
      >>> err, _ = checkify.checkify(checked_labels)(jnp.array([0, 7]), 5)
      >>> print(err.get())
      labels must lie in [0, 5); got min 0 and max 7 ...
      >>> err, _ = checkify.checkify(checked_labels)(jnp.array([-1, 2]), 5)
      >>> print(err.get())
      labels must lie in [0, 5); got min -1 and max 2 ...
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a Python int >= 1, got {num_classes!r}.")
    if not hasattr(labels, "dtype") or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(
            f"labels must be integer class indices, got {getattr(labels, 'dtype', type(labels).__name__)}."
        )
    if not labels.size:
        return labels
    ok = jnp.all((labels >= 0) & (labels < num_classes))
    checkify.check(
        ok,
        f"labels must lie in [0, {num_classes}); got min {{lo}} and max {{hi}} (check the dataset's class count).",
        lo=jnp.min(labels),
        hi=jnp.max(labels),
    )
    return labels
