"""The progress channel: ``events.jsonl`` in a run directory. Torch-free (the add-on reads it).

One JSON object per line. Every event has ``time`` (unix seconds), ``phase`` and ``kind``; training
progress events carry ``step``, ``steps``, ``loss``, ``psnr`` (training rays), ``rays_per_s`` and
``eta_s``; evaluation events carry ``test_psnr``; ``kind == "error"`` carries ``message``.

Phases: ``setup``, ``train``, ``eval``, ``render``, ``done``, ``cancelled``, ``failed``.

``nex prepare`` writes the same kind of stream to ``SCENE_DIR/events.jsonl`` with the phases ``setup``,
``photos``, ``features``, ``matching``, ``mapping``, ``undistortion``, ``writing``, then ``done`` (kind
``report``: the whole prepare report plus a text ``summary``), ``cancelled`` or ``failed``. Each working phase emits kind
``start`` (``steps``, ``unit``), ``progress`` (``step``, ``steps``, ``unit``, ``elapsed_s``, ``eta_s``)
and ``end`` (``elapsed_s`` and a summary); kinds ``note`` and ``warning`` carry a ``message``. The
``mapping`` note on the lens model also carries ``lens_model``, ``lens_chosen_by``, ``radial_error_px``
and ``no_distortion_error_px`` (as in the report).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from .run_files import EVENTS_FILE

Listener = Callable[[dict[str, Any]], None]


class EventLog:
    """Appends events to ``events.jsonl`` (flushed per line) and passes them to in-process listeners."""

    def __init__(self, run_dir: Path | None, listeners: Iterable[Listener] = ()):
        self.path = Path(run_dir) / EVENTS_FILE if run_dir is not None else None
        self.listeners = list(listeners)
        self._end_torn_line()

    def _end_torn_line(self) -> None:
        """A process killed mid-write leaves a last line without its newline; end it, so the next
        event starts on a line of its own (readers skip the torn one)."""
        if self.path is None or not self.path.is_file() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                fh.write(b"\n")

    def emit(self, phase: str, kind: str = "progress", **fields: Any) -> dict[str, Any]:
        event = {"time": time.time(), "phase": phase, "kind": kind, **fields}
        if self.path is not None:
            line = json.dumps(event, allow_nan=False, default=_jsonable) + "\n"
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
        for listener in self.listeners:
            listener(event)
        return event


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


class EventReader:
    """Incremental reader: each :meth:`poll` returns the complete lines written since the last one.

    A partly written last line is left for the next poll, so a reader never sees half an event; a line
    torn by a killed writer (ended by the next writer's newline) is skipped.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.offset = 0

    def poll(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        events = []
        for line in data[: end + 1].splitlines():
            if not line.strip():
                continue
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # torn by a writer that was killed mid-line; the next writer starts a new line
        return events


def read_events(path: Path) -> list[dict[str, Any]]:
    """All complete events in a file (empty if it does not exist)."""
    return EventReader(path).poll()


def last_event(path: Path, kind: str | None = None) -> dict[str, Any] | None:
    """The newest event (of ``kind`` if given), or None."""
    for event in reversed(read_events(path)):
        if kind is None or event.get("kind") == kind:
            return event
    return None
