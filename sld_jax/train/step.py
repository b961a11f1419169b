"""The train and eval steps: pure per-device functions and their ``shard_map`` wrappers.

:func:`train_step` is one optimiser step of one seed. The trainer calls :func:`dispatch_steps`:
S such steps (a ``lax.scan`` when S > 1) of K seeds (:func:`seeds_train_step`, the seeds
``vmap``ped, unrolled or ``lax.map``ped: :func:`map_seeds`), on batches stacked on the host or
gathered on the device from a resident split (:func:`gather_batch`).

A step is a pure function ``(state, teacher_variables, batch, rng) -> (state, metrics)``; all
hyper-parameters that change the computation are fields of the frozen, hashable
:class:`StepConfig`, so the loop holds one compiled function per static variant (two for SLD: the
γ gate switches ``student_swap``). Inside ``shard_map`` every device sees its slice of the global
batch; the loss of each device is weighted by its share of the real (unpadded) examples and the
gradients are summed over the ``data`` axis, so the update equals the single-device update on the
whole batch (with per-device BatchNorm statistics unless the model syncs them). The gradient sum
over devices comes from shard_map's varying-axis typing (``check_vma``), not an explicit psum.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from sld_jax.data import augment
from sld_jax.memo import shared
from sld_jax.train import methods, schedule
from sld_jax.train.mesh import DATA_AXIS
from sld_jax.train.state import TrainState


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """Static description of a train step (hashable; one compiled step per distinct value).

    Attributes:
      student: the student flax module.
      teacher: the frozen teacher module, or None (``vanilla``).
      method: the :class:`~sld_jax.train.methods.Method` (objective, views, inputs).
      objective_kwargs: its keyword arguments (:func:`~sld_jax.train.methods.objective_kwargs`).
      tx: the optax optimiser.
      student_swap: the γ gate's static value.
      steps_per_epoch: to derive the (1-based) epoch from the step counter.
      mean, std: per-channel normalisation constants (0–1 scale).
      crop_padding: zero padding of the random crop.
      host_crops: images arrive already cropped and flipped by the host (ImageNet): ``image`` is the
        weak view and ``image_strong`` the strong view's crop; only RandAugment/Cutout run here.
    """

    student: nn.Module
    teacher: nn.Module | None
    method: methods.Method
    objective_kwargs: tuple[tuple[str, Any], ...]
    tx: optax.GradientTransformation
    student_swap: bool
    steps_per_epoch: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int = 4
    host_crops: bool = False

    @property
    def two_views(self) -> bool:
        """Whether the step feeds a weak and a strong view (else the weak view only)."""
        return self.method.two_views


def _views(cfg: StepConfig, batch: dict, rng: jax.Array) -> list[jax.Array]:
    """The normalised float32 views of a device-local batch (weak, and strong if two_views)."""
    images, ids = batch["image"], batch["index"]
    if cfg.host_crops:
        weak = augment.normalize(images, cfg.mean, cfg.std)
        if not cfg.two_views:
            return [weak]
        strong = augment.strong_from_cropped(rng, batch["image_strong"], ids, mean=cfg.mean, std=cfg.std)
        return [weak, strong]
    if cfg.two_views:
        weak, strong = augment.make_views(
            rng, images, ids, mean=cfg.mean, std=cfg.std, padding=cfg.crop_padding
        )
        return [weak, strong]
    keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(ids)
    weak = jax.vmap(functools.partial(augment.weak_view, padding=cfg.crop_padding))(keys, images)
    return [augment.normalize(weak, cfg.mean, cfg.std)]


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _prepare(cfg: StepConfig, teacher_variables: Any, batch: dict, step_rng: jax.Array):
    """The views of a batch and the teacher's (stop-gradient) logits and features on them."""
    return _prepare_seeds(cfg, teacher_variables, [batch], [step_rng])[0]


def _prepare_seeds(cfg: StepConfig, teacher_variables: Any, batches: list, step_rngs: list) -> list:
    """:func:`_prepare` of several seeds' batches, with one teacher call on all their views."""
    views = [_views(cfg, batch, rng) for batch, rng in zip(batches, step_rngs)]
    if cfg.teacher is None:
        return [(v, None, ()) for v in views]
    flat = [view for seed_views in views for view in seed_views]
    t_logits, t_features = cfg.teacher.apply(teacher_variables, jnp.concatenate(flat, axis=0), train=False)
    logits = jnp.split(jax.lax.stop_gradient(t_logits), len(flat), axis=0)
    pooled = jnp.split(jax.lax.stop_gradient(t_features["pooled"]), len(flat), axis=0)
    out, i = [], 0
    for seed_views in views:
        n = len(seed_views)
        embeddings = tuple(pooled[i : i + n]) if cfg.method.uses_features else ()
        out.append((seed_views, tuple(logits[i : i + n]), embeddings))
        i += n
    return out


def train_step(
    state: TrainState, teacher_variables: Any, batch: dict, rng: jax.Array, *, cfg: StepConfig
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimiser step on the device-local slice of a global batch (call inside shard_map).

    Args:
      state: the replicated TrainState.
      teacher_variables: the replicated frozen teacher ``{"params", "batch_stats"}`` (or None).
      batch: device-local dict: ``image`` uint8 [b, H, W, 3], ``label`` int32 [b], ``mask`` bool [b]
        (False for padding), ``index`` int32 [b] global example ids (augmentation keys).
      rng: the run's base key; the step folds in ``state.step`` and each example's id, so the
        augmentation depends on (seed, step, example) only, not on the device count.
      cfg: the static :class:`StepConfig`.

    Returns:
      ``(new_state, metrics)``: metrics are sums over the global batch's real examples (divide by
      ``metrics["count"]``), plus ``lr`` and ``finite`` (1.0 when the step was applied).
    """
    step_rng = jax.random.fold_in(rng, state.step)
    prepared = _prepare(cfg, teacher_variables, batch, step_rng)
    return _update(cfg, state, prepared, batch, step_rng)


def _update(cfg: StepConfig, state: TrainState, prepared, batch: dict, step_rng: jax.Array):
    """The student's forward and backward passes on prepared views, and the optimiser update."""
    views, teacher_logits, teacher_embeddings = prepared
    labels, mask = batch["label"], batch["mask"]
    epoch = schedule.epoch_of_step(state.step, cfg.steps_per_epoch).astype(jnp.float32)
    count = jnp.sum(mask.astype(jnp.float32))
    total = jax.lax.psum(count, DATA_AXIS)
    share = count / jnp.maximum(total, 1.0)

    device_rng = jax.random.fold_in(step_rng, jax.lax.axis_index(DATA_AXIS))
    dropout_keys = [jax.random.fold_in(device_rng, 1 + i) for i in range(len(views))]

    def loss_fn(params):
        batch_stats = state.batch_stats
        student_logits, student_embeddings = [], []
        for i, view in enumerate(views):  # separate passes: BN statistics per view, weak then strong
            (logits, features), updates = cfg.student.apply(
                {"params": params, "batch_stats": batch_stats},
                view,
                train=True,
                mask=mask,
                mutable=["batch_stats"],
                rngs={"dropout": dropout_keys[i]},  # used by models with dropout only
            )
            batch_stats = updates["batch_stats"]
            student_logits.append(logits)
            student_embeddings.append(features["pooled"])
        loss, terms = methods.apply(
            cfg.method,
            cfg.objective_kwargs,
            tuple(student_logits),
            teacher_logits,
            labels,
            mask,
            epoch=epoch,
            student_swap=cfg.student_swap,
            student_embeddings=tuple(student_embeddings) if cfg.method.uses_features else (),
            teacher_embeddings=teacher_embeddings,
        )
        return loss * share, (terms, batch_stats, student_logits[0])

    # The parameters are replicated (invariant over ``data``) and the loss varies per device, so
    # shard_map's varying-axis typing makes the gradient the sum over devices (the transpose of the
    # implicit broadcast is a psum): with the ``share`` weights it is the global-batch gradient.
    grads, (terms, batch_stats, logits) = jax.grad(loss_fn, has_aux=True)(state.params)
    batch_stats = jax.lax.pmean(batch_stats, DATA_AXIS)
    updates, opt_state = cfg.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)

    correct = jnp.sum(jnp.where(mask, jnp.argmax(logits, -1) == labels, False))
    metrics = {k: jax.lax.psum(v * share, DATA_AXIS) * total for k, v in terms.items()}
    metrics["correct"] = jax.lax.psum(correct.astype(jnp.float32), DATA_AXIS)
    metrics["count"] = total
    finite = _all_finite((metrics["loss"], grads))
    metrics["finite"] = finite.astype(jnp.float32)

    new_state = state.replace(
        step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state
    )
    # A non-finite step leaves parameters, statistics and optimiser state untouched.
    new_state = jax.tree.map(
        lambda new, old: jnp.where(finite, new, old), new_state, state.replace(step=state.step + 1)
    )
    return new_state, metrics


def eval_step(variables: Any, batch: dict, *, model: nn.Module, mean, std) -> dict[str, jax.Array]:
    """Sums of top-1/top-5 correct, cross-entropy and count over the real examples of a batch.

    Args:
      variables: the model's ``{"params", "batch_stats"}``.
      batch: device-local dict with ``image`` uint8 [b, H, W, 3], ``label`` [b], ``mask`` [b].
      model: the flax module (run in inference mode).
      mean, std: normalisation constants.

    Returns:
      dict of float32 scalars summed over the ``data`` axis: ``top1``, ``top5``, ``ce``, ``count``.
    """
    x = augment.normalize(batch["image"], mean, std)
    logits, _ = model.apply(variables, x, train=False)
    logits = logits.astype(jnp.float32)
    labels, mask = batch["label"], batch["mask"]
    k = min(5, logits.shape[-1])
    topk = jax.lax.top_k(logits, k)[1]
    hit = topk == labels[:, None]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    sums = {
        "top1": jnp.sum(jnp.where(mask, hit[:, 0], False).astype(jnp.float32)),
        "top5": jnp.sum(jnp.where(mask, jnp.any(hit, -1), False).astype(jnp.float32)),
        "ce": jnp.sum(jnp.where(mask, ce, 0.0)),
        "count": jnp.sum(mask.astype(jnp.float32)),
    }
    return jax.lax.psum(sums, DATA_AXIS)


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
    cfg: StepConfig,
    seed_axis: str = "unroll",
    shares_data: bool = False,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimiser step of every seed (call inside shard_map): :func:`train_step` per seed.

    Args:
      states: the TrainState of K seeds (a leading axis K on every leaf).
      teacher_variables: the shared frozen teacher's variables (or None).
      batch: device-local dict as in :func:`train_step` with a leading seed axis ``[K, b, ...]``, or
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
        prepared = _prepare(cfg, teacher_variables, batch, step_rng)

        def shared(state, rng):
            return _update(cfg, state, prepared, batch, jax.random.fold_in(rng, state.step))

        return map_seeds(shared, seed_axis, (0, 0), states, rngs)

    if seed_axis == "unroll" and cfg.teacher is not None:
        # One teacher call on every seed's views (a K-times larger batch), then each seed's update.
        num = rngs.shape[0]
        seed_states, seed_batches = _unstack(states, num), _unstack(batch, num)
        step_rngs = [jax.random.fold_in(rngs[k], seed_states[k].step) for k in range(num)]
        prepared = _prepare_seeds(cfg, teacher_variables, seed_batches, step_rngs)
        return _stack([_update(cfg, *args) for args in zip(seed_states, prepared, seed_batches, step_rngs)])

    def own(state, seed_batch, rng):
        return train_step(state, teacher_variables, seed_batch, rng, cfg=cfg)

    return map_seeds(own, seed_axis, (0, 0, 0), states, batch, rngs)


def gather_batch(split: dict, ids: jax.Array) -> dict[str, jax.Array]:
    """A batch of a device-resident split: ``ids`` int32 ``[..., b]`` (-1: padding) -> batch dict.

    Args:
      split: ``image`` uint8 ``[N, H, W, 3]`` and ``label`` int32 ``[N]``.
      ids: example indices into the split, -1 for padded rows.

    Returns:
      ``image`` uint8 ``[..., b, H, W, 3]`` (zeros in padded rows), ``label`` int32 (0 there),
      ``mask`` bool, ``index`` int32 — exactly what the host pipeline delivers for the same ids.
    """
    valid = ids >= 0
    safe = jnp.where(valid, ids, 0)
    image = jnp.where(valid[..., None, None, None], split["image"][safe], jnp.zeros((), jnp.uint8))
    label = jnp.where(valid, split["label"][safe], 0).astype(jnp.int32)
    return {"image": image, "label": label, "mask": valid, "index": ids.astype(jnp.int32)}


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

    def one_step(states, x):
        batch = gather_batch(split, x["ids"]) if "ids" in x else x
        if shares_data:
            batch = jax.tree.map(lambda v: v[0], batch)
        return seeds_train_step(
            states, teacher_variables, batch, rngs, cfg=cfg, seed_axis=seed_axis, shares_data=shares_data
        )

    if active.shape[0] == 1:  # one step per call: no scan
        states, metrics = one_step(states, jax.tree.map(lambda v: v[0], feed))
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


def seeds_eval_step(variables: Any, batch: dict, *, model: nn.Module, mean, std, seed_axis: str = "unroll"):
    """:func:`eval_step` of K seeds' variables (leading axis K) on one shared batch: sums ``[K]``."""
    return map_seeds(
        lambda v: eval_step(v, batch, model=model, mean=mean, std=std), seed_axis, (0,), variables
    )


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
