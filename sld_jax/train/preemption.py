"""SIGTERM and Ctrl-C as a request to stop between steps, agreed by every process."""

from __future__ import annotations

import logging
import signal

import jax
import numpy as np

log = logging.getLogger("sld_jax")


class Preemption:
    """Turns SIGTERM and a first Ctrl-C (SIGINT) into a flag checked between steps: the step in
    flight finishes, a checkpoint is saved and the run returns ``preempted``. A second Ctrl-C aborts
    at once (``KeyboardInterrupt``; the last saved checkpoint stays)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = False
        self.signal_name: str | None = None
        self._previous: dict = {}

    def __enter__(self):
        for signum in self.SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: no signal handling
                break
        return self

    def _handle(self, signum, frame):
        del frame
        if signum == signal.SIGINT and self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        again = " (Ctrl-C again aborts without saving)" if signum == signal.SIGINT else ""
        log.warning(
            "%s received: finishing the current step, then saving a checkpoint%s.", self.signal_name, again
        )

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)

    def agreed(self) -> bool:
        """True once any process was asked to stop (all processes agree, so they save together)."""
        if jax.process_count() == 1:
            return self.requested
        from jax.experimental import multihost_utils

        flags = multihost_utils.process_allgather(np.array(self.requested, np.int32))
        return bool(np.any(flags))
