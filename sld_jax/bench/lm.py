"""Language-model loss benchmark: fused-linear SLD against materialised logits + the dense objective.

``python -m sld_jax.bench lm [--sizes 2048x32768,8192x32768] [--hidden 512] [--token-chunk 512]
[--vocab-chunk N] [--dtype float32|bfloat16] [--repeats 2] [--no-time]``

For each ``N x V`` (tokens x vocabulary) it compiles ``jax.value_and_grad`` of the loss w.r.t. the
student's hidden states and kernel, for

* ``dense``: ``h_s @ W_s`` and ``h_t @ W_t`` materialised, then :func:`sld_objective` (one view);
* ``fused``: :func:`fused_linear_sld_loss` with ``--token-chunk`` (and ``--vocab-chunk``),

and reports XLA's compiled memory analysis (temporary bytes: the peak scratch beyond arguments and
outputs) and, where the dense path fits in the machine's available memory, the median
forward+backward time over ``--repeats`` calls after one warm-up. Compiling never allocates, so
the memory columns are filled even for sizes too large to run. The output names the machine and
its load average before and after (the CPU box is shared: times on it are indicative).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from sld_jax.bench.common import machine_description, time_fn

DEFAULT_SIZES = "2048x32768,8192x32768,2048x131072,8192x131072"


def _load() -> str:
    try:
        return "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "load average unavailable"


def _available_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _sizes(text: str) -> list[tuple[int, int]]:
    try:
        return [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",")]  # type: ignore[misc]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"sizes must look like 2048x32768,8192x32768; got {text!r}"
        ) from None


def loss_fns(token_chunk: int, vocab_chunk: int | None):
    """``{"dense": f, "fused": f}`` with ``f(hs, ws, ht, wt, labels) -> loss`` (student_swap on)."""
    from sld_jax import losses

    def dense(hs, ws, ht, wt, labels):
        import jax.numpy as jnp

        s = jnp.dot(hs, ws, preferred_element_type=jnp.float32)
        t = jnp.dot(ht, wt, preferred_element_type=jnp.float32)
        return losses.sld_objective(s, None, t, None, labels, student_swap=True)[0]

    def fused(hs, ws, ht, wt, labels):
        return losses.fused_linear_sld_loss(
            hs, ws, ht, wt, labels, student_swap=True, token_chunk=token_chunk, vocab_chunk=vocab_chunk
        )[0]

    return {"dense": dense, "fused": fused}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sld_jax.bench lm", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_sizes, default=_sizes(DEFAULT_SIZES))
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--token-chunk", type=int, default=512)
    parser.add_argument("--vocab-chunk", type=int, default=None)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-time", action="store_true", help="memory analysis only")
    args = parser.parse_args(argv)

    import jax
    import jax.numpy as jnp

    print(f"machine: {machine_description()}")
    print(f"{_load()} (before)")
    print(
        f"H = {args.hidden}, dtype {args.dtype}, token_chunk {args.token_chunk}, "
        f"vocab_chunk {args.vocab_chunk}, SLD with student swap, grads w.r.t. h_s and W_s"
    )
    print(
        "| N | V | dense temp MiB | fused temp MiB | fused/dense mem | dense ms | fused ms | fused/dense time |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    dtype = jnp.dtype(args.dtype)
    fns = loss_fns(args.token_chunk, args.vocab_chunk)
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
        fits = max(temp.values()) + arg_bytes < 0.7 * _available_bytes()
        if not args.no_time and fits:
            rng = np.random.default_rng(0)
            arrays = [
                jnp.asarray(rng.standard_normal(s.shape) * (1.0 if i % 2 == 0 else h**-0.5), s.dtype)
                for i, s in enumerate(shapes[:4])
            ]
            arrays.append(jnp.asarray(rng.integers(0, v, n), jnp.int32))
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
            f"| {n} | {v} | {mib(temp['dense'])} | {mib(temp['fused'])} | "
            f"{temp['fused'] / temp['dense']:.3f} | {ms('dense')} | {ms('fused')} | {ratio} |",
            flush=True,
        )
        del compiled
    print(f"{_load()} (after)")
    return 0
