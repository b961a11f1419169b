"""Language-model loss benchmark: fused-linear distillation against materialised logits.

``python -m sld_jax.bench lm [--divergences sld,forward_kl,reverse_kl,symmetric_kl,jsd,tvd]
[--sizes 2048x32768,8192x32768] [--hidden 512] [--token-chunk 512] [--vocab-chunk N]
[--beta 0.5] [--temperature 1.0] [--dtype float32|bfloat16] [--repeats 2] [--no-time] [--liger]``

For each divergence and each ``N x V`` (tokens x vocabulary) it compiles ``jax.value_and_grad`` of
the loss w.r.t. the student's hidden states and kernel, for

* ``dense``: ``h_s @ W_s`` and ``h_t @ W_t`` materialised, then the divergence in plain jnp
  (``sld``: :func:`sld_objective`, one view, student swap on);
* ``fused``: :func:`fused_linear_distill_loss` (``sld``: :func:`fused_linear_sld_loss`) with
  ``--token-chunk`` (and ``--vocab-chunk``); one temperature ``--temperature`` (T² scaled), JSD with
  ``--beta``, no teacher transform,

and reports XLA's compiled memory analysis (temporary bytes: the peak scratch beyond arguments and
outputs) and, where the dense path fits in the machine's available memory, the median
forward+backward time over ``--repeats`` calls after one warm-up. Compiling never allocates, so
the memory columns are filled even for sizes too large to run.

``--liger`` also runs Liger-Kernel's ``LigerFusedLinearJSDLoss`` (its chunked loss is plain PyTorch,
``compiled=False`` on the CPU; ``pip install liger-kernel --no-deps`` beside a CPU torch) at the
same sizes, β and T, against our fused JSD with the same settings (CE weight 0.5, JSD weight 0.5,
no T² scaling, Liger's default chunk of 1024 tokens for both): the loss values, the time of one
forward+backward and the peak resident memory each adds in a fresh process. The output names the
machine and its load average before and after (times on a shared box are indicative).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from sld_jax.bench.common import machine_description, time_fn

DEFAULT_SIZES = "2048x32768,8192x32768,2048x131072,8192x131072"
DIVERGENCES = ("sld", "forward_kl", "reverse_kl", "symmetric_kl", "jsd", "tvd")


def _load() -> str:
    try:
        return "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "load average unavailable"


def _sizes(text: str) -> list[tuple[int, int]]:
    try:
        return [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",")]  # type: ignore[misc]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"sizes must look like 2048x32768,8192x32768; got {text!r}"
        ) from None


def _divergences(text: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    unknown = [x for x in names if x not in DIVERGENCES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"divergences must be among {', '.join(DIVERGENCES)}; got {text!r}")
    return names


def dense_divergence(s, t, divergence: str, *, beta: float, temperature: float):
    """Per-token ``T² D(softmax(t/T), softmax(s/T))`` on materialised ``[N, V]`` logits (plain jnp)."""
    import jax
    import jax.numpy as jnp

    lq, lp = jax.nn.log_softmax(s / temperature), jax.nn.log_softmax(t / temperature)
    q, p = jnp.exp(lq), jnp.exp(lp)
    forward = jnp.sum(p * (lp - lq), -1)
    reverse = jnp.sum(q * (lq - lp), -1)
    if divergence == "forward_kl":
        d = forward
    elif divergence == "reverse_kl":
        d = reverse
    elif divergence == "symmetric_kl":
        d = forward + reverse
    elif divergence == "jsd":
        lm = jnp.logaddexp(jnp.log(beta) + lp, jnp.log1p(-beta) + lq)
        d = beta * jnp.sum(p * (lp - lm), -1) + (1 - beta) * jnp.sum(q * (lq - lm), -1)
    else:
        d = 0.5 * jnp.sum(jnp.abs(p - q), -1)
    return temperature * temperature * d


def loss_fns(
    divergence: str, token_chunk: int, vocab_chunk: int | None, *, beta: float = 0.5, temperature=1.0
):
    """``{"dense": f, "fused": f}`` with ``f(hs, ws, ht, wt, labels) -> loss`` (0.1 CE + 0.9 KD)."""
    import jax
    import jax.numpy as jnp

    from sld_jax import losses

    def logits(hs, ws, ht, wt):
        return jnp.dot(hs, ws, preferred_element_type=jnp.float32), jnp.dot(
            ht, wt, preferred_element_type=jnp.float32
        )

    if divergence == "sld":

        def dense(hs, ws, ht, wt, labels):
            s, t = logits(hs, ws, ht, wt)
            return losses.sld_objective(s, None, t, None, labels, student_swap=True)[0]

        def fused(hs, ws, ht, wt, labels):
            return losses.fused_linear_sld_loss(
                hs, ws, ht, wt, labels, student_swap=True, token_chunk=token_chunk, vocab_chunk=vocab_chunk
            )[0]

        return {"dense": dense, "fused": fused}

    def dense(hs, ws, ht, wt, labels):  # noqa: F811
        s, t = logits(hs, ws, ht, wt)
        ce = jnp.mean(jax.nn.logsumexp(s, -1) - jnp.take_along_axis(s, labels[:, None], -1)[:, 0])
        kd = jnp.mean(dense_divergence(s, t, divergence, beta=beta, temperature=temperature))
        return 0.1 * ce + 0.9 * kd

    def fused(hs, ws, ht, wt, labels):  # noqa: F811
        return losses.fused_linear_distill_loss(
            hs,
            ws,
            ht,
            wt,
            labels,
            divergence=divergence,
            beta=beta if divergence == "jsd" else None,
            temperatures=(temperature,),
            ce_weight=0.1,
            kd_weight=0.9,
            token_chunk=token_chunk,
            vocab_chunk=vocab_chunk,
        )[0]

    return {"dense": dense, "fused": fused}


def _inputs(shapes, seed=0):
    """Standard-normal hidden states, kernels scaled by ``H^-1/2``, random labels (numpy)."""
    rng = np.random.default_rng(seed)
    h = shapes[0].shape[1]
    arrays = [
        (rng.standard_normal(s.shape) * (1.0 if i % 2 == 0 else h**-0.5)).astype(np.float32)
        for i, s in enumerate(shapes[:4])
    ]
    arrays.append(rng.integers(0, shapes[1].shape[1], shapes[0].shape[0]).astype(np.int32))
    return arrays


def _run_table(args) -> None:
    import jax
    import jax.numpy as jnp

    from sld_jax.train.hardware import host_memory_available

    dtype = jnp.dtype(args.dtype)
    print(
        "| loss | N | V | dense temp MiB | fused temp MiB | fused/dense mem | dense ms | fused ms | fused/dense time |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for divergence in args.divergences:
        fns = loss_fns(
            divergence, args.token_chunk, args.vocab_chunk, beta=args.beta, temperature=args.temperature
        )
        for n, v in args.sizes:
            h = args.hidden
            shapes = (jax.ShapeDtypeStruct((n, h), dtype), jax.ShapeDtypeStruct((h, v), dtype)) * 2
            shapes += (jax.ShapeDtypeStruct((n,), jnp.int32),)
            compiled, temp = {}, {}
            for name, fn in fns.items():
                compiled[name] = jax.jit(jax.value_and_grad(fn, (0, 1))).lower(*shapes).compile()
                temp[name] = compiled[name].memory_analysis().temp_size_in_bytes
            times = {}
            arg_bytes = sum(int(np.prod(s.shape)) * s.dtype.itemsize for s in shapes) * 2  # args + grads
            fits = max(temp.values()) + arg_bytes < 0.7 * (host_memory_available() or 0)
            if not args.no_time and fits:
                arrays = [jnp.asarray(a, s.dtype) for a, s in zip(_inputs(shapes), shapes)]
                for name, exe in compiled.items():
                    times[name] = time_fn(
                        lambda exe=exe: jax.block_until_ready(exe(*arrays)),
                        warmup=1,
                        min_time=0.0,
                        min_iters=args.repeats,
                    )
                del arrays
            mib = lambda b: f"{b / 2**20:,.0f}"  # noqa: E731
            ms = lambda name: f"{times[name] * 1e3:,.0f}" if name in times else "not run"  # noqa: E731
            ratio = (
                f"{times['fused'] / times['dense']:.2f}"
                if times
                else ("skipped" if args.no_time else "does not fit")
            )
            print(
                f"| {divergence} | {n} | {v} | {mib(temp['dense'])} | {mib(temp['fused'])} | "
                f"{temp['fused'] / temp['dense']:.3f} | {ms('dense')} | {ms('fused')} | {ratio} |",
                flush=True,
            )
            del compiled


def _child(spec: dict) -> dict:
    """One forward+backward of ``spec["impl"]`` ("ours" or "liger") in this (fresh) process: the
    loss, the gradients' norms, the median time and the peak resident memory it added."""
    n, v, h, beta, temperature = (spec[k] for k in ("n", "v", "h", "beta", "temperature"))
    hs, ws, ht, wt, labels = _inputs([_Shape((n, h)), _Shape((h, v)), _Shape((n, h)), _Shape((h, v))])
    kw = dict(chunk=1024, beta=beta, temperature=temperature)
    if spec["impl"] == "liger":
        import torch
        from liger_kernel.chunked_loss import LigerFusedLinearJSDLoss

        torch.set_num_threads(os.cpu_count() or 1)
        loss_fn = LigerFusedLinearJSDLoss(
            weight_hard_loss=0.5, weight_soft_loss=0.5, beta=beta, temperature=temperature, compiled=False,
            chunk_size=kw["chunk"],
        )  # fmt: skip
        t_hs, t_ht = torch.from_numpy(hs).requires_grad_(), torch.from_numpy(ht)
        t_ws, t_wt = torch.from_numpy(ws.T.copy()).requires_grad_(), torch.from_numpy(wt.T.copy())
        t_labels = torch.from_numpy(labels.astype(np.int64))

        def run():
            t_hs.grad = t_ws.grad = None
            loss = loss_fn(t_hs, t_ws, t_ht, t_wt, t_labels)
            loss.backward()
            return float(loss), float(t_hs.grad.norm()), float(t_ws.grad.norm())
    else:
        import jax
        import jax.numpy as jnp

        from sld_jax import losses

        def loss(hs, ws, ht, wt, labels):
            return losses.fused_linear_distill_loss(
                hs, ws, ht, wt, labels, divergence="jsd", beta=beta, temperatures=(temperature,),
                temperature_scaling=False, ce_weight=0.5, kd_weight=0.5, token_chunk=kw["chunk"],
            )[0]  # fmt: skip

        step = jax.jit(jax.value_and_grad(loss, (0, 1)))
        arrays = [jnp.asarray(a) for a in (hs, ws, ht, wt, labels)]
        jax.block_until_ready(arrays)

        def run():
            value, (g_h, g_w) = jax.block_until_ready(step(*arrays))
            return float(value), float(jnp.linalg.norm(g_h)), float(jnp.linalg.norm(g_w))

    result = run()  # the first call compiles (ours) and allocates what the calls reuse
    times, peaks = [], []
    for _ in range(spec["repeats"]):
        with _PeakRss() as rss:
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        peaks.append(rss.added)
    return dict(
        loss=result[0], grad_h=result[1], grad_w=result[2], seconds=sorted(times)[len(times) // 2],
        peak_mib=max(peaks) / 2**20,
    )  # fmt: skip


class _PeakRss:
    """The largest resident-memory increase over the ``with`` block, sampled every millisecond
    (``/proc/self/statm``, Linux)."""

    def __enter__(self):
        import threading

        self._page = os.sysconf("SC_PAGE_SIZE")
        self.start = self.peak = self._rss()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _sample(self):
        while not self._done.wait(0.001):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        self.added = self.peak - self.start


class _Shape:
    def __init__(self, shape):
        self.shape = shape


def _run_liger(args) -> int:
    try:
        import liger_kernel  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        print(f"--liger: {e}; install a CPU torch and `pip install liger-kernel --no-deps`.", file=sys.stderr)
        return 2
    print(
        f"\nJSD (β = {args.beta}, T = {args.temperature}, no T² scaling, CE 0.5 + JSD 0.5, 1024-token chunks), "
        f"H = {args.hidden}, float32, forward+backward, median of {args.repeats} after one call; "
        "peak = the largest resident-memory increase during a call (sampled every ms)"
    )
    print(
        "| N | V | sld_jax loss | Liger loss | rel. diff | sld_jax ms | Liger ms | time ratio | sld_jax peak MiB | Liger peak MiB |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for n, v in args.sizes:
        out = {}
        for impl in ("ours", "liger"):
            spec = dict(impl=impl, n=n, v=v, h=args.hidden, beta=args.beta, temperature=args.temperature)
            spec["repeats"] = args.repeats
            proc = subprocess.run(
                [sys.executable, "-m", "sld_jax.bench.lm", "--child", json.dumps(spec)],
                capture_output=True,
                text=True,
            )
            if proc.returncode:
                print(
                    f"{impl} failed at N={n}, V={v}: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr
                )
                return 1
            out[impl] = json.loads(proc.stdout.strip().splitlines()[-1])
        ours, liger = out["ours"], out["liger"]
        rel = abs(ours["loss"] - liger["loss"]) / abs(liger["loss"])
        print(
            f"| {n} | {v} | {ours['loss']:.6f} | {liger['loss']:.6f} | {rel:.1e} | {ours['seconds'] * 1e3:,.0f} | "
            f"{liger['seconds'] * 1e3:,.0f} | {ours['seconds'] / liger['seconds']:.2f} | "
            f"{ours['peak_mib']:,.0f} | {liger['peak_mib']:,.0f} |",
            flush=True,
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sld_jax.bench lm", description=__doc__.splitlines()[0])
    parser.add_argument("--divergences", type=_divergences, default=("sld",))
    parser.add_argument("--sizes", type=_sizes, default=_sizes(DEFAULT_SIZES))
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--token-chunk", type=int, default=512)
    parser.add_argument("--vocab-chunk", type=int, default=None)
    parser.add_argument("--beta", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-time", action="store_true", help="memory analysis only")
    parser.add_argument("--liger", action="store_true", help="also compare JSD with Liger-Kernel's (PyTorch)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return 0

    print(f"machine: {machine_description()}")
    print(f"{_load()} (before)")
    print(
        f"H = {args.hidden}, dtype {args.dtype}, token_chunk {args.token_chunk}, vocab_chunk "
        f"{args.vocab_chunk}; loss 0.1 CE + 0.9 KD (sld: SLD over T = 1..6 with the student swap; others: "
        f"T = {args.temperature}, T² scaled, JSD β = {args.beta}); grads w.r.t. h_s and W_s"
    )
    _run_table(args)
    rc = _run_liger(args) if args.liger else 0
    print(f"{_load()} (after)")
    return rc


if __name__ == "__main__":
    sys.exit(main())
