"""Stopping a long command cleanly: Ctrl-C (or the Blender add-on's stop signal) asks the work to stop at
its next check, so it can leave a checkpoint or a tidy folder behind; a second Ctrl-C stops at once."""

from __future__ import annotations

import signal


class StopFlag:
    """Set by SIGINT/SIGTERM so training stops at the next step with a checkpoint."""

    def __init__(self):
        self.stop = False

    def __call__(self) -> bool:
        return self.stop

    def install(self) -> None:
        """Route SIGINT, SIGTERM (and SIGBREAK on Windows) to this flag."""
        def handler(signum, frame):
            if self.stop:  # a second Ctrl-C: give up at once
                raise KeyboardInterrupt
            self.stop = True

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
        if hasattr(signal, "SIGBREAK"):  # Windows: how the Blender add-on asks a worker to stop
            signal.signal(signal.SIGBREAK, handler)
