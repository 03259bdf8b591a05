"""Stopping a run cleanly: signals are recorded, and all processes agree when to stop."""

from __future__ import annotations

import signal
import threading
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

__all__ = ["StopRequested", "any_process", "stop_agreed"]


class StopRequested:
    """Records SIGTERM/SIGINT instead of dying, so the loop can checkpoint and exit.

    A second signal while the first is pending restores the default behaviour.
    """

    def __init__(self):
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame):
        if self.signal is not None:
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
        self.signal = signum

    def __bool__(self) -> bool:
        return self.signal is not None

    def __enter__(self) -> StopRequested:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def any_process(flag: bool) -> bool:
    """Whether ``flag`` is set on any process; every process gets the same answer.

    A collective: every process must call it at the same point of the run.
    """
    if jax.process_count() == 1:
        return flag
    return bool(np.any(multihost_utils.process_allgather(np.int32(flag))))


def stop_agreed(stop: StopRequested, sync_point: bool) -> bool:
    """Whether the run stops after the current step.

    One process stops after the step in which it saw the signal. Processes of a
    multi-process run must stop at the same step, since saving the checkpoint
    is a collective; a signal may reach them at different steps. They exchange
    their flags only at ``sync_point`` steps (the loop's log and checkpoint
    steps, which every process reaches at the same step) rather than after
    every step, so a signal takes effect at the next such step.
    """
    if jax.process_count() == 1:
        return bool(stop)
    return sync_point and any_process(bool(stop))
