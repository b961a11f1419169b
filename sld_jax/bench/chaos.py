"""Soak test of ``sld-train`` under kills: ``python -m sld_jax.bench chaos [options]``.

Trains a config (default: the digits demo suite) twice, in ``<out>/reference`` without
interruption and in ``<out>/chaos`` under faults, then compares what the two left on disk:

1. one launch per named kill point (:mod:`sld_jax.train.kill_points`, ``SLD_JAX_KILL_AT``): the
   process SIGKILLs itself right after ``best/`` is written, after a checkpoint, before the summary
   and between two suite runs;
2. ``--kills`` launches each SIGKILLed after a random delay (uniform in ``[--min-delay,
   --max-delay]`` seconds from its start: during imports, compilation, a step, an evaluation or a
   save alike), until that many kills have landed or the run finishes on its own;
3. one last launch that runs to the end.

The soak passes when the suite table (every line of ``summary.md`` but the wall time), and every
run's ``finished.json`` (last step, best step, teacher fingerprint), ``best/`` steps and
``metrics.jsonl`` (bytes) equal the reference's. A report is printed and written to
``<out>/chaos.md``; the exit status is 0 on a pass, 1 otherwise. Each launch's output is kept in
``<out>/logs/``. Example (the figure in docs/reliability.md)::

    python -m sld_jax.bench chaos --kills 20 --out /tmp/chaos
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from typing import Any

from sld_jax.bench.common import machine_description
from sld_jax.train import kill_points
from sld_jax.train import workdir as workdir_lib

DEFAULT_CONFIG = "configs/digits/demo.py"
# A launch's hard limit: the demo trains in minutes; only a hung process meets it.
LAUNCH_TIMEOUT_S = 3600


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sld_jax.bench chaos", description=__doc__.splitlines()[0])
    p.add_argument("--config", default=DEFAULT_CONFIG, help="config file (as sld-train's --config)")
    p.add_argument("--out", default="workdirs/chaos", help="holds reference/, chaos/, logs/ and chaos.md")
    p.add_argument("--kills", type=int, default=20, help="random SIGKILLs to deliver (>= 0)")
    p.add_argument("--min-delay", type=float, default=2.0, help="earliest kill after a launch (s)")
    p.add_argument("--max-delay", type=float, default=25.0, help="latest kill after a launch (s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill delays")
    p.add_argument("--no-kill-points", action="store_true", help="skip the named kill points")
    p.add_argument("overrides", nargs="*", help="--config.x=y overrides for both trainings (after --)")
    args = p.parse_args(argv)
    if args.kills < 0 or not 0 <= args.min_delay <= args.max_delay:
        p.error("need --kills >= 0 and 0 <= --min-delay <= --max-delay")
    return args


class Launcher:
    """Starts ``sld-train`` on one workdir, one launch at a time, each logged to its own file."""

    def __init__(self, config: str, workdir: str, logs: str, overrides: list[str]):
        self.command = [sys.executable, "-m", "sld_jax.cli", "--config", config, "--workdir", workdir]
        self.command += overrides
        self.logs = logs
        self.count = 0

    def launch(self, *, kill_after: float | None = None, kill_point: str | None = None) -> dict:
        """Runs one launch; returns ``{exit, seconds, killed, log}``.

        Args:
          kill_after: SIGKILL the process this many seconds after its start (if still running).
          kill_point: set ``SLD_JAX_KILL_AT`` to this point (the process kills itself there).
        """
        self.count += 1
        log = os.path.join(self.logs, f"launch_{self.count:03d}.log")
        env = dict(os.environ)
        env.pop(kill_points.ENV, None)
        if kill_point:
            env[kill_points.ENV] = kill_point
        t0 = time.monotonic()
        with open(log, "w") as out:
            proc = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT, env=env)
            killed = False
            try:
                proc.wait(timeout=kill_after if kill_after is not None else LAUNCH_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                if kill_after is None:
                    proc.kill()
                    proc.wait()
                    raise RuntimeError(f"launch {self.count} hung for {LAUNCH_TIMEOUT_S} s; see {log}")
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed = True
        return {
            "exit": proc.returncode,
            "seconds": round(time.monotonic() - t0, 1),
            "killed": killed or proc.returncode == -signal.SIGKILL,
            "log": log,
        }


def run_dirs(workdir: str) -> list[str]:
    """The run directories of a finished training in ``workdir``: itself (one run), or its
    subdirectories holding a run (a suite), relative to ``workdir``."""
    if os.path.exists(os.path.join(workdir, workdir_lib.CONFIG_FILE)):
        return ["."]
    out = []
    for root, dirs, files in os.walk(workdir):
        dirs[:] = sorted(d for d in dirs if d not in ("best", "checkpoints", "tensorboard"))
        if workdir_lib.CONFIG_FILE in files:
            out.append(os.path.relpath(root, workdir))
    return sorted(out)


def _table(workdir: str) -> list[str]:
    """The table lines of a summary (``| ... |``), or [] when there is no summary."""
    try:
        with open(os.path.join(workdir, "summary.md")) as f:
            return [line.rstrip("\n") for line in f if line.startswith("|")]
    except OSError:
        return []


def _best_steps(run: str) -> list[int]:
    directory = os.path.join(run, "best")
    return sorted(int(n) for n in os.listdir(directory) if n.isdigit()) if os.path.isdir(directory) else []


def _read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def compare(reference: str, other: str) -> list[str]:
    """Every difference between two trainings of one config (empty: the same results).

    Compared: the suite table (``summary.md``'s table lines; a single run's summary has none) and,
    per run, ``finished.json``, the steps in ``best/`` and ``metrics.jsonl`` byte for byte.
    """
    problems = []
    if _table(reference) != _table(other):
        problems.append("the summary tables differ")
    runs = run_dirs(reference)
    if not runs:
        return [f"{reference} holds no run"]
    if run_dirs(other) != runs:
        problems.append(f"the runs differ: {run_dirs(other)} vs {runs}")
    for name in runs:
        a, b = os.path.join(reference, name), os.path.join(other, name)
        record = workdir_lib.read_finished(b)
        if record is None or record != workdir_lib.read_finished(a):
            problems.append(f"{name}: finished.json {record} vs {workdir_lib.read_finished(a)}")
        if _best_steps(a) != _best_steps(b):
            problems.append(f"{name}: best/ holds steps {_best_steps(b)} vs {_best_steps(a)}")
        metrics = workdir_lib.METRICS_FILE
        if _read_bytes(os.path.join(a, metrics)) != _read_bytes(os.path.join(b, metrics)):
            problems.append(f"{name}: {metrics} differs")
    return problems


def soak(args: argparse.Namespace) -> dict[str, Any]:
    """Runs the reference, the faults and the final launch; returns the report's facts."""
    out = os.path.abspath(args.out)
    logs = os.path.join(out, "logs")
    os.makedirs(logs, exist_ok=True)
    overrides = [o for o in args.overrides if o != "--"]
    reference_dir, chaos_dir = os.path.join(out, "reference"), os.path.join(out, "chaos")
    reference = Launcher(args.config, reference_dir, logs, overrides)
    chaos = Launcher(args.config, chaos_dir, logs, overrides)
    facts: dict[str, Any] = {"config": args.config, "overrides": overrides, "kill_points": [], "kills": []}

    print(f"reference: training {args.config} in {reference_dir}", flush=True)
    ref = reference.launch()
    if ref["exit"] != 0:
        raise RuntimeError(f"the reference training failed (exit {ref['exit']}); see {ref['log']}")
    facts["reference_seconds"] = ref["seconds"]

    t0 = time.monotonic()
    for point in () if args.no_kill_points else kill_points.POINTS:
        launch = chaos.launch(kill_point=point)
        facts["kill_points"].append({"point": point, **launch})
        print(f"kill point {point}: exit {launch['exit']} after {launch['seconds']} s", flush=True)
    rng = random.Random(args.seed)
    finished_early = False
    while len([k for k in facts["kills"] if k["killed"]]) < args.kills:
        delay = round(rng.uniform(args.min_delay, args.max_delay), 2)
        launch = chaos.launch(kill_after=delay)
        facts["kills"].append({"delay": delay, **launch})
        print(f"kill {len(facts['kills'])}: after {delay} s, exit {launch['exit']}", flush=True)
        if not launch["killed"]:
            finished_early = launch["exit"] == 0
            if not finished_early:
                raise RuntimeError(f"a chaos launch failed (exit {launch['exit']}); see {launch['log']}")
            break
    final = chaos.launch()
    facts["final"] = final
    if final["exit"] != 0:
        raise RuntimeError(f"the final launch failed (exit {final['exit']}); see {final['log']}")
    facts["chaos_seconds"] = round(time.monotonic() - t0, 1)
    facts["finished_before_all_kills"] = finished_early
    facts["problems"] = compare(reference_dir, chaos_dir)
    facts["runs"] = {
        name: {
            "finished": workdir_lib.read_finished(os.path.join(chaos_dir, name)),
            "best_steps": _best_steps(os.path.join(chaos_dir, name)),
        }
        for name in run_dirs(chaos_dir)
    }
    facts["table"] = _table(chaos_dir)
    facts["machine"] = machine_description()
    return facts


def format_report(facts: dict[str, Any]) -> str:
    """The markdown report of :func:`soak`'s facts."""
    killed = [k for k in facts["kills"] if k["killed"]]
    points = facts["kill_points"]
    verdict = "PASS: the same results as the uninterrupted run" if not facts["problems"] else "FAIL"
    lines = [
        f"# sld_jax chaos soak: {facts['config']} {' '.join(facts['overrides'])}".rstrip(),
        "",
        f"- {verdict}",
        f"- machine: {facts['machine']}",
        f"- reference (uninterrupted): {facts['reference_seconds']} s",
        f"- named kill points: {len(points)} launches, "
        + ", ".join(f"{p['point']} (exit {p['exit']})" for p in points),
        f"- random SIGKILLs landed: {len(killed)} (delays "
        + ", ".join(f"{k['delay']:g}" for k in killed)
        + " s)"
        + (" — the run finished before the next one" if facts.get("finished_before_all_kills") else ""),
        f"- faults and final launch: {facts['chaos_seconds']} s in {len(points) + len(facts['kills']) + 1} launches",
        "",
        "Per run (under faults): finished step, best step, best/ steps:",
        "",
    ]
    for name, run in facts["runs"].items():
        rec = run["finished"] or {}
        lines.append(
            f"- {name}: step {rec.get('step')}, best {rec.get('best_step')}, best/ {run['best_steps']}"
        )
    lines += ["", *facts["table"], ""]
    if facts["problems"]:
        lines += ["Differences:", "", *[f"- {p}" for p in facts["problems"]], ""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    facts = soak(args)
    text = format_report(facts)
    out = os.path.abspath(args.out)
    with open(os.path.join(out, "chaos.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "chaos.json"), "w") as f:
        json.dump(facts, f, indent=1)
    print("\n" + text)
    return 0 if not facts["problems"] else 1
