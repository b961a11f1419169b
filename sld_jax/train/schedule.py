"""Epoch bookkeeping, the reference's piecewise-constant learning rate and the γ gate.

Epochs are counted from 1 (as the reference). Steps are counted from 0; step ``s`` belongs to epoch
``s // steps_per_epoch + 1``. The learning rate of an epoch is fixed at its start:
``lr = base * decay_rate ** (number of stages < epoch)``. The epoch length
(:func:`steps_per_epoch`) and the γ gate (:func:`student_swap_active`, ``epoch > gamma``) are
defined where they belong, in the data pipeline and the loss library, and re-exported here.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import optax

from sld_jax.data.pipeline import steps_per_epoch
from sld_jax.losses import student_swap_active

__all__ = ["epoch_of_step", "lr_for_epoch", "lr_schedule", "steps_per_epoch", "student_swap_active"]


def epoch_of_step(step, steps_in_epoch: int):
    """The (1-based) epoch that step ``step`` (0-based) belongs to: ``step // steps_in_epoch + 1``.

    The one definition, for Python ints and for traced step counters alike (the step's epoch for
    DKD's warm-up, the learning-rate schedule, the loop).

    >>> epoch_of_step(0, 391), epoch_of_step(390, 391), epoch_of_step(391, 391)
    (1, 1, 2)
    """
    return step // steps_in_epoch + 1


def lr_for_epoch(base_lr: float, epoch: int, stages: Sequence[int], decay_rate: float = 0.1) -> float:
    """The reference's learning rate for ``epoch`` (1-based): ``base * decay_rate ** #(stages < epoch)``.

    >>> lr_for_epoch(0.05, 150, [150, 180, 210]), lr_for_epoch(0.05, 151, [150, 180, 210])
    (0.05, 0.005...)
    """
    return base_lr * decay_rate ** sum(1 for s in stages if epoch > s)


def lr_schedule(
    base_lr: float, stages: Sequence[int], steps_in_epoch: int, decay_rate: float = 0.1
) -> optax.Schedule:
    """An optax schedule of the step count giving :func:`lr_for_epoch` of the step's epoch.

    Args:
      base_lr: the learning rate of epoch 1.
      stages: epochs after which the rate is multiplied by ``decay_rate`` (reference: [150, 180, 210]).
      steps_in_epoch: steps per epoch (see :func:`steps_per_epoch`).
      decay_rate: the multiplier per stage (reference 0.1).

    Returns:
      A function ``count -> float32 learning rate``, jittable.
    """
    stage_array = jnp.asarray(sorted(stages), jnp.int32)

    def schedule(count):
        epoch = epoch_of_step(count, steps_in_epoch)
        passed = jnp.sum(epoch > stage_array)
        return base_lr * jnp.asarray(decay_rate, jnp.float32) ** passed

    return schedule
