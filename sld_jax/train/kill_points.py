"""Named points of a run where a fault-injection test can kill the process.

``SLD_JAX_KILL_AT=<point>`` (or ``<point>@<step>``: only at that step) in the environment makes the
process SIGKILL itself when it reaches ``<point>`` (no clean-up code runs, as in a real kill);
tests in one process replace :func:`reached` to raise :class:`SimulatedKill` there instead. Unset, a point costs one dictionary
look-up. The points, in the order a run reaches them:

- ``best_saved``: ``best/<step>`` is written, ``checkpoints/<step>`` not yet;
- ``checkpoint_saved``: a checkpoint of ``checkpoints/`` is written;
- ``before_summary``: the last checkpoint is written, the summary, plot and finished marker not;
- ``between_suite_runs``: a suite's run is finished, the next one not started.
"""

from __future__ import annotations

import os
import signal

ENV = "SLD_JAX_KILL_AT"
POINTS = ("best_saved", "checkpoint_saved", "before_summary", "between_suite_runs")


class SimulatedKill(BaseException):
    """Raised at a kill point by in-process tests (a BaseException: no ``except Exception`` of the
    trainer catches it, as nothing catches a SIGKILL)."""


def reached(point: str, step: int | None = None) -> None:
    """Kills this process with SIGKILL if ``$SLD_JAX_KILL_AT`` names ``point`` (and ``step``)."""
    assert point in POINTS, point
    wanted = os.environ.get(ENV)
    if wanted and wanted in (point, f"{point}@{step}"):
        os.kill(os.getpid(), signal.SIGKILL)
