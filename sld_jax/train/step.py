"""One optimiser step and one evaluation step of one seed on one device's batch: pure functions.

:func:`train_step` is ``(state, teacher_variables, batch, rng) -> (state, metrics)``, called inside
``shard_map`` (every device sees its slice of the global batch). All hyper-parameters that change
the computation are fields of the frozen, hashable :class:`StepConfig`, so the loop holds one
compiled function per static variant (two for γ-gated methods: the gate switches ``student_swap``).
The loss of each device is weighted by its share of the real (unpadded) examples and the gradients
are summed over the ``data`` axis (:func:`global_batch_grad`, where that reduction happens), so the
update equals the single-device update on the whole batch (with per-device BatchNorm statistics
unless the model syncs them).

Around it: :mod:`sld_jax.train.seed_axis` (K seeds), :mod:`sld_jax.train.dispatch` (S steps per
call, the ``shard_map``/``jit`` wrappers).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from sld_jax.data import augment
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


def prepare(cfg: StepConfig, teacher_variables: Any, batch: dict, step_rng: jax.Array):
    """The views of a batch and the teacher's (stop-gradient) logits and features on them."""
    return prepare_seeds(cfg, teacher_variables, [batch], [step_rng])[0]


def prepare_seeds(cfg: StepConfig, teacher_variables: Any, batches: list, step_rngs: list) -> list:
    """:func:`prepare` of several seeds' batches, with one teacher call on all their views."""
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
    prepared = prepare(cfg, teacher_variables, batch, step_rng)
    return update(cfg, state, prepared, batch, step_rng)


def global_batch_grad(loss_fn):
    """``jax.grad(loss_fn, has_aux=True)`` inside ``shard_map``: its gradient is summed over the devices
    of the ``data`` axis. This is where the step's cross-device gradient reduction happens.

    The parameters are replicated (invariant over ``data``) and each device's loss varies, so under
    shard_map's varying-axis typing (``check_vma``) the transpose of the parameters' implicit
    broadcast is a ``psum`` over ``data``: autodiff returns the sum of the devices' gradients. Each
    device's loss is weighted by its share of the real examples, so the sum is the global batch's
    gradient. (An explicit ``pcast`` to varying and ``psum`` computes the same sum with one
    all-reduce per parameter instead of one per use, but compiles to another program: other float
    rounding, also on one device.)

    Args:
      loss_fn: ``params -> (loss, aux)``, the device's weighted share of the loss.

    Returns:
      ``params -> (grads, aux)``: the global-batch gradient at the replicated ``params``
      (replicated) and ``loss_fn``'s aux. (A function, not its value: the step's call stack stays
      that of ``jax.grad``.)
    """
    return jax.grad(loss_fn, has_aux=True)


def update(cfg: StepConfig, state: TrainState, prepared, batch: dict, step_rng: jax.Array):
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

    grads, (terms, batch_stats, logits) = global_batch_grad(loss_fn)(state.params)
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
