"""Terminal output shared by the subcommands: a console on stderr, the progress bar, and an event printer
base that shows a bar on a terminal and throttled plain lines elsewhere."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress


def stderr_console(soft_wrap: bool = False) -> Console:
    """A rich console on stderr printing text as given: no markup, no highlighting (paths may hold brackets).
    ``soft_wrap`` leaves long lines unbroken."""
    from rich.console import Console

    return Console(stderr=True, markup=False, highlight=False, soft_wrap=soft_wrap)


def counter_progress(console: Console, label: str, unit: str, transient: bool) -> Progress:
    """A progress bar reading ``label  ━━━━  done/total  unit  time left``; ``label`` and ``unit`` are rich
    column formats (e.g. ``"{task.description}"``). The caller starts it (or uses it as a context manager)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn(unit), TimeRemainingColumn(),
                    console=console, transient=transient)


class Throttle:
    """Says yes at most once per ``seconds`` (or when forced): the pace of plain progress lines."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.last = 0.0

    def ready(self, force: bool = False) -> bool:
        """Whether to print now; a yes restarts the interval."""
        if force or time.time() - self.last > self.seconds:
            self.last = time.time()
            return True
        return False


class EventPrinter:
    """Base of the printers that turn a command's events into terminal output: a stderr console, a live
    progress bar on terminals (plain lines at most every ``plain_every`` seconds elsewhere) and ``close``."""

    def __init__(self, quiet: bool = False, soft_wrap: bool = False, plain_every: float = 10.0):
        self.console = stderr_console(soft_wrap)
        self.quiet = quiet
        self.progress: Progress | None = None
        self.plain = Throttle(plain_every)

    def start_progress(self, label: str, unit: str) -> Progress | None:
        """The live progress bar, started on first use; None when not on a terminal."""
        if self.progress is None and self.console.is_terminal:
            self.progress = counter_progress(self.console, label, unit, transient=False)
            self.progress.start()
        return self.progress

    def say(self, text: str) -> None:
        """Print a line of plain text."""
        self.console.print(text)

    def close(self) -> None:
        """Stop the progress bar (what is left of it stays on screen)."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
