"""The seed axis: K seeds' steps in one program, under ``vmap``, unrolled, or under ``lax.map``.

:func:`seeds_train_step` runs :func:`~sld_jax.train.step.train_step` for every seed of a state with
a leading seed axis K (:func:`map_seeds` picks the form); :func:`seeds_eval_step` evaluates K
seeds' variables on one batch. Both run inside ``shard_map`` (:mod:`sld_jax.train.dispatch`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sld_jax.train import step
from sld_jax.train.state import TrainState

SEED_AXIS_MODES = ("vmap", "unroll", "map")


def map_seeds(fn, mode: str, in_axes: tuple, *args):
    """``fn`` applied to each seed's slice of ``args`` (leading axis K), outputs stacked on axis 0.

    Args:
      fn: a function of one seed's arguments.
      mode: ``"vmap"`` (one batched program), ``"unroll"`` (K copies of ``fn`` in one program:
        on XLA:CPU a vmapped convolution weight becomes a slow grouped convolution) or ``"map"``
        (``lax.map``: one copy of ``fn`` run K times in a loop; compiles as fast as one seed).
      in_axes: per argument, 0 (mapped over seeds) or None (shared by every seed).
      args: the arguments; mapped ones have a leading seed axis of the same size K.

    Returns:
      ``fn``'s outputs with a leading seed axis K.
    """
    if mode == "vmap":
        return jax.vmap(fn, in_axes=in_axes)(*args)
    if mode == "map":
        mapped = tuple(a for a, ax in zip(args, in_axes) if ax is not None)

        def one_seed(slices):
            it = iter(slices)
            return fn(*[a if ax is None else next(it) for a, ax in zip(args, in_axes)])

        return jax.lax.map(one_seed, mapped)
    if mode != "unroll":
        raise ValueError(f"seed_axis must be one of {SEED_AXIS_MODES}, got {mode!r}.")
    mapped = [a for a, ax in zip(args, in_axes) if ax is not None]
    num = jax.tree.leaves(mapped)[0].shape[0]
    per_arg = [[a] * num if ax is None else _unstack(a, num) for a, ax in zip(args, in_axes)]
    return _stack([fn(*one) for one in zip(*per_arg)])


def _unstack(tree, num: int) -> list:
    """A tree with a leading seed axis of size ``num`` -> one tree per seed."""
    return [jax.tree.map(lambda x, k=k: x[k], tree) for k in range(num)]


def _stack(trees: list):
    """One tree per seed -> a tree with a leading seed axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def seeds_train_step(
    states: TrainState,
    teacher_variables: Any,
    batch: dict,
    rngs: jax.Array,
    *,
    cfg: step.StepConfig,
    seed_axis: str = "unroll",
    shares_data: bool = False,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimiser step of every seed (call inside shard_map): :func:`~sld_jax.train.step.train_step` per seed.

    Args:
      states: the TrainState of K seeds (a leading axis K on every leaf).
      teacher_variables: the shared frozen teacher's variables (or None).
      batch: device-local dict as in :func:`~sld_jax.train.step.train_step` with a leading seed axis ``[K, b, ...]``, or
        ``[b, ...]`` when ``shares_data``.
      rngs: ``[K, 2]`` the seeds' base keys.
      cfg: the static :class:`StepConfig`.
      seed_axis: ``"vmap"``, ``"unroll"`` or ``"map"`` (:func:`map_seeds`).
      shares_data: every seed sees the same batch and views (those of the first seed's key): the
        views and the teacher's forward pass are computed once; dropout keys stay per seed.

    Returns:
      ``(new_states, metrics)`` with a leading axis K on every leaf.
    """
    if shares_data:
        step_rng = jax.random.fold_in(rngs[0], states.step[0])
        prepared = step.prepare(cfg, teacher_variables, batch, step_rng)

        def shared(state, rng):
            return step.update(cfg, state, prepared, batch, jax.random.fold_in(rng, state.step))

        return map_seeds(shared, seed_axis, (0, 0), states, rngs)

    if seed_axis == "unroll" and cfg.teacher is not None:
        # One teacher call on every seed's views (a K-times larger batch), then each seed's update.
        num = rngs.shape[0]
        seed_states, seed_batches = _unstack(states, num), _unstack(batch, num)
        step_rngs = [jax.random.fold_in(rngs[k], seed_states[k].step) for k in range(num)]
        prepared = step.prepare_seeds(cfg, teacher_variables, seed_batches, step_rngs)
        outputs = []  # a loop, not a comprehension: one frame less between the loop and the loss
        for args in zip(seed_states, prepared, seed_batches, step_rngs):
            outputs.append(step.update(cfg, *args))
        return _stack(outputs)

    if seed_axis == "unroll":  # the plain step of each seed (K = 1: the paper's case)
        num = rngs.shape[0]
        outputs = []  # a loop, not a comprehension: one frame less between the loop and the loss
        for s, b, r in zip(_unstack(states, num), _unstack(batch, num), _unstack(rngs, num)):
            outputs.append(step.train_step(s, teacher_variables, b, r, cfg=cfg))
        return _stack(outputs)

    def own(state, seed_batch, rng):
        return step.train_step(state, teacher_variables, seed_batch, rng, cfg=cfg)

    return map_seeds(own, seed_axis, (0, 0, 0), states, batch, rngs)


def seeds_eval_step(variables: Any, batch: dict, *, model: nn.Module, mean, std, seed_axis: str = "unroll"):
    """:func:`~sld_jax.train.step.eval_step` of K seeds' variables (leading axis K) on one shared batch: sums ``[K]``."""
    return map_seeds(
        lambda v: step.eval_step(v, batch, model=model, mean=mean, std=std), seed_axis, (0,), variables
    )
