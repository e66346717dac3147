"""Stopping a long command cleanly: Ctrl-C (or the Blender add-on's stop signal) asks the work to stop at
its next check, so it can leave a checkpoint or a tidy folder behind; a second Ctrl-C stops at once."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

# SIGBREAK exists on Windows only: it is how the Blender add-on asks a worker to stop there.
SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGBREAK", None)) if s is not None)


class StopFlag:
    """Set by SIGINT/SIGTERM so training stops at the next step with a checkpoint.

    Use it as a context manager (``with StopFlag() as stop:``): the handlers it replaced come back on
    exit, also after an exception, so Ctrl-C interrupts whatever runs afterwards as usual.
    """

    def __init__(self):
        self.stop = False
        self._previous: dict[int, Any] = {}

    def __call__(self) -> bool:
        return self.stop

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stop:  # a second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self.stop = True

    def install(self) -> dict[int, Any]:
        """Route SIGINT, SIGTERM (and SIGBREAK on Windows) to this flag; returns the handlers it replaced."""
        previous = {}
        for s in SIGNALS:
            previous[s] = signal.getsignal(s)
            signal.signal(s, self._handle)
        return previous

    def __enter__(self) -> StopFlag:
        self._previous = self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            # None: a handler not set from Python; the default is the closest we can put back.
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        self._previous = {}
