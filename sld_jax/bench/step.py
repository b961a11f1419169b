"""Train-step benchmark: the full resnet32x4 -> resnet8x4 SLD step, sld_jax against the reference.

``python -m sld_jax.bench step [--batch-sizes 64,256] [--dtypes float32] [--student-swap on|off|both]
[--min-time 2.0] [--no-torch] [--peak-tflops X]``

``python -m sld_jax.bench step --num-seeds 1,2,4,8 [--seed-axis unroll,vmap,map]
[--steps-per-dispatch 1] [--models resnet32x4,resnet8x4] [--dataset cifar100] [--batch-sizes 64]``
measures the seed axis instead: images/s per seed of K seeds trained in one compiled program, for
each way of computing the seed axis, and the ratio to K = 1 (1.0x: as fast as K separate runs).

sld_jax side: one compiled ``sld_jax.train.dispatch`` call (on-device weak+strong augmentation, teacher
inference on both views, two student train-mode passes, the SLD objective, the PyTorch-SGD update)
on CIFAR-shaped random uint8 images, over all local devices. PyTorch side (when installed): a
transcription of the reference step on the same shapes — teacher eval forward on both views under
``no_grad``, student forward on each view, the authors' SLD objective, ``backward`` and
``torch.optim.SGD``; its inputs are pre-augmented tensors (the reference augments in DataLoader
workers), so the comparison favours PyTorch. Figures are images/s (one image = one example with its
two views); the table names the machine. With a GPU it also prints the fraction of peak, counting
the step as teacher forward on 2 views plus student forward+backward (3x forward) on 2 views:
FLOPs per example = 2 x (2 x teacher MACs + 2 x 3 x student MACs).
"""

from __future__ import annotations

import argparse
import os
from typing import Callable

import numpy as np

from sld_jax.bench.common import machine_description, time_fn

TEACHER, STUDENT = "resnet32x4", "resnet8x4"
# Forward multiply-adds per 32x32 image (the model issue's figures).
MACS = {"resnet32x4": 1083.0e6, "resnet8x4": 177.1e6}


def step_flops_per_image() -> float:
    """Training FLOPs of one example: teacher fwd on 2 views + student fwd+bwd on 2 views."""
    return 2.0 * (2 * MACS[TEACHER] + 2 * 3 * MACS[STUDENT])


def jax_step(
    batch: int,
    *,
    dtype: str = "float32",
    student_swap: bool = True,
    num_seeds: int = 1,
    seed_axis: str = "auto",
    steps_per_dispatch: int = 1,
    teacher: str = TEACHER,
    student: str = STUDENT,
    dataset: str = "cifar100",
) -> Callable[[], object]:
    """A zero-argument callable running one compiled sld_jax dispatch (blocking).

    The dispatch is built by :func:`sld_jax.train.setup.build` from the paper's SLD config for
    ``teacher -> student`` (default resnet32x4 -> resnet8x4), as ``sld-train`` builds it, with
    ``num_seeds`` seeds and ``steps_per_dispatch`` steps per call, on random uint8 images of the
    dataset's shape and a randomly initialised teacher. One call runs ``steps_per_dispatch`` steps
    of every seed, each on a global batch of ``batch``.
    """
    import jax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from sld_jax import configs_lib, models
    from sld_jax.data import pipeline, sources
    from sld_jax.train import setup
    from sld_jax.train.data_io import RunData
    from sld_jax.train.mesh import DATA_AXIS, make_mesh

    mesh = make_mesh(jax.local_devices())
    if batch % mesh.size:
        raise ValueError(f"batch {batch} must be divisible by the {mesh.size} devices.")
    config = configs_lib.cifar_config("sld", teacher, student)
    config.dataset.name = dataset
    config.batch_size, config.compute_dtype = batch, dtype
    config.num_seeds, config.seed_axis, config.steps_per_dispatch = num_seeds, seed_axis, steps_per_dispatch
    config.data_placement = "host"
    spec = sources.get_spec(dataset)
    data = RunData(
        spec=spec,
        num_train=spec.train_size,
        steps_per_epoch=pipeline.steps_per_epoch(spec.train_size, batch),
        host_crops=False,
        train_batches=None,
        eval_batches=None,
    )
    teacher_model = models.get_model(teacher, num_classes=spec.num_classes)
    teacher_vars = models.init_variables(teacher_model, jax.random.PRNGKey(1), image_size=spec.image_size)
    built = setup.build(config, mesh, data=data, teacher_variables=teacher_vars)
    rng = np.random.default_rng(0)
    size, lead = spec.image_size, (steps_per_dispatch, num_seeds, batch)
    host = {
        "image": rng.integers(0, 256, lead + (size, size, 3), dtype=np.uint8),
        "label": rng.integers(0, spec.num_classes, lead).astype(np.int32),
        "mask": np.ones(lead, bool),
        "index": np.broadcast_to(np.arange(batch, dtype=np.int32), lead).copy(),
    }
    feed = jax.device_put(host, NamedSharding(mesh, P(None, None, DATA_AXIS)))
    step = built.dispatch(student_swap=student_swap)
    active = built.active(steps_per_dispatch)
    holder = {"state": built.state}

    def run():
        holder["state"], metrics = step(
            holder["state"], built.teacher_variables, feed, built.split, built.rngs, active
        )
        jax.block_until_ready(metrics)

    return run


def seeds_table(args) -> None:
    """For each seed-axis form and K: images/s over all seeds and the per-seed throughput ratio
    ``K * t(K=1) / t(K)`` (1.0x: K seeds in one program cost exactly K separate runs; above 1.0x
    the shared launches pay off). The K = 1 time is the fastest form's, so every ratio compares
    with the best single-seed run."""
    import time

    from sld_jax.train.hardware import seed_axis_mode

    counts = [int(k) for k in args.num_seeds.split(",")]
    modes = args.seed_axis.split(",")
    teacher, student = args.models.split(",")
    print(
        f"{teacher} -> {student} SLD, {args.dataset} shapes, global batch {args.batch_sizes} per seed, "
        f"{args.steps_per_dispatch} step(s) per dispatch, student swap {args.student_swap}"
    )
    batch = int(args.batch_sizes.split(",")[0])

    def measure(k, mode):
        fn = jax_step(
            batch,
            dtype=args.dtypes.split(",")[0],
            student_swap=args.student_swap != "off",
            num_seeds=k,
            seed_axis=mode,
            steps_per_dispatch=args.steps_per_dispatch,
            teacher=teacher,
            student=student,
            dataset=args.dataset,
        )
        t0 = time.perf_counter()
        fn()
        first = time.perf_counter() - t0
        seconds = time_fn(fn, warmup=1, min_time=args.min_time, min_iters=3) / args.steps_per_dispatch
        print(f"measured {mode} K={k}: {1e3 * seconds:.1f} ms/step", flush=True)
        return first, seconds

    # One seed is the plain step whatever the form: measured once, before and after the others
    # (the faster of the two is the baseline, so a ratio never flatters the seed axis).
    rows = [("one seed (plain step)", 1, *measure(1, "unroll"))]
    for mode in modes:
        rows += [(mode, k, *measure(k, mode)) for k in counts if k > 1]
    again = measure(1, "unroll")
    single = min(rows[0][3], again[1])
    print(
        "| seed axis | K | compile + first call s | ms/step (all seeds) | img/s (all seeds) | per-seed throughput vs K=1 |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for name, k, first, seconds in rows:
        if name != rows[0][0] and name == "auto":
            name = f"auto ({seed_axis_mode({'seed_axis': 'auto', 'num_seeds': k})})"
        print(
            f"| {name} | {k} | {first:.1f} | {1e3 * seconds:.1f} | {k * batch / seconds:.1f} | "
            f"{k * single / seconds:.2f}x |"
        )


def torch_step(batch: int, *, student_swap: bool = True, device: str = "cpu") -> Callable[[], object]:
    """The reference training step transcribed to PyTorch (pre-augmented inputs)."""
    import torch

    from sld_jax.bench.loss import torch_reference_objective
    from sld_jax.models.torch_twins import build_torch_model

    student = build_torch_model(STUDENT, 100).to(device).train()
    teacher = build_torch_model(TEACHER, 100).to(device).eval()
    opt = torch.optim.SGD(student.parameters(), lr=0.025, momentum=0.9, weight_decay=5e-4)
    objective = torch_reference_objective(student_swap)
    gen = torch.Generator().manual_seed(0)
    weak = torch.randn(batch, 3, 32, 32, generator=gen).to(device)
    strong = torch.randn(batch, 3, 32, 32, generator=gen).to(device)
    labels = torch.randint(0, 100, (batch,), generator=gen).to(device)

    def run():
        s_weak = student(weak)
        s_strong = student(strong)
        with torch.no_grad():
            t_weak = teacher(weak)
            t_strong = teacher(strong)
        loss = objective(s_weak, s_strong, t_weak, t_strong, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device != "cpu":
            torch.cuda.synchronize()

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sld_jax.bench step", description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="64,256")
    parser.add_argument("--dtypes", default="float32", help="comma list: float32,bfloat16")
    parser.add_argument("--student-swap", choices=("on", "off", "both"), default="on")
    parser.add_argument("--min-time", type=float, default=2.0)
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="accelerator peak (TFLOP/s) for the fraction-of-peak column; known "
        "GPUs (H100/H200/A100) are looked up per dtype",
    )
    parser.add_argument("--torch-device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument(
        "--num-seeds",
        default=None,
        help="comma list of K (e.g. 1,2,4,8): the seed-axis table instead of the PyTorch comparison",
    )
    parser.add_argument("--seed-axis", default="unroll,vmap,map", help="comma list: unroll,vmap,map,auto")
    parser.add_argument("--steps-per-dispatch", type=int, default=1)
    parser.add_argument("--models", default=f"{TEACHER},{STUDENT}", help="teacher,student")
    parser.add_argument("--dataset", default="cifar100", help="shapes of: cifar100 (32x32) or digits (16x16)")
    args = parser.parse_args(argv)
    if args.num_seeds:
        print(f"machine: {machine_description()}")
        try:
            print("load average %.2f %.2f %.2f" % os.getloadavg())
        except OSError:
            pass
        seeds_table(args)
        return 0
    batches = [int(b) for b in args.batch_sizes.split(",")]
    dtypes = args.dtypes.split(",")
    swaps = {"on": [True], "off": [False], "both": [False, True]}[args.student_swap]
    from sld_jax.models.twin_specs import torch_available

    teacher, student = args.models.split(",")
    # FLOPs and the PyTorch transcription are those of the paper's pair on CIFAR shapes only.
    paper_pair = (teacher, student, args.dataset) == (TEACHER, STUDENT, "cifar100")
    flops = step_flops_per_image() if paper_pair else None
    use_torch = not args.no_torch and torch_available() and paper_pair
    torch_device = args.torch_device
    if use_torch and torch_device is None:
        import torch

        torch_device = "cuda" if torch.cuda.is_available() else "cpu"
    import jax

    from sld_jax.bench.models import PEAK_TFLOPS

    kind = jax.devices()[0].device_kind
    peaks = next((v for k, v in PEAK_TFLOPS.items() if k in kind), None)

    def peak_for(dtype):
        return args.peak_tflops or (peaks or {}).get(dtype)

    show_peak = bool(args.peak_tflops or peaks)
    print(f"machine: {machine_description()}")
    if use_torch:
        print(f"PyTorch reference on {torch_device}")
    try:
        print("load average %.2f %.2f %.2f" % os.getloadavg())
    except OSError:
        pass
    header = "| batch | dtype | student swap | sld_jax ms/step | sld_jax img/s | TFLOP/s |"
    header += " fraction of peak |" if show_peak else ""
    header += " PyTorch ms/step | PyTorch img/s | speed-up |" if use_torch else ""
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    for batch in batches:
        for dtype in dtypes:
            for swap in swaps:
                seconds = time_fn(
                    jax_step(
                        batch,
                        dtype=dtype,
                        student_swap=swap,
                        teacher=teacher,
                        student=student,
                        dataset=args.dataset,
                    ),
                    warmup=2,
                    min_time=args.min_time,
                    min_iters=3,
                )
                tflops = batch * flops / seconds / 1e12 if flops else None
                row = (
                    f"| {batch} | {dtype} | {'on' if swap else 'off'} | {1e3 * seconds:.1f} | "
                    f"{batch / seconds:.1f} | {f'{tflops:.3f}' if tflops else '-'} |"
                )
                if show_peak:
                    row += f" {tflops / peak_for(dtype):.1%} |" if tflops and peak_for(dtype) else " - |"
                if use_torch:
                    if dtype == "float32":
                        ref = time_fn(
                            torch_step(batch, student_swap=swap, device=torch_device),
                            warmup=1,
                            min_time=args.min_time,
                            min_iters=3,
                        )
                        row += f" {1e3 * ref:.1f} | {batch / ref:.1f} | {ref / seconds:.2f}x |"
                    else:
                        row += " - | - | - |"
                print(row, flush=True)
    return 0
