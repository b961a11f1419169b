"""Model benchmark: forward+backward images/s of zoo models, sld_jax against a PyTorch twin.

``python -m sld_jax.bench models [--models resnet8x4,resnet32x4] [--batch-sizes 64,256]
[--dtypes float32,bfloat16] [--min-time 1.0] [--repeats 2] [--quick] [--no-torch]
[--torch-device cpu|cuda] [--torch-channels-last] [--torch-threads N] [--peak-tflops X]``

Times one training-mode forward+backward on 32x32 images: ``jax.jit(jax.value_and_grad(loss))`` of
the mean cross-entropy with respect to the parameters (BatchNorm batch statistics, running statistics
returned as the auxiliary output; no optimizer update). With PyTorch installed it also times the
reference-layout twin (``sld_jax/models/torch_twins.py``) doing ``cross_entropy(model(x), y).backward()``
in train mode on the same shapes (``torch.autocast`` for bfloat16). Every cell is timed in turn for
both implementations, ``--repeats`` rounds; a round's figure is a median and the table keeps the best
round (the least disturbed on a shared machine). The table also gives the achieved training FLOP/s,
counted as ``6 x`` the forward multiply-adds (forward 2 FLOPs per MAC, backward twice the forward),
and, on a GPU whose peak is known or given with ``--peak-tflops``, the fraction of peak.
``--quick`` is a short run (batch 64 only, one round, 0.3 s per cell).
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Callable

import numpy as np

from sld_jax.bench.common import machine_description, time_fn

# Dense peak TFLOP/s by device kind (substring match) and compute dtype. float32 is the TF32 tensor-core
# peak: by default XLA may compute float32 convolutions with TF32 on such GPUs.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H100": {"bfloat16": 989.4, "float32": 494.7},
    "H200": {"bfloat16": 989.4, "float32": 494.7},
    "A100": {"bfloat16": 312.0, "float32": 156.0},
}


def _dtype(name: str) -> Any:
    import jax.numpy as jnp

    table = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
    if name not in table:
        raise argparse.ArgumentTypeError(f"dtype must be float32 or bfloat16, got {name!r}")
    return table[name]


def random_variables(model: Any, image_size: int, seed: int = 0) -> dict[str, Any]:
    """Seeded He-normal weights for ``model`` (from numpy: no random-number program to compile).

    Args:
      model: a zoo model.
      image_size: side of the square input used to trace shapes.
      seed: numpy seed.

    Returns:
      ``{"params", "batch_stats"}`` of float32 ``jax.Array``: kernels normal with std
      ``sqrt(2 / fan_in)``, vectors (biases, BatchNorm scale/bias) 0 / 1 as at initialisation,
      running statistics 0 / 1.
    """
    import jax
    import jax.numpy as jnp

    from sld_jax.models import summarize

    rng = np.random.default_rng(seed)
    shapes = summarize(model, (1, image_size, image_size, 3)).variables

    def fill(path, leaf):
        name = str(path[-1].key)
        if len(leaf.shape) > 1:
            return jnp.asarray(
                rng.normal(0.0, np.sqrt(2.0 / np.prod(leaf.shape[:-1])), leaf.shape), jnp.float32
            )
        return jnp.full(leaf.shape, 1.0 if name in ("scale", "var") else 0.0, jnp.float32)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def jax_train_step(
    name: str, batch: int, dtype: str = "float32", *, num_classes: int = 100, image_size: int = 32
) -> Callable[[], object]:
    """A zero-argument callable running one jitted training-mode forward+backward, blocking on the result.

    Args:
      name: registry name of the model.
      batch: images per step.
      dtype: compute dtype name (``float32`` or ``bfloat16``); parameters stay float32.
      num_classes: classifier outputs.
      image_size: side of the square input.

    Returns:
      ``run()`` that computes ``(loss, new batch_stats), grads`` and waits for them.
    """
    import jax
    import jax.numpy as jnp
    import optax

    from sld_jax.models import get_model

    model = get_model(name, num_classes=num_classes, dtype=_dtype(dtype))
    variables = random_variables(model, image_size)
    rng = np.random.default_rng(1)
    images = jnp.asarray(rng.normal(size=(batch, image_size, image_size, 3)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, num_classes, batch), jnp.int32)

    def loss_fn(params, batch_stats, x, y):
        (logits, _), updates = model.apply(
            {"params": params, "batch_stats": batch_stats}, x, train=True, mutable=["batch_stats"]
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, updates["batch_stats"]

    step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    params, stats = variables["params"], variables["batch_stats"]
    return lambda: jax.block_until_ready(step(params, stats, images, labels))


def torch_train_step(
    name: str,
    batch: int,
    dtype: str = "float32",
    *,
    num_classes: int = 100,
    image_size: int = 32,
    device: str = "cpu",
    channels_last: bool = False,
) -> Callable[[], object]:
    """The PyTorch twin's training-mode forward+backward as a zero-argument callable (torch imported here).

    Args:
      name: a model with a twin in :mod:`sld_jax.models.torch_twins`.
      batch: images per step.
      dtype: ``float32``, or ``bfloat16`` (``torch.autocast``).
      num_classes: classifier outputs.
      image_size: side of the square input.
      device: ``cpu`` or ``cuda``.
      channels_last: use the ``torch.channels_last`` memory format (NHWC) for model and input.
    """
    import torch
    import torch.nn.functional as F

    from sld_jax.models.torch_twins import build_torch_model

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = build_torch_model(name, num_classes).to(device=device, memory_format=fmt)
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(batch, 3, image_size, image_size)).astype(np.float32))
    x = x.to(device=device, memory_format=fmt)
    y = torch.from_numpy(rng.integers(0, num_classes, batch)).to(device)
    autocast = dtype == "bfloat16"

    def run():
        model.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=autocast):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return loss

    return run


def _load() -> str:
    try:
        return "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "load average unavailable"


def _fmt(images_per_s: float) -> str:
    return f"{images_per_s:,.1f}" if images_per_s < 100 else f"{images_per_s:,.0f}"


def _peak(dtype: str, override: float | None) -> float | None:
    if override:
        return override
    import jax

    if jax.default_backend() != "gpu":
        return None
    kind = jax.devices()[0].device_kind
    for key, peaks in PEAK_TFLOPS.items():
        if key in kind:
            return peaks.get(dtype)
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m sld_jax.bench models", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--models", default="resnet8x4,resnet32x4", help="comma-separated registry names")
    parser.add_argument("--batch-sizes", default="64,256", help="comma-separated batch sizes")
    parser.add_argument("--dtypes", default="float32", help="comma-separated: float32, bfloat16")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds of timing per cell and round")
    parser.add_argument("--repeats", type=int, default=2, help="rounds over the whole table (best kept)")
    parser.add_argument("--quick", action="store_true", help="short run: batch 64, one round, 0.3 s per cell")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch twin")
    parser.add_argument("--torch-device", default="cpu", help="cpu, or cuda to time the twin on a GPU")
    parser.add_argument(
        "--torch-channels-last", action="store_true", help="twin in channels_last (NHWC) format"
    )
    parser.add_argument("--torch-threads", type=int, default=0, help="torch.set_num_threads (0: default)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak for the %% column")
    args = parser.parse_args(argv)

    from sld_jax.models import MODEL_INFO, MODELS
    from sld_jax.models.twin_specs import CIFAR_RESNETS, torch_available

    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from sld_jax.models.MODELS")
    try:
        batches = [int(b) for b in args.batch_sizes.split(",") if b]
    except ValueError:
        parser.error(f"--batch-sizes must be comma-separated integers, got {args.batch_sizes!r}")
    dtypes = [d for d in args.dtypes.split(",") if d]
    for d in dtypes:
        _dtype(d)
    # one warm-up call (it includes compilation), then at least 3 timed calls or --min-time seconds
    min_time, repeats, min_iters = args.min_time, args.repeats, 3
    if args.quick:
        batches, min_time, repeats, min_iters = batches[:1], 0.3, 1, 2

    torch = None
    if not args.no_torch and torch_available():
        import torch

        if args.torch_threads > 0:
            torch.set_num_threads(args.torch_threads)
    elif not args.no_torch:
        print("PyTorch not installed: timing sld_jax only.")

    print(f"machine: {machine_description()}")
    if torch is not None:
        layout = "channels_last" if args.torch_channels_last else "NCHW"
        print(
            f"torch {torch.__version__}, device {args.torch_device}, {torch.get_num_threads()} CPU threads, {layout}"
        )
    print(f"{_load()} (before)")

    cells = []  # (name, batch, dtype, jax_fn, torch_fn or None)
    for name in names:
        resolution = MODEL_INFO.get(name, {}).get("resolution", 32)
        for batch in batches:
            for dtype in dtypes:
                jfn = jax_train_step(name, batch, dtype, image_size=resolution)
                tfn = None
                if torch is not None and name in CIFAR_RESNETS:
                    tfn = torch_train_step(
                        name,
                        batch,
                        dtype,
                        image_size=resolution,
                        device=args.torch_device,
                        channels_last=args.torch_channels_last,
                    )
                cells.append((name, batch, dtype, jfn, tfn))

    best: dict[int, list[float]] = {}
    for _ in range(repeats):
        for i, (_, _, _, jfn, tfn) in enumerate(cells):
            times = [time_fn(jfn, warmup=1, min_time=min_time, min_iters=min_iters)]
            times.append(
                time_fn(tfn, warmup=1, min_time=min_time, min_iters=min_iters) if tfn else float("nan")
            )
            best[i] = times if i not in best else [min(a, b) for a, b in zip(best[i], times)]

    print(f"{_load()} (after)")
    header = (
        "| model | batch | dtype | sld_jax img/s | PyTorch img/s | sld_jax / PyTorch | sld_jax TFLOP/s "
        "| % of peak |"
    )
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    for i, (name, batch, dtype, _, _) in enumerate(cells):
        tj, tt = best[i]
        ips_j, ips_t = batch / tj, batch / tt
        macs = MODEL_INFO.get(name, {}).get("macs")
        tflops = ips_j * 6 * macs / 1e12 if macs else float("nan")
        peak = _peak(dtype, args.peak_tflops)
        pct = f"{100 * tflops / peak:.1f}" if peak and macs else "-"
        torch_cell = _fmt(ips_t) if np.isfinite(ips_t) else "-"
        ratio = f"{ips_j / ips_t:.2f}x" if np.isfinite(ips_t) else "-"
        print(
            f"| {name} | {batch} | {dtype} | {_fmt(ips_j)} | {torch_cell} | {ratio} | {tflops:.3f} | {pct} |"
        )
    return 0
