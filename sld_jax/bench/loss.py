"""Loss benchmark: forward+backward of the two-view SLD objective, sld_jax against the reference.

``python -m sld_jax.bench loss [--sizes 64x100,512x1000] [--min-time 1.0] [--repeats 3]
[--torch-threads N] [--torch-device cpu|cuda] [--clock wall|cpu] [--no-torch] [--baselines]``

Times ``jax.jit(jax.value_and_grad(sld_objective))`` with respect to both student views, at each
``B x C`` with the student swap (pseudo-teacher) off and on. With PyTorch installed it also times
a transcription of the reference objective (the authors' ``SLD.py``: ``swap`` by boolean
indexing, six ``kd_loss`` calls per view, each with its own softmaxes) with ``backward()`` on the
same inputs, and prints the speed-up. ``--baselines`` adds the KD, DKD, MLKD and standardised-KD
objectives of sld_jax. Each cell is timed in turn for both implementations, in ``--repeats``
rounds; a round's figure is a median, and the table keeps the best round (the least disturbed on
a shared machine). ``--clock cpu`` measures process CPU time instead of wall time: on a busy
shared CPU it is much steadier, and with one core on each side (``taskset -c 0 python -m
sld_jax.bench loss --torch-threads 1 --clock cpu``) it compares the work of the two
implementations. The output names the machine and its load average before and after.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Callable

import numpy as np

from sld_jax.bench.common import machine_description, time_fn

TEMPERATURES = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)


def _inputs(batch: int, classes: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        name: (rng.standard_normal((batch, classes)) * scale).astype(np.float32)
        for name, scale in (
            ("student_weak", 2.0),
            ("student_strong", 2.0),
            ("teacher_weak", 4.0),
            ("teacher_strong", 4.0),
        )
    }
    arrays["labels"] = rng.integers(0, classes, batch).astype(np.int64)
    return arrays


def jax_step(objective: Callable, inputs: dict[str, np.ndarray], **kwargs) -> Callable[[], object]:
    """A zero-argument callable running one jitted forward+backward and blocking on the result."""
    import jax
    import jax.numpy as jnp

    def loss(sw, ss, tw, ts, y):
        return objective(sw, ss, tw, ts, y, **kwargs)[0]

    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    args = [
        jnp.asarray(inputs[k]) for k in ("student_weak", "student_strong", "teacher_weak", "teacher_strong")
    ]
    args.append(jnp.asarray(inputs["labels"], jnp.int32))
    return lambda: jax.block_until_ready(step(*args))


def torch_reference_objective(student_swap: bool) -> Callable[..., object]:
    """The reference two-view objective (the authors' SLD.py) transcribed to PyTorch.

    Returns ``objective(sw, ss, tw, ts, y) -> loss`` on torch tensors (logits ``[B, C]``).
    """
    import torch
    import torch.nn.functional as F

    def swap(logit, target):
        swapped = torch.clone(logit)
        _, max_indices = torch.max(logit, dim=1)
        m = target != max_indices
        swapped[m, target[m]], swapped[m, max_indices[m]] = swapped[m, max_indices[m]], swapped[m, target[m]]
        return swapped

    def kd_loss(student, teacher, pseudo, temperature):
        log_q = F.log_softmax(student / temperature, dim=1)
        loss = F.kl_div(log_q, F.softmax(teacher / temperature, dim=1), reduction="none").sum(1).mean()
        loss = loss * temperature**2
        if student_swap:
            log_q = F.log_softmax(student / temperature, dim=1)
            extra = F.kl_div(log_q, F.softmax(pseudo / temperature, dim=1), reduction="none").sum(1).mean()
            loss = loss + extra * temperature**2
        return loss

    def objective(sw, ss, tw, ts, y):
        tw, ts = swap(tw, y), swap(ts, y)
        pw, ps = swap(sw, y), swap(ss, y)
        ce = 0.1 * (F.cross_entropy(sw, y) + F.cross_entropy(ss, y))
        kd_weak = sum(0.9 * kd_loss(sw, tw, pw, t) for t in TEMPERATURES)
        kd_strong = sum(0.9 * kd_loss(ss, ts, ps, t) for t in TEMPERATURES)
        return ce + kd_weak + kd_strong

    return objective


def torch_reference_step(
    inputs: dict[str, np.ndarray], student_swap: bool, device: str = "cpu"
) -> Callable[[], object]:
    """Forward+backward of :func:`torch_reference_objective` on fixed logits."""
    import torch

    objective = torch_reference_objective(student_swap)
    tensors = {k: torch.from_numpy(v).to(device) for k, v in inputs.items()}

    def run():
        sw = tensors["student_weak"].clone().requires_grad_(True)
        ss = tensors["student_strong"].clone().requires_grad_(True)
        loss = objective(sw, ss, tensors["teacher_weak"], tensors["teacher_strong"], tensors["labels"])
        loss.backward()
        if device != "cpu":
            torch.cuda.synchronize()
        return sw.grad, ss.grad

    return run


def _cpu_time_fn(fn: Callable[[], object], *, min_time: float = 1.0, min_iters: int = 5) -> float:
    """Like ``time_fn`` but on the process CPU clock (all threads): work done, not wall time."""
    for _ in range(2):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_iters or time.perf_counter() - start < min_time:
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    times.sort()
    return times[len(times) // 2]


def _load() -> str:
    try:
        return "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "load average unavailable"


def _parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        try:
            b, c = item.lower().split("x")
            sizes.append((int(b), int(c)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"sizes must look like 64x100,512x1000; got {item!r}") from None
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sld_jax.bench loss", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_parse_sizes, default=[(64, 100), (512, 1000)], help="BxC list")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds of timing per cell")
    parser.add_argument("--repeats", type=int, default=3, help="rounds over the whole table (best kept)")
    parser.add_argument("--torch-threads", type=int, default=0, help="torch.set_num_threads (0: default)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    parser.add_argument("--torch-device", default="cpu", help="cpu, or cuda to time the reference on a GPU")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time, or process CPU time (steadier on a busy shared CPU; CPU only)",
    )
    parser.add_argument("--baselines", action="store_true", help="also time the KD/DKD/MLKD/LS objectives")
    args = parser.parse_args(argv)

    from sld_jax import losses

    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            print("PyTorch not installed: timing sld_jax only.")
        else:
            if args.torch_threads > 0:
                torch.set_num_threads(args.torch_threads)

    print(f"machine: {machine_description()}")
    if torch is not None:
        print(f"torch {torch.__version__}, device {args.torch_device}, {torch.get_num_threads()} CPU threads")
    print(f"{_load()} (before)")

    cells = []  # (name, B, C, swap, jax_fn, torch_fn)
    for batch, classes in args.sizes:
        inputs = _inputs(batch, classes)
        for swap in (False, True):
            fn = jax_step(losses.sld_objective, inputs, student_swap=swap)
            ref = torch_reference_step(inputs, swap, args.torch_device) if torch is not None else None
            cells.append(("sld_objective", batch, classes, swap, fn, ref))
        if args.baselines:
            for name, objective in (
                ("kd_objective", losses.kd_objective),
                ("dkd_objective", losses.dkd_objective),
                ("mlkd_objective", losses.mlkd_objective),
                ("standardized_kd_objective", losses.standardized_kd_objective),
            ):
                cells.append((name, batch, classes, None, jax_step(objective, inputs), None))

    timer = time_fn if args.clock == "wall" else _cpu_time_fn
    print(f"clock: {args.clock}")
    times: dict[int, list[tuple[float, float | None]]] = {i: [] for i in range(len(cells))}
    for _ in range(max(1, args.repeats)):
        for i, (_, _, _, _, fn, ref) in enumerate(cells):
            # Interleave both implementations per cell so that a change of load hits both.
            t_jax = timer(fn, min_time=args.min_time)
            t_ref = timer(ref, min_time=args.min_time) if ref is not None else None
            times[i].append((t_jax, t_ref))

    def best(values):
        # Each round's figure is a median (time_fn); on a shared machine the least disturbed
        # round is the best estimate of the cost, so the table keeps the minimum over rounds.
        return float(np.min(values)) if values else float("nan")

    print()
    print("| objective | B | C | student swap | sld_jax ms | reference ms | speed-up | swap on / off |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    off_time = {}
    for i, (name, batch, classes, swap, _, ref) in enumerate(cells):
        t_jax = best([t for t, _ in times[i]]) * 1e3
        t_ref = best([r for _, r in times[i] if r is not None]) * 1e3 if ref is not None else None
        if swap is False:
            off_time[(name, batch, classes)] = t_jax
        ratio = ""
        if swap is True and (name, batch, classes) in off_time:
            ratio = f"{t_jax / off_time[(name, batch, classes)]:.2f}x"
        ref_text = f"{t_ref:.2f}" if t_ref is not None else "-"
        speed = f"{t_ref / t_jax:.1f}x" if t_ref is not None else "-"
        swap_text = "-" if swap is None else ("on" if swap else "off")
        print(
            f"| {name} | {batch} | {classes} | {swap_text} | {t_jax:.2f} | {ref_text} | {speed} | {ratio} |"
        )
    print()
    print(f"{_load()} (after)")
    return 0
