"""A suite: several runs of one config file trained in order (the digits demo).

A suite config has ``suite`` (the run names, in order), ``runs.<name>`` (a full run config each)
and ``teacher_run`` (the name of the run whose workdir the others use as their teacher). Each run
trains in ``<workdir>/<name>``; a finished run is reused, an interrupted one resumes. At the end
the test accuracies are printed side by side and written to ``<workdir>/summary.md``.
"""

from __future__ import annotations

import logging
import os
import time

import ml_collections

from sld_jax.machine import machine_description
from sld_jax.train import checkpoint as ckpt_lib
from sld_jax.train import loop

log = logging.getLogger("sld_jax")


def _finished(workdir: str, num_epochs: int) -> dict | None:
    try:
        _, meta = ckpt_lib.load_run_variables(workdir, which="last")
    except ckpt_lib.CheckpointError:
        return None
    history = meta.get("history") or []
    if history and history[-1]["epoch"] >= num_epochs:
        return {"history": history, "best": meta.get("best"), "last": history[-1]}
    return None


def run_suite(config: ml_collections.ConfigDict, workdir: str) -> dict[str, dict]:
    """Trains every run of the suite; returns ``{name: result}`` and prints a comparison table."""
    t0 = time.perf_counter()
    results = {}
    teacher_dir = os.path.join(os.path.abspath(workdir), config.teacher_run)
    for name in config.suite:
        run_cfg = ml_collections.ConfigDict(config.runs[name].to_dict())
        if config.get("data_dir"):
            run_cfg.dataset.data_dir = config.data_dir
        run_dir = os.path.join(os.path.abspath(workdir), name)
        if name != config.teacher_run and run_cfg.method != "vanilla":
            run_cfg.teacher.checkpoint = teacher_dir
        done = _finished(run_dir, run_cfg.num_epochs)
        if done is not None:
            log.info("%s: already trained in %s, reusing it", name, run_dir)
            results[name] = done
            continue
        log.info("=== %s: %s (%d epochs) ===", name, run_cfg.name, run_cfg.num_epochs)
        results[name] = loop.run(run_cfg, run_dir)
    wall = time.perf_counter() - t0
    lines = [
        "| run | model | method | best test top-1 | last test top-1 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in config.suite:
        r, c = results[name], config.runs[name]
        lines.append(
            f"| {name} | {c.model} | {c.method} | {100 * r['best']['test_top1']:.2f}% "
            f"(epoch {r['best']['epoch']}) | {100 * r['last']['test_top1']:.2f}% |"
        )
    table = "\n".join(lines)
    text = (
        f"# {config.get('description', config.name)}\n\n{table}\n\nWall time {wall / 60:.1f} min on {machine_description()}.\n"
        "Best = maximum test top-1 over epochs (as the reference reports); last = final epoch.\n"
    )
    with open(os.path.join(workdir, "summary.md"), "w") as f:
        f.write(text)
    print("\n" + table + f"\n\n(wall time {wall / 60:.1f} min; details in {workdir}/summary.md)")
    return results
