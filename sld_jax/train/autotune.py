"""Measured on the spot: the seed-axis form and the steps per dispatch where no table says.

``seed_axis="auto"`` and ``steps_per_dispatch=None`` take the backend's measured defaults from
:mod:`sld_jax.train.hardware` (the CPU's today). On a backend without an entry, :func:`settle`
times the candidates on the run's own first batches before training — the seed forms
(:data:`SEED_AXIS_CANDIDATES`, when K > 1) at one step per call, then the steps per call
(:data:`STEPS_CANDIDATES`) with the fastest form — keeps the fastest per optimiser step, logs every
timing and the choice, and records them in ``workdir/autotune.json``. A resume or a rerun in that
workdir reads the record and runs the same program (the forms differ by float rounding).

The cost is bounded: tuning stops (keeping the best so far) when the next candidate's estimated
cost — its compilation plus the timed calls — would take the total past :data:`MAX_FRACTION` of the
projected run (its steps times the fastest step measured), so a short run tunes little or nothing.
Several processes (a pod) do not tune: they run the defaults, since every process would have to
agree on the same timings.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import time
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from sld_jax import atomic
from sld_jax.train import hardware
from sld_jax.train.dispatch import compile_dispatch, compile_seeds_eval_step
from sld_jax.train.seed_axis import SEED_AXIS_MODES

log = logging.getLogger("sld_jax")

RECORD_FILE = "autotune.json"
SEED_AXIS_CANDIDATES = SEED_AXIS_MODES
STEPS_CANDIDATES = (1, 4, 16)
MAX_FRACTION = 0.03  # of the projected run's time that tuning may take
TIMED_CALLS = 3  # timed calls per candidate, after its first (compiling) call


def wanted(config, backend: str | None = None) -> tuple[str, ...]:
    """The fields to tune: those left to the backend's default where the backend has no measured
    entry (``seed_axis`` only with several seeds)."""
    backend = backend or jax.default_backend()
    fields = []
    if config.get("num_seeds", 1) > 1 and config.get("seed_axis", "auto") == "auto":
        if backend not in hardware.AUTO_SEED_AXIS:
            fields.append("seed_axis")
    if config.get("steps_per_dispatch") is None and backend not in hardware.AUTO_STEPS_PER_DISPATCH:
        fields.append("steps_per_dispatch")
    return tuple(fields)


def _identity() -> dict[str, Any]:
    """What a record is valid for: the same backend, device kind and device count."""
    devices = jax.devices()
    return {"backend": jax.default_backend(), "device_kind": devices[0].device_kind, "devices": len(devices)}


def read_record(workdir: str, fields: tuple[str, ...]) -> dict | None:
    """The workdir's tuning record, if it exists, parses, was measured on this kind of machine and
    tuned exactly ``fields`` (a field the config now sets itself is never taken from a record)."""
    try:
        with open(os.path.join(workdir, RECORD_FILE)) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    same = all(record.get(k) == v for k, v in _identity().items()) and record.get("fields") == list(fields)
    return record if same and "seed_axis" in record and "steps_per_dispatch" in record else None


def _time_candidate(run, mode: str, steps: int) -> dict[str, float]:
    """Compiles the dispatch of ``(mode, steps)`` and times it on the run's first batches (on a
    copy of the initial state: the run's state is not touched). The run's own form is timed with
    the run's own dispatch of its first epoch, so that its compilation is not repeated if it is kept."""
    swap = run.student_swap(1)
    if (mode, steps) == (run.seed_axis, run.steps_per_dispatch):
        dispatch = run.dispatch(student_swap=swap)
    else:
        step_config = run.step_config(student_swap=swap)
        dispatch = compile_dispatch(step_config, run.mesh, seed_axis=mode, shares_data=run.shares_data)
    stop = min(run.data.steps_per_epoch, steps * (TIMED_CALLS + 1))
    feeds = itertools.islice(
        run.feeds(epoch=1, start_step=0, stop_step=stop, steps_per_dispatch=steps), TIMED_CALLS + 1
    )
    replicated = NamedSharding(run.mesh, P())
    times, compile_s = [], 0.0
    for i, (feed, n) in enumerate(feeds):
        active = jax.device_put(np.arange(steps) < n, replicated)
        state = jax.tree.map(lambda x: x.copy(), run.state)
        jax.block_until_ready(state)
        t0 = time.perf_counter()
        jax.block_until_ready(dispatch(state, run.teacher_variables, feed, run.split, run.rngs, active))
        elapsed = time.perf_counter() - t0
        if i == 0:
            compile_s = elapsed
        else:
            times.append(elapsed / n)
    step_s = float(np.median(times)) if times else compile_s
    return {
        "seed_axis": mode,
        "steps_per_dispatch": steps,
        "compile_s": round(compile_s, 3),
        "step_ms": round(1e3 * step_s, 3),
    }


def tune(run, fields: tuple[str, ...], *, total_steps: int) -> dict[str, Any]:
    """Times the candidates of ``fields`` for ``run`` (a :class:`~sld_jax.train.setup.Run`) within the
    budget and returns the record: the choice, every timing, and why tuning stopped early (or None)."""
    # The run's own form first: the run compiles it anyway, so tuning costs only its timed calls
    # until the budget (set by that first timing) allows a second candidate.
    modes = (run.seed_axis,)
    if "seed_axis" in fields:
        modes += tuple(m for m in SEED_AXIS_CANDIDATES if m != run.seed_axis)
    spe = run.data.steps_per_epoch
    steps = tuple(s for s in STEPS_CANDIDATES if s <= spe) if "steps_per_dispatch" in fields else None
    first_steps = steps[0] if steps else run.steps_per_dispatch
    plan = [(m, first_steps) for m in modes]
    timings, spent, stopped = [], 0.0, None
    best = None

    def over_budget(cost: float) -> bool:
        projected = total_steps * best["step_ms"] / 1e3
        return spent + cost > MAX_FRACTION * projected

    def run_plan(candidates):
        nonlocal spent, best, stopped
        for mode, s in candidates:
            if any(t["seed_axis"] == mode and t["steps_per_dispatch"] == s for t in timings):
                continue
            if best is not None:
                mean_compile = float(np.mean([t["compile_s"] for t in timings]))
                estimate = mean_compile + TIMED_CALLS * s * best["step_ms"] / 1e3
                if over_budget(estimate):
                    stopped = (
                        f"the next candidate ({mode}, {s} steps per call) would take tuning past "
                        f"{MAX_FRACTION:.0%} of the projected run ({total_steps} steps)"
                    )
                    return False
            t0 = time.perf_counter()
            timing = _time_candidate(run, mode, s)
            spent += time.perf_counter() - t0
            timings.append(timing)
            log.info(
                "autotune: seed_axis=%s steps_per_dispatch=%d: %.1f ms per step (compiled in %.1f s)",
                mode, s, timing["step_ms"], timing["compile_s"],
            )  # fmt: skip
            if best is None or timing["step_ms"] < best["step_ms"]:
                best = timing
        return True

    if run_plan(plan) and steps:
        run_plan([(best["seed_axis"], s) for s in steps])
    record = dict(_identity(), fields=list(fields), seed_axis=best["seed_axis"])
    record.update(steps_per_dispatch=best["steps_per_dispatch"], timings=timings, stopped_early=stopped)
    record["tuning_s"] = round(spent, 3)
    return record


def apply(run, record: dict):
    """``run`` with the record's choice for the fields it tuned (its compiled functions rebuilt where
    they change); the other field keeps the run's value."""
    tuned = record["fields"]
    mode = record["seed_axis"] if "seed_axis" in tuned else run.seed_axis
    steps = int(record["steps_per_dispatch"]) if "steps_per_dispatch" in tuned else run.steps_per_dispatch
    if (mode, steps) == (run.seed_axis, run.steps_per_dispatch):
        return run
    eval_step = run.eval_step
    if mode != run.seed_axis:
        spec = run.data.spec
        eval_step = compile_seeds_eval_step(run.student, run.mesh, spec.mean, spec.std, seed_axis=mode)
    return dataclasses.replace(
        run,
        seed_axis=mode,
        steps_per_dispatch=steps,
        eval_step=eval_step,
        _compiled={},
        _compiled_before={},
        _active={},
    )


def settle(run, workdir: str, *, total_steps: int):
    """The run with its seed-axis form and steps per dispatch settled: the backend's measured
    defaults, else the workdir's record, else measured now (and recorded)."""
    fields = wanted(run.config)
    if not fields:
        return run
    record = read_record(workdir, fields)
    if record is not None:
        log.info(
            "autotune: using %s's choice (seed_axis=%s, steps_per_dispatch=%s)",
            RECORD_FILE, record["seed_axis"], record["steps_per_dispatch"],
        )  # fmt: skip
        return apply(run, record)
    if jax.process_count() > 1:
        log.info("autotune: several processes; using the defaults (seed_axis=%s, steps_per_dispatch=%d)",
                 run.seed_axis, run.steps_per_dispatch)  # fmt: skip
        return run
    record = tune(run, fields, total_steps=total_steps)
    log.info(
        "autotune: chose seed_axis=%s steps_per_dispatch=%s in %.1f s%s",
        record["seed_axis"], record["steps_per_dispatch"], record["tuning_s"],
        f" (stopped early: {record['stopped_early']})" if record["stopped_early"] else "",
    )  # fmt: skip
    os.makedirs(workdir, exist_ok=True)
    atomic.write_text(os.path.join(workdir, RECORD_FILE), json.dumps(record, indent=1))
    return apply(run, record)
