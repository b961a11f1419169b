"""Data benchmark: images/s of the input pipelines, next to what a training step consumes.

``python -m sld_jax.bench data [--batch 64] [--min-time 2.0] [--jpegs 64] [--jpeg-size 375x500]
[--imagenet-batch 32] [--no-step]``

Rows:

- ``cifar on-device views``: random uint8 data of CIFAR shape (50,000 x 32x32x3) in host memory ->
  :func:`sld_jax.data.pipeline.train_batches` (global batches on the mesh) -> jitted
  ``augment.make_views`` (weak + strong: crop, flip, RandAugment(2), Cutout, normalise), blocking.
- ``cifar views only``: the jitted ``make_views`` on one resident batch (no host work).
- ``imagenet host train``: :func:`sld_jax.data.imagenet.train_dataset` on generated JPEGs
  (decode, two random-resized-crop 224 + flip views), batches pulled to numpy.
- ``imagenet host eval``: :func:`sld_jax.data.imagenet.eval_dataset` (decode, resize 256, centre 224).
- ``step resnet32x4->resnet8x4`` (unless ``--no-step``): a stand-in of the training step's cost on
  the same backend: the teacher's inference on both views plus the student's forward+backward on
  each view (the optimizer update, a few element-wise ops, is left out). The ``x step`` column
  divides each pipeline's images/s by the step's.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
from typing import Callable, Iterator

import numpy as np

from sld_jax.bench.common import machine_description, time_fn

CIFAR_SHAPE = (50_000, 32, 32, 3)


def _load() -> str:
    try:
        return "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "load average unavailable"


def _cycle_epochs(make_epoch: Callable[[int], Iterator]) -> Iterator:
    for epoch in itertools.count(1):
        yield from make_epoch(epoch)


def cifar_pipeline(batch: int, *, seed: int = 0) -> tuple[Callable[[], object], Callable[[], object]]:
    """``(pipeline_step, views_only)``: zero-argument callables that each produce one augmented batch."""
    import jax

    from sld_jax.data import augment, pipeline, sources

    spec = sources.get_spec("cifar100")
    rng = np.random.default_rng(seed)
    split = sources.InMemorySplit(
        images=rng.integers(0, 256, CIFAR_SHAPE, dtype=np.uint8),
        labels=rng.integers(0, spec.num_classes, CIFAR_SHAPE[0]),
        spec=spec,
        split="train",
    )
    mesh = jax.sharding.Mesh(jax.devices(), ("data",))  # as the trainer builds it (auto axis types)
    global_batch = batch * (len(jax.devices()) if batch % len(jax.devices()) else 1)
    base = jax.random.PRNGKey(seed)

    @jax.jit
    def views(step, images, index):
        key = jax.random.fold_in(base, step)
        return augment.make_views(key, images, index, mean=spec.mean, std=spec.std, padding=spec.crop_padding)

    batches = _cycle_epochs(
        lambda epoch: pipeline.train_batches(
            split, global_batch_size=global_batch, seed=seed, epoch=epoch, mesh=mesh
        )
    )
    counter = itertools.count()

    def pipeline_step():
        b = next(batches)
        return jax.block_until_ready(views(next(counter), b["image"], b["index"]))

    resident = next(
        pipeline.train_batches(split, global_batch_size=global_batch, seed=seed, epoch=0, mesh=mesh)
    )

    def views_only():
        return jax.block_until_ready(views(next(counter), resident["image"], resident["index"]))

    return pipeline_step, views_only


def imagenet_pipelines(num_jpegs: int, height: int, width: int, batch: int) -> tuple[Callable, Callable]:
    """``(train_step, eval_step)``: each pulls one host batch of ``batch`` images to numpy."""
    from sld_jax.data import imagenet

    jpegs = imagenet.synthetic_jpegs(num_jpegs, height=height, width=width, seed=0)
    repeats = 1_000
    raw = imagenet.raw_from_jpegs(jpegs).repeat(repeats)
    n = num_jpegs * repeats
    train = imagenet.train_dataset(
        raw, num_examples=n, local_batch_size=batch, seed=0, epoch=1, shuffle_buffer=min(n, 1_000)
    ).as_numpy_iterator()
    evals = imagenet.eval_dataset(raw, num_examples=n, local_batch_size=batch).as_numpy_iterator()
    return (lambda: next(train)), (lambda: next(evals))


def step_standin(batch: int) -> Callable[[], object] | None:
    """One resnet32x4 -> resnet8x4 step's compute (see the module doc), or None without the zoo."""
    try:
        from sld_jax.models import get_model
    except ImportError:
        return None
    import jax
    import jax.numpy as jnp

    teacher = get_model("resnet32x4", num_classes=100)
    student = get_model("resnet8x4", num_classes=100)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, batch, 32, 32, 3)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 100, batch), jnp.int32)
    t_vars = teacher.init(jax.random.PRNGKey(0), x[0], train=False)
    s_vars = student.init(jax.random.PRNGKey(1), x[0], train=False)

    @jax.jit
    def step(s_vars, t_vars, x, y):
        t_logits = teacher.apply(t_vars, x.reshape((-1,) + x.shape[2:]), train=False)[0]
        t_logits = jax.lax.stop_gradient(t_logits).reshape(2, batch, -1)

        def loss(params):
            stats, total = s_vars["batch_stats"], 0.0
            for v in range(2):  # weak, then strong: two train-mode passes as in the reference
                (logits, _), upd = student.apply(
                    {"params": params, "batch_stats": stats}, x[v], train=True, mutable=["batch_stats"]
                )
                stats = upd["batch_stats"]
                logp = jax.nn.log_softmax(logits)
                target = jax.nn.softmax(t_logits[v] / 4.0)
                total = total - jnp.mean(jnp.take_along_axis(logp, y[:, None], 1))
                total = total + jnp.mean(jnp.sum(target * (jnp.log(target + 1e-12) - logp), -1))
            return total, stats

        return jax.value_and_grad(loss, has_aux=True)(s_vars["params"])

    return lambda: jax.block_until_ready(step(s_vars, t_vars, x, y))


def _parse_size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sld_jax.bench data", description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="CIFAR global batch (reference: 64)")
    parser.add_argument("--min-time", type=float, default=2.0, help="seconds of timing per row")
    parser.add_argument("--jpegs", type=int, default=64, help="distinct generated JPEGs")
    parser.add_argument("--jpeg-size", type=_parse_size, default=(375, 500), help="HxW of the JPEGs")
    parser.add_argument("--imagenet-batch", type=int, default=32, help="host batch of the ImageNet rows")
    parser.add_argument("--no-step", action="store_true", help="skip the training-step stand-in")
    args = parser.parse_args(argv)

    print(f"machine: {machine_description()}")
    print(f"{_load()} (before)")
    rows = []
    timing = functools.partial(time_fn, warmup=2, min_time=args.min_time)

    pipeline_step, views_only = cifar_pipeline(args.batch)
    rows.append(("cifar on-device views (host batches + make_views)", args.batch, timing(pipeline_step)))
    rows.append(("cifar views only (make_views, resident batch)", args.batch, timing(views_only)))
    h, w = args.jpeg_size
    train_step, eval_step = imagenet_pipelines(args.jpegs, h, w, args.imagenet_batch)
    rows.append(
        (
            f"imagenet host train ({h}x{w} JPEG -> 2 x 224 crops)",
            args.imagenet_batch,
            timing(train_step, warmup=3),
        )
    )
    rows.append(
        (f"imagenet host eval ({h}x{w} JPEG -> 256 -> 224)", args.imagenet_batch, timing(eval_step, warmup=3))
    )
    step = None if args.no_step else step_standin(args.batch)
    step_rate = None
    if step is not None:
        seconds = time_fn(step, warmup=1, min_time=0.0, min_iters=2)  # seconds per call on a CPU
        step_rate = args.batch / seconds
        rows.append(("step resnet32x4->resnet8x4 (stand-in, fwd+bwd)", args.batch, seconds))

    print(f"{_load()} (after)")
    print()
    print("| pipeline | batch | ms / batch | images / s | x step |")
    print("| --- | --- | --- | --- | --- |")
    for name, batch, seconds in rows:
        rate = batch / seconds
        ratio = f"{rate / step_rate:.1f}" if step_rate and not name.startswith("step") else ""
        print(f"| {name} | {batch} | {seconds * 1e3:.1f} | {rate:,.0f} | {ratio} |")
    return 0
