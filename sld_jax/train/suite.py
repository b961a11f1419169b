"""A suite: several runs of one config file, trained in order, summarised in one table.

A suite config (``sld_jax.configs_lib.suite_base`` lists its fields) has:

- ``suite``: the run names, in training and table order;
- ``runs.<name>``: a full run config each; its ``num_seeds`` (K) seeds train at once;
- ``teacher_run`` (optional): the name of a run (of one seed) whose workdir every other
  distillation run uses as its teacher (the digits demo trains its teacher first);
- ``paper`` (optional): run name -> the paper's top-1 in percent; a run absent here gets an empty
  "paper" cell, never a guessed one;
- ``data_dir`` / ``teacher_checkpoint`` (optional): set every run's ``dataset.data_dir`` /
  distillation runs' ``teacher.checkpoint``, e.g. a dry run's tiny teacher.

A grid is a suite whose runs are named ``<row>/<method>``: ``configs_lib.grid_suite`` builds one
from rows of (teacher, student) pairs and a tuple of methods (``configs/cifar100/tables/``). Run
names with ``/`` or ``+`` are overridden with a subscript:
``--config.runs["resnet32x4_resnet8x4/dkd+sld"].num_seeds=5``.

Each run trains in ``<workdir>/<name>``. A finished run (:func:`finished`: its ``finished.json``
written, every seed at its last epoch) is reused only if it is the same run — its ``config.json``
equal in every field that changes the computation, and, for a student, the same teacher
(fingerprint) — and is refused otherwise, naming what differs; an interrupted one resumes. At
the end one markdown table is printed and written to ``<workdir>/summary.md``
(:func:`format_table`): per run its model, method, seeds, best and last test top-1 as mean ± std
over seeds, the range of the best, and the paper's number; a grid's runs are grouped by row.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from typing import Any

import ml_collections

from sld_jax.errors import ConfigError
from sld_jax.machine import machine_description
from sld_jax.train import checkpoint as ckpt_lib
from sld_jax.train import comparisons as comparisons_lib
from sld_jax.train import kill_points, loop, methods, report, saved_runs, seeds, suite_report, validation
from sld_jax.train import teacher as teacher_lib
from sld_jax.train import workdir as workdir_lib

log = logging.getLogger("sld_jax")

HEADER = (
    "| run | model | method | seeds | best test top-1 (%) | last test top-1 (%) "
    "| best min–max (%) | paper (%) |"
)


def run_config(config: ml_collections.ConfigDict, name: str, workdir: str) -> ml_collections.ConfigDict:
    """The config of run ``name`` as the suite trains it (data directory and teacher filled in)."""
    run = ml_collections.ConfigDict(config.runs[name].to_dict())
    if config.get("data_dir"):
        run.dataset.data_dir = config.data_dir
    if name == config.get("teacher_run") or run.method == "vanilla":
        return run
    if config.get("teacher_run"):
        run.teacher.checkpoint = os.path.join(os.path.abspath(workdir), config.teacher_run)
    if config.get("teacher_checkpoint"):
        run.teacher.checkpoint = config.teacher_checkpoint
    return run


def check(config: ml_collections.ConfigDict) -> None:
    """Raises :class:`ConfigError` for a suite config whose names do not fit together."""
    missing = [name for name in config.suite if name not in config.runs]
    if missing:
        raise ConfigError(
            f"suite names runs {missing} that runs.<name> does not define; add them or drop them."
        )
    teacher = config.get("teacher_run")
    if teacher and teacher not in config.suite:
        raise ConfigError(f"teacher_run {teacher!r} is not a run of the suite {list(config.suite)}.")
    if teacher and config.runs[teacher].get("num_seeds", 1) != 1:
        raise ConfigError(
            f"the teacher run {teacher!r} must train one seed (its students read one teacher); set "
            f"--config.runs.{teacher}.num_seeds=1."
        )
    unknown = [name for name in config.get("paper", {}) if name not in config.suite]
    if unknown:
        raise ConfigError(f"paper names runs {unknown} that are not in suite {list(config.suite)}.")


def finished(workdir: str, run: ml_collections.ConfigDict) -> list[dict] | None:
    """The per-seed results of the run saved in ``workdir`` if it is finished — its last
    checkpoint, summary and plot written (``finished.json``), every seed at ``run``'s last epoch —
    and is the same run as ``run``, else None (it then trains or resumes).

    Raises:
      RunMismatchError: a finished run whose config differs from ``run`` in a field that changes
        the computation, or whose teacher changed since (retrained or replaced): never reused.
    """
    record = workdir_lib.read_finished(workdir)
    if record is None:
        return None
    try:
        _, meta = saved_runs.load_run_variables(workdir, which="last")
    except ckpt_lib.CheckpointError:
        return None
    per_seed = seeds.per_seed(meta)
    done = [r for r in per_seed if r["last"] is not None and r["last"]["epoch"] >= run.num_epochs]
    if not (done and len(done) == len(per_seed) >= run.get("num_seeds", 1)):
        return None
    _check_reusable(workdir, run, record)
    return per_seed


def _check_reusable(workdir: str, run: ml_collections.ConfigDict, record: dict) -> None:
    """Raises :class:`~sld_jax.train.workdir.RunMismatchError` unless the finished run in
    ``workdir`` is ``run``: the same computation (the resume check's fields) and the same teacher."""
    fix = f"delete {workdir} to train it again, or use another --workdir for the suite."
    saved = workdir_lib.read_config(workdir, fix=f"the finished run cannot be reused safely: {fix}")
    if saved is None:
        raise workdir_lib.RunMismatchError(
            f"{workdir} holds a finished run without its config.json, so it cannot be reused safely; {fix}"
        )
    # Where the teacher is (an absolute path: a moved suite workdir) is not what it is: the
    # fingerprint below compares the teacher itself.
    diff = [k for k in workdir_lib.differing_fields(saved, run) if k != "teacher.checkpoint"]
    if diff:
        raise workdir_lib.RunMismatchError(
            f"{workdir} holds a finished run with another config (differing fields: "
            f"{', '.join(diff)}), so it is not reused; {fix}"
        )
    if methods.get_method(run.method).uses_teacher and record.get("teacher") != _fingerprint(
        run.teacher.checkpoint
    ):
        raise workdir_lib.RunMismatchError(
            f"{workdir} holds a run distilled from another teacher than the one now in "
            f"{run.teacher.checkpoint} (retrained or replaced since), so it is not reused; {fix}"
        )


@functools.lru_cache(maxsize=8)
def _fingerprint_of(path: str, stamp: int) -> str:
    return teacher_lib.fingerprint(path)


def _fingerprint(checkpoint: str) -> str:
    """:func:`~sld_jax.train.teacher.fingerprint`, read once per teacher directory and state of its
    ``finished.json`` (the students of one teacher share it)."""
    path = os.path.abspath(os.path.expanduser(checkpoint))
    try:
        stamp = os.stat(os.path.join(path, workdir_lib.FINISHED_FILE)).st_mtime_ns
    except OSError:
        return teacher_lib.fingerprint(path)
    return _fingerprint_of(path, stamp)


def result_seeds(result: dict) -> list[dict]:
    """The per-seed results of ``loop.run``'s result (a result without ``seeds`` is one seed)."""
    if result.get("seeds") is not None:
        return result["seeds"]
    return seeds.per_seed({"history": result["history"], "best": result["best"]})


def format_table(
    config: ml_collections.ConfigDict,
    results: dict[str, list[dict]],
    comparisons: list[comparisons_lib.Comparison] = (),
) -> str:
    """The suite's markdown table: one line per run of ``results`` (per-seed results by name).

    Cells are percent: mean ± std over seeds (a single seed: its value), the best's minimum–maximum,
    and the paper's number where ``config.paper`` has one (else empty). Runs named
    ``<row>/<method>`` are grouped under a bold line per row. Each baseline of ``comparisons`` adds a
    column "best vs <baseline>": the run's difference of best test top-1 in percentage points, its
    95 % interval, p-value and verdict (:func:`sld_jax.train.suite_report.format_cell`).
    """
    paper = config.get("paper") or {}
    best_cmp = [c for c in comparisons if c.metric == "best_top1"]
    baselines = list(dict.fromkeys(comparisons_lib.short_name(c.baseline) for c in best_cmp))
    header = HEADER + "".join(f" best vs {b} (pp) |" for b in baselines)
    width = 8 + len(baselines)
    lines = [header, "|" + " --- |" * width]
    group = None
    for name in config.suite:
        if name not in results:
            continue
        row = name.rsplit("/", 1)[0] if "/" in name else ""
        if row != group:
            group = row
            if row:
                lines.append(f"| **{row}** |" + " |" * (width - 1))
        run, summary = config.runs[name], seeds.summary(results[name])
        best, last = summary.get("best_top1"), summary.get("last_top1")
        cells = ["", "", ""]
        if best is not None:
            cells = [
                seeds.format_mean_std(best["values"]),
                seeds.format_mean_std(last["values"]),
                f"{100 * best['min']:.2f}–{100 * best['max']:.2f}",
            ]
        reported = f"{paper[name]:.2f}" if name in paper else ""
        k = best["n"] if best is not None else 0
        versus = []
        for b in baselines:
            found = [c for c in best_cmp if c.run == name and comparisons_lib.short_name(c.baseline) == b]
            versus.append(suite_report.format_cell(found[0]) if found else "")
        lines.append(
            f"| {name} | {run.model} | {run.method} | {k} | " + " | ".join(cells + [reported] + versus) + " |"
        )
    return "\n".join(lines)


def run_suite(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains every run of the suite in order; prints and writes the table.

    Returns:
      ``{name: per-seed results}`` of the runs done (all of them unless one was stopped by
      SIGTERM, after which the suite stops: rerun the command to resume).
    """
    check(config)
    for name in config.suite:  # every run's config, before the first one trains
        try:
            validation.validate(run_config(config, name, workdir))
        except ConfigError as e:
            field = f"runs.{name}." if name.isidentifier() else f'runs["{name}"].'
            message = str(e).replace("--config.", f"--config.{field}")
            raise ConfigError(f"run {name!r} of the suite: {message}") from e
    comparisons_lib.pairs(config)  # an unknown baseline or unpairable runs: now, not at the end
    t0 = time.perf_counter()
    results: dict[str, list[dict]] = {}
    stopped = None
    for name in config.suite:
        run = run_config(config, name, workdir)
        run_dir = os.path.join(os.path.abspath(workdir), name)
        done = finished(run_dir, run)
        if done is not None:
            log.info("%s: already trained in %s, reusing it", name, run_dir)
            results[name] = done
            continue
        log.info(
            "=== %s: %s (%d epochs, %d seeds) ===", name, run.name, run.num_epochs, run.get("num_seeds", 1)
        )
        result = loop.run(run, run_dir)
        if result.get("preempted"):
            stopped = name
            break
        results[name] = result_seeds(result)
        kill_points.reached("between_suite_runs")
    wall = time.perf_counter() - t0
    found = comparisons_lib.compare_suite(config, results)
    table = format_table(config, results, found)
    note = f"\nStopped during {stopped}: rerun the same command to resume.\n" if stopped else ""
    extra = _write_suite_outputs(config, workdir, results, found)
    text = (
        f"# {config.get('description') or config.name}\n\n{table}\n{note}\n"
        f"Wall time {wall / 60:.1f} min on {machine_description()}.\n"
        "Best = maximum test top-1 over epochs (as the reference reports); last = final epoch; "
        "mean ± sample std over seeds; paper = the paper's reported top-1 (empty: not reported).\n"
        + (f"best vs <baseline>: {suite_report.METHOD_TEXT}\n" if found else "")
        + extra
    )
    report.write_output(os.path.join(workdir, "summary.md"), text)
    print("\n" + table + note + extra + f"\n(wall time {wall / 60:.1f} min; details in {workdir}/summary.md)")
    return results


def _write_suite_outputs(
    config: ml_collections.ConfigDict,
    workdir: str,
    results: dict[str, list[dict]],
    found: list[comparisons_lib.Comparison],
) -> str:
    """Writes ``comparisons.json``, ``comparison.png`` and a sweep's ``sweep.png``; returns the text
    they add to the summary (the sweep's table)."""
    if found:
        suite_report.write_comparisons(found, os.path.join(workdir, "comparisons.json"))
    if results:
        suite_report.plot_comparison(config, results, os.path.join(workdir, "comparison.png"))
    if not config.get("sweep") or not results:
        return ""
    points = suite_report.sweep_points(config, results)
    if not points:
        return ""
    suite_report.plot_sweep(config, points, os.path.join(workdir, "sweep.png"))
    return (
        f"\nSweep of {config.sweep.field} (plot: sweep.png):\n\n{suite_report.format_sweep(config, points)}\n"
    )
