"""S steps per call and the compiled ``jit(shard_map(...))`` wrappers of the train and eval steps.

:func:`dispatch_steps` runs S optimiser steps of every seed in one call (a ``lax.scan`` when S > 1)
on a feed of stacked host batches or of example ids gathered on the device
(:func:`sld_jax.train.data_io.gather_batch`). :func:`compile_dispatch`,
:func:`compile_seeds_eval_step` and :func:`compile_train_step` wrap the steps in ``shard_map`` over
the ``data`` axis and ``jit``; equal arguments share one program in a process.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from sld_jax.memo import shared
from sld_jax.train.data_io import gather_batch
from sld_jax.train.mesh import DATA_AXIS
from sld_jax.train.seed_axis import seeds_eval_step, seeds_train_step
from sld_jax.train.state import TrainState
from sld_jax.train.step import StepConfig, train_step


def dispatch_steps(
    states: TrainState,
    teacher_variables: Any,
    feed: dict,
    split: dict,
    rngs: jax.Array,
    active: jax.Array,
    *,
    cfg: StepConfig,
    seed_axis: str = "unroll",
    shares_data: bool = False,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """S optimiser steps of every seed in one call (inside shard_map): a ``lax.scan`` over a feed.

    Args:
      states: the seeds' TrainState (leading axis K).
      teacher_variables: the shared teacher's variables (or None).
      feed: a stack of S device-local batches with a data-seed axis ``Kd`` (K, or 1 when
        ``shares_data``): batch dicts ``[S, Kd, b, ...]``, or ``{"ids": int32 [S, Kd, b]}`` to
        gather from ``split``.
      split: the device-resident train split (:func:`gather_batch`), or ``{}``.
      rngs: ``[K, 2]`` the seeds' base keys.
      active: bool ``[S]``: step s runs when True; an inactive step leaves the states unchanged
        (a short last stack of an epoch or a run reuses the compiled call).
      cfg, seed_axis, shares_data: as in :func:`seeds_train_step`.

    Returns:
      ``(new_states, metrics)``: metrics ``[S, K]`` per step and seed (zeros, and ``finite`` 1,
      for inactive steps).
    """

    def batch_of(x):
        batch = gather_batch(split, x["ids"]) if "ids" in x else x
        return jax.tree.map(lambda v: v[0], batch) if shares_data else batch

    def one_step(states, x):
        return seeds_train_step(
            states,
            teacher_variables,
            batch_of(x),
            rngs,
            cfg=cfg,
            seed_axis=seed_axis,
            shares_data=shares_data,
        )

    if active.shape[0] == 1:  # one step per call: no scan, the seeds' step called directly
        batch = batch_of(jax.tree.map(lambda v: v[0], feed))
        states, metrics = seeds_train_step(
            states, teacher_variables, batch, rngs, cfg=cfg, seed_axis=seed_axis, shares_data=shares_data
        )
        return states, jax.tree.map(lambda v: v[None], metrics)

    first = jax.tree.map(lambda v: v[0], feed)
    shapes = jax.eval_shape(one_step, states, first)[1]

    def skipped(states, x):
        del x
        metrics = {k: jnp.zeros(v.shape, v.dtype) for k, v in shapes.items()}
        metrics["finite"] = jnp.ones_like(metrics["finite"])
        return states, metrics

    def body(states, xs):
        x, on = xs
        return jax.lax.cond(on, one_step, skipped, states, x)

    return jax.lax.scan(body, states, (feed, active))


@shared
def _sharded_dispatch(cfg: StepConfig, mesh: Mesh, seed_axis: str, shares_data: bool):
    return jax.shard_map(
        functools.partial(dispatch_steps, cfg=cfg, seed_axis=seed_axis, shares_data=shares_data),
        mesh=mesh,
        in_specs=(P(), P(), P(None, None, DATA_AXIS), P(), P(), P()),
        out_specs=(P(), P()),
    )


@shared
def _sharded_seeds_eval(model: nn.Module, mesh: Mesh, mean: tuple, std: tuple, seed_axis: str):
    return jax.shard_map(
        functools.partial(seeds_eval_step, model=model, mean=mean, std=std, seed_axis=seed_axis),
        mesh=mesh,
        in_specs=(P(), P(DATA_AXIS)),
        out_specs=P(),
    )


def compile_dispatch(cfg: StepConfig, mesh: Mesh, *, seed_axis: str = "unroll", shares_data: bool = False):
    """``jit(shard_map(dispatch_steps))``: states, teacher, split and keys replicated; the feed's
    batch axis (axis 2) split over ``data``. The states argument is donated.

    Equal arguments share one traced and compiled program in a process (a resumed or repeated run
    compiles nothing again); each call returns a fresh ``jax.jit`` wrapper, but wrappers of one
    program share its executables and their ``_cache_size()`` (a run counts its own compilations:
    :meth:`sld_jax.train.setup.Run.compiled_variants`)."""
    return jax.jit(_sharded_dispatch(cfg, mesh, seed_axis, shares_data), donate_argnums=(0,))


def compile_seeds_eval_step(model: nn.Module, mesh: Mesh, mean, std, *, seed_axis: str = "unroll"):
    """``jit(shard_map(seeds_eval_step))``: seeds' variables replicated, the batch split over ``data``
    (shared between equal arguments as :func:`compile_dispatch`)."""
    return jax.jit(_sharded_seeds_eval(model, mesh, tuple(mean), tuple(std), seed_axis))


def compile_train_step(cfg: StepConfig, mesh: Mesh):
    """``jit(shard_map(train_step))``: state and teacher replicated, batch split over ``data``.

    The state argument is donated (its buffers are reused for the new state).
    """
    fn = jax.shard_map(
        functools.partial(train_step, cfg=cfg),
        mesh=mesh,
        in_specs=(P(), P(), P(DATA_AXIS), P()),
        out_specs=(P(), P()),
    )
    return jax.jit(fn, donate_argnums=(0,))
