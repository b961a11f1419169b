"""One-command hardware report: what sld_jax runs at on this machine, and the defaults it implies.

``python -m sld_jax.bench report [--budget-min 15] [--out DIR] [--quick]``

Runs, in this process and within the budget, on whatever backend JAX finds:

1. ``step``: the full SLD train step (resnet32x4 -> resnet8x4 on CIFAR shapes, batch 64 and 256,
   float32 and bfloat16; with the fraction of peak where the device's peak is known);
2. ``seeds``: the seed forms (unroll / vmap / map) at K = 1, 2, 4, 8 seeds, each with 1, 4 and 16
   steps per dispatch, as per-seed throughput ratios, with the projected 240-epoch CIFAR-100 time
   per seed (782 steps per epoch at batch 64);
3. ``loss``: the two-view SLD objective's forward+backward;
4. ``lm``: the fused-linear LM loss against materialised logits (memory from XLA's analysis, time);

compile times are in the tables (the seeds table's "compile + first call"). On a CPU the sizes are
reduced so that the report takes a few minutes: the step and the seed forms on the offline demo's
models and shapes (resnet20 -> resnet8, 16x16 digits, batch 64, float32), the three forms at K = 1,
2, 4 with one step per dispatch and unroll / vmap at K = 1, 2 with 4, the LM loss at N = 1,024,
V = 8,192, H = 256 (about 4 minutes on a 2-core CPU). A section that would start after the budget is
spent is recorded as skipped; the cheap sections run first.

It writes ``report.md`` (the machine, each section's command and table) and ``report.json`` (the
same tables as rows, per section its arguments, seconds and status), and prints the defaults it
would choose for this backend: per K the fastest seed form, and the fastest steps per dispatch —
the figures to put in :mod:`sld_jax.train.hardware`'s tables.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import sys
import time

from sld_jax.bench.common import machine_description

STEPS_PER_EPOCH, EPOCHS = 782, 240  # CIFAR-100 at batch 64, the reference's 240 epochs
MIN_BUDGET_MIN = 1  # the shortest --budget-min accepted


def sections(backend: str, *, quick: bool = False) -> list[tuple[str, str, list[str]]]:
    """``(name, benchmark, argv)`` of the report's sections for ``backend`` (reduced on a CPU)."""
    if backend != "cpu" and not quick:
        seeds = [
            ("seeds", "step", ["--num-seeds", "1,2,4,8", "--seed-axis", "unroll,vmap,map", "--steps-per-dispatch", s])
            for s in ("1", "4", "16")
        ]  # fmt: skip
        return [
            ("step", "step", ["--batch-sizes", "64,256", "--dtypes", "float32,bfloat16", "--no-torch", "--min-time", "1"]),
            *seeds,
            ("loss", "loss", ["--no-torch", "--repeats", "1"]),
            ("lm", "lm", ["--divergences", "sld,jsd", "--sizes", "8192x32768,8192x131072", "--repeats", "2"]),
        ]  # fmt: skip
    small = "--models resnet20,resnet8 --dataset digits --batch-sizes 64 --min-time 0.5".split()
    seeds = [("seeds", "step", ["--num-seeds", "1,2" if quick else "1,2,4", "--seed-axis", "unroll,vmap,map",
                                "--steps-per-dispatch", "1", *small])]  # fmt: skip
    if not quick:  # more steps per call: the two cheapest forms to compile, K <= 2
        seeds.append(
            ("seeds", "step", ["--num-seeds", "1,2", "--seed-axis", "unroll,vmap", "--steps-per-dispatch", "4", *small])
        )  # fmt: skip
    # The cheap sections first, so that the budget can only cut the seed forms.
    return [
        ("step", "step", ["--dtypes", "float32", "--no-torch", *small]),
        ("loss", "loss", ["--no-torch", "--repeats", "1", "--min-time", "0.3", "--sizes", "64x100"]),
        ("lm", "lm", ["--divergences", "sld,jsd", "--sizes", "1024x8192", "--hidden", "256", "--repeats", "1"]),
        *seeds,
    ]  # fmt: skip


def parse_tables(text: str) -> list[dict[str, str]]:
    """The rows of every Markdown table in ``text``, as ``{column header: cell}``.

    >>> parse_tables("x\\n| a | b |\\n| --- | --- |\\n| 1 | 2 |\\n")
    [{'a': '1', 'b': '2'}]
    """
    rows, header = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif not all(set(c) <= {"-", " "} for c in cells):
            rows.append(dict(zip(header, cells)))
    return rows


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").rstrip("x×%"))
    except (AttributeError, ValueError):
        return None


def choose_defaults(seed_rows: list[dict]) -> dict:
    """The defaults the seed sections imply: per K the fastest seed form (per step, over all seeds),
    and over all measured (form, K) the steps per dispatch that is fastest most often.

    Each row is a seeds-table row with ``steps_per_dispatch`` added.
    """
    best: dict[int, tuple[float, str, int]] = {}
    by_cell: dict[tuple[str, int], dict[int, float]] = {}
    for row in seed_rows:
        k, ms = int(_number(row.get("K", "")) or 0), _number(row.get("ms/step (all seeds)", ""))
        form, s = row.get("seed axis", ""), int(row["steps_per_dispatch"])
        if not k or ms is None:
            continue
        form = "unroll" if form.startswith("one seed") else form.split(" ")[0]
        by_cell.setdefault((form, k), {})[s] = ms
        if k > 1 and (k not in best or ms < best[k][0]):
            best[k] = (ms, form, s)
    wins: dict[int, int] = {}
    for times in by_cell.values():
        fastest = min(times, key=times.get)
        wins[fastest] = wins.get(fastest, 0) + 1
    return {
        "seed_axis_by_num_seeds": {k: form for k, (_, form, _) in sorted(best.items())},
        "steps_per_dispatch": max(wins, key=lambda s: (wins[s], -s)) if wins else 1,
    }


def _projected_minutes(row: dict) -> float | None:
    """Minutes per seed of a 240-epoch CIFAR-100 run at the row's step time."""
    k, ms = _number(row.get("K", "")), _number(row.get("ms/step (all seeds)", ""))
    if not k or ms is None:
        return None
    return round(ms / 1e3 * STEPS_PER_EPOCH * EPOCHS / k / 60, 1)


def run_report(budget_s: float, out: str, *, quick: bool = False) -> dict:
    """Runs the sections within ``budget_s`` seconds; writes and returns the report."""
    import jax

    backend = jax.default_backend()
    start = time.perf_counter()
    report = {
        "machine": machine_description(),
        "backend": backend,
        "date": time.strftime("%Y-%m-%d"),
        "sections": [],
    }
    md = [f"# sld_jax hardware report\n\nmachine: {report['machine']}; {report['date']}\n"]
    for name, bench, argv in sections(backend, quick=quick):
        command = f"python -m sld_jax.bench {bench} {' '.join(argv)}"
        entry = {"name": name, "command": command, "status": "ok"}
        if time.perf_counter() - start > budget_s:
            entry["status"] = "skipped: the budget was spent"
            report["sections"].append(entry)
            md.append(f"## {name}\n\n`{command}`: skipped (budget spent)\n")
            continue
        buffer, t0 = io.StringIO(), time.perf_counter()
        with contextlib.redirect_stdout(buffer):
            try:
                rc = importlib.import_module(f"sld_jax.bench.{bench}").main(argv)
            except Exception as e:  # noqa: BLE001 - a failed section is reported, the others still run
                rc, entry["status"] = 1, f"failed: {type(e).__name__}: {e}"
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        if rc and entry["status"] == "ok":
            entry["status"] = f"failed: exit {rc}"
        entry["rows"] = parse_tables(buffer.getvalue())
        if name == "seeds":
            spd = argv[argv.index("--steps-per-dispatch") + 1]
            for row in entry["rows"]:
                row["steps_per_dispatch"] = spd
                row["projected 240-epoch minutes per seed"] = _projected_minutes(row)
        report["sections"].append(entry)
        md.append(
            f"## {name}\n\n`{command}` ({entry['seconds']} s, {entry['status']})\n\n{buffer.getvalue()}\n"
        )
        print(f"{name}: {entry['status']} in {entry['seconds']} s", flush=True)
    seed_rows = [row for s in report["sections"] if s["name"] == "seeds" for row in s.get("rows", [])]
    report["defaults"] = choose_defaults(seed_rows)
    report["seconds"] = round(time.perf_counter() - start, 1)
    md.append(f"## Defaults for `{backend}`\n\n```\n{json.dumps(report['defaults'], indent=1)}\n```\n")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(md))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sld_jax.bench report", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--budget-min", type=float, default=15.0, help="minutes; later sections are skipped")
    parser.add_argument("--out", default="bench_report", help="folder for report.md and report.json")
    parser.add_argument("--quick", action="store_true", help="the smallest sections (a smoke test)")
    args = parser.parse_args(argv)
    if not args.budget_min >= MIN_BUDGET_MIN:
        parser.error(
            f"--budget-min {args.budget_min:g} is too short: give at least {MIN_BUDGET_MIN} minute (the "
            "loss and LM sections alone take about a minute on a 2-core CPU)."
        )
    report = run_report(60 * args.budget_min, args.out, quick=args.quick)
    defaults = report["defaults"]
    print(f"machine: {report['machine']}")
    print(f"report: {os.path.join(args.out, 'report.md')} and report.json ({report['seconds']} s)")
    print(
        f"defaults for {report['backend']}: seed_axis by K {defaults['seed_axis_by_num_seeds']}, "
        f"steps_per_dispatch {defaults['steps_per_dispatch']}"
    )
    return (
        0 if all(s["status"] == "ok" or s["status"].startswith("skipped") for s in report["sections"]) else 1
    )


if __name__ == "__main__":
    sys.exit(main())
