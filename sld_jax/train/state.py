"""The TrainState pytree, the PyTorch-exact SGD optimiser and the reference's schedule with it."""

from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from sld_jax.train import schedule


class TrainState(flax.struct.PyTreeNode):
    """Everything that changes during training; the frozen teacher is kept apart.

    Attributes:
      step: int32 scalar, the number of optimiser steps taken (0-based index of the next step).
      params: the student's ``params`` collection (float32).
      batch_stats: the student's BatchNorm running statistics.
      opt_state: the optax state (SGD momentum buffers).
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any


def pytorch_sgd(
    learning_rate: optax.ScalarOrSchedule,
    *,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    nesterov: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.SGD`` exactly: ``g += wd·p; v = μ·v + g; p -= lr·v``.

    Weight decay is coupled (added to the gradient before momentum) and applies to every parameter,
    BatchNorm scales and biases included, as in the reference. The momentum buffer starts at 0, so
    the first step's buffer is ``g`` exactly as PyTorch's lazily created buffer.
    """
    return optax.chain(
        optax.add_decayed_weights(weight_decay) if weight_decay else optax.identity(),
        optax.trace(decay=momentum, nesterov=nesterov) if momentum else optax.identity(),
        optax.scale_by_learning_rate(learning_rate),
    )


def create_train_state(variables: dict, tx: optax.GradientTransformation) -> TrainState:
    """A fresh TrainState at step 0 from a model's initial ``{"params", "batch_stats"}``."""
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
    )


@functools.lru_cache(maxsize=16)
def optimizer(
    lr: float,
    stages: tuple[int, ...],
    steps_per_epoch: int,
    decay_rate: float,
    momentum: float,
    weight_decay: float,
) -> tuple[optax.Schedule, optax.GradientTransformation]:
    """The reference's learning-rate schedule and SGD, one pair of objects per distinct setting.

    Equal settings return the same objects, so two builds of one config give equal
    :class:`~sld_jax.train.step.StepConfig` values and share one traced and compiled step in a
    process (:func:`~sld_jax.train.dispatch.compile_dispatch`): a resumed or repeated run in the same
    process compiles nothing again.

    >>> optimizer(0.05, (150, 180, 210), 391, 0.1, 0.9, 5e-4) is optimizer(0.05, (150, 180, 210), 391, 0.1, 0.9, 5e-4)
    True
    """
    lr_fn = schedule.lr_schedule(lr, stages, steps_per_epoch, decay_rate)
    return lr_fn, pytorch_sgd(lr_fn, momentum=momentum, weight_decay=weight_decay)
