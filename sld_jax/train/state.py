"""The TrainState pytree and the PyTorch-exact SGD optimiser."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


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
