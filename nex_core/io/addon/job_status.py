"""What the add-on's panel shows about a background job, from the job's events and how it ended. Pure data
and functions (no bpy), so they are tested without Blender; ``nex_blender/worker.py`` runs the processes."""

from __future__ import annotations

import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

# Phases of ``nex prepare`` in order, with their share of the progress bar.
PREPARE_PHASES = {"photos": 0.05, "features": 0.25, "matching": 0.25, "mapping": 0.30, "undistortion": 0.10,
                  "writing": 0.05}


@dataclass
class JobStatus:
    """Everything the panel shows about a job (plain data)."""

    kind: str
    running: bool = True
    phase: str = "starting"
    progress: float = 0.0  # 0..1
    step: int = 0
    steps: int = 0
    loss: float | None = None
    psnr: float | None = None
    test_psnr: float | None = None
    eta_s: float | None = None
    message: str = ""
    error: str = ""
    preview: str | None = None
    resumable: bool = False
    returncode: int | None = None
    log_path: Path | None = None
    started: float = field(default_factory=time.time)

    @property
    def succeeded(self) -> bool:
        return not self.running and self.returncode == 0 and not self.error


def apply_event(status: JobStatus, event: dict) -> None:
    """Update ``status`` from one events.jsonl event (training, prepare or any other nex command)."""
    kind, phase = event.get("kind"), event.get("phase", "")
    if kind == "error":
        status.error = str(event.get("message") or "the job reported an error")
        status.phase = "failed"
        return
    if kind in ("note", "warning") and event.get("message"):
        status.message = f"{kind}: {event['message']}"
        return
    if kind == "resume":
        status.step = int(event.get("step", status.step))
        status.message = f"resumed from step {status.step}"
    elif kind == "start" and phase == "setup":
        status.phase = "setup"
        status.message = f"setting up on {event['device']}" if event.get("device") else "setting up"
    elif kind == "start" and phase == "train":
        status.phase = "train"
        status.step, status.steps = int(event.get("step", 0)), int(event.get("steps", 0))
        status.message = (f"training {event.get('planes', '?')} planes on {event.get('n_train', '?')} views "
                          f"({event.get('n_test', 0)} held out)")
    elif kind == "progress" and phase == "train":
        status.phase = "train"
        status.step, status.steps = int(event.get("step", 0)), int(event.get("steps", 0))
        status.loss, status.psnr, status.eta_s = event.get("loss"), event.get("psnr"), event.get("eta_s")
    elif kind == "checkpoint":
        status.message = f"checkpoint at step {event.get('step')}"
        status.resumable = True
    elif kind == "preview" and event.get("path"):
        status.preview = str(event["path"])
    elif kind == "test_psnr":
        status.phase = "eval"
        if event.get("test_psnr") is not None:
            status.test_psnr = float(event["test_psnr"])
    elif kind == "cancelled":
        status.phase = "cancelled"
        status.resumable = True
        status.message = f"stopped at step {event.get('step', '?')}; Resume continues"
    elif kind == "done":
        status.phase = "done"
        status.step = int(event.get("step", status.step))
    elif phase in PREPARE_PHASES:
        status.phase = phase
        if kind in ("start", "progress"):
            status.step, status.steps = int(event.get("step", 0)), int(event.get("steps", 0))
            status.eta_s = event.get("eta_s")
            status.message = f"{phase}: {status.step}/{status.steps} {event.get('unit', '')}".rstrip()
        elif kind == "end":
            status.step = status.steps
    elif kind == "report":
        status.phase = "done"
        status.message = str(event.get("summary") or "scene written")
    status.progress = progress_of(status)


def progress_of(status: JobStatus) -> float:
    """The fraction done, 0..1, from the phase and step counts."""
    if status.phase == "done":
        return 1.0
    frac = status.step / status.steps if status.steps else 0.0
    if status.phase in PREPARE_PHASES:
        names = list(PREPARE_PHASES)
        before = sum(PREPARE_PHASES[n] for n in names[:names.index(status.phase)])
        return min(1.0, before + PREPARE_PHASES[status.phase] * frac)
    return max(0.0, min(1.0, frac))


_MISSING_MODULE = re.compile(r"No module named '([\w.]+)'")
_NEX_ERROR = re.compile(r"^nex: error: (.*)$", re.MULTILINE)
_INVALID_COMMAND = re.compile(r"invalid choice: '(\w+)'")


def failure_message(kind: str, returncode: int, log_text: str, python: str) -> str:
    """A clear sentence for a job that ended badly, from its exit code and the end of its log."""
    if (m := _INVALID_COMMAND.search(log_text)):
        return (f"the nex in {python} has no `{m.group(1)}` command yet; update nex_core in that environment "
                f"(Preferences > Add-ons > NeX > Create Environment) or use a newer nex")
    if (m := _MISSING_MODULE.search(log_text)):
        module = m.group(1).split(".")[0]
        what = "PyTorch" if module == "torch" else ("nex_core" if module == "nex_core" else f"the module {module}")
        return (f"the background Python ({python}) does not have {what}: choose a Python with nex_core and "
                f"torch in the add-on preferences, or press Create Environment there")
    if (m := _NEX_ERROR.findall(log_text)):
        return m[-1].strip()
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"the {kind} process was killed ({name}); the last checkpoint, if any, can be resumed"
    tail = [ln for ln in log_text.strip().splitlines() if ln.strip()]
    last = tail[-1].strip() if tail else "no output"
    return f"the {kind} process failed (exit code {returncode}): {last}"
