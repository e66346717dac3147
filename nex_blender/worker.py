"""Background jobs: ``nex`` commands run by another Python, watched through their files.

A :class:`Job` runs commands (argument lists, never a shell) from the typed jobs of ``nex_core.io.jobs``
(:func:`nex_job`) in a separate process logging to a file; progress comes from the run's ``events.jsonl``
and is kept as a ``JobStatus`` (``nex_core.io.addon.job_status``). Commands that answer in JSON are run by
:func:`ask`. Only :func:`poll_step` touches Blender data, copying statuses into scenes on the main thread.

The three steps are plain functions so they work where Blender's event loop does not run (``bpy`` as a
module, background mode: timers never fire): :func:`start` launches, :func:`poll_step` is the timer body
(call it directly to advance), :func:`cancel` asks the process to stop (SIGTERM: ``nex train`` then
writes a checkpoint and exits with code 130, so the run can be resumed).
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from . import _core, previews

_status = _core.module("addon.job_status")

POLL_INTERVAL_S = 0.5
KILL_GRACE_S = 10.0  # after an internal error: time to stop (train writes a checkpoint) before SIGKILL
ENV_JOB = "__environment__"  # the registry key of the environment-creation job (not tied to a scene)

class JobError(Exception):
    """A job cannot be started; the message says why and what to do."""


# --------------------------------------------------------------------------------------------------
# Jobs


@dataclass
class Job:
    """One background job: a list of commands run one after another, each an argument list."""

    kind: str
    commands: list[list[str]]
    log_path: Path
    events_path: Path | None = None  # the events.jsonl the job writes, if any
    cwd: Path | None = None
    env: dict[str, str] | None = None
    on_finish: Callable[["Job"], None] | None = None  # called once, from poll(), when the job ends
    status: _status.JobStatus = None  # type: ignore[assignment]
    proc: subprocess.Popen | None = None
    command_index: int = 0
    reader: object = None
    cancelled: bool = False
    _log_file: object = None

    def __post_init__(self) -> None:
        if not self.commands or not all(isinstance(c, list) and c for c in self.commands):
            raise JobError("a job needs at least one command given as a list of arguments")
        self.status = _status.JobStatus(self.kind, log_path=self.log_path)

    @property
    def python(self) -> str:
        return self.commands[0][0]

    def start(self) -> "Job":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "w", encoding="utf-8", errors="replace")
        if self.events_path is not None:
            reader_cls = _core.module("events").EventReader
            self.reader = reader_cls(self.events_path)
            # Start after what is already there (a resumed run's earlier events are history).
            try:
                self.reader.offset = self.events_path.stat().st_size
            except OSError:
                self.reader.offset = 0
        self._launch(self.commands[0])
        return self

    def _launch(self, args: list[str]) -> None:
        self._log_file.write("$ " + " ".join(_quote(a) for a in args) + "\n")
        self._log_file.flush()
        kwargs = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        try:
            self.proc = subprocess.Popen(args, cwd=self.cwd, env=self.env or worker_env(), stdin=subprocess.DEVNULL,
                                         stdout=self._log_file, stderr=subprocess.STDOUT, **kwargs)
        except OSError as exc:
            self._finish(returncode=-1 if not isinstance(exc, FileNotFoundError) else 127,
                         error=f"cannot start {args[0]}: {exc.strerror or exc}; check the Python interpreter in "
                               f"the add-on preferences")

    def poll(self) -> _status.JobStatus:
        """Advance: read new events, notice the end of the process. Returns a copy of the status."""
        if not self.status.running:
            return replace(self.status)
        self._read_events()
        code = self.proc.poll() if self.proc is not None else None
        if code is not None:
            self._read_events()
            if code == 0 and self.command_index + 1 < len(self.commands) and not self.cancelled:
                self.command_index += 1
                self.status.step, self.status.steps = self.command_index, len(self.commands)
                self._launch(self.commands[self.command_index])
            else:
                self._finish(code)
        elif len(self.commands) > 1:
            self.status.steps = len(self.commands)
            self.status.progress = max(self.status.progress, self.command_index / len(self.commands))
            self._pip_progress()
        return replace(self.status)

    def _read_events(self) -> None:
        if self.reader is not None:
            for event in self.reader.poll():
                _status.apply_event(self.status, event)

    def _pip_progress(self) -> None:
        tail = read_tail(self.log_path, 2000).strip().splitlines()
        if tail:
            self.status.message = tail[-1][:200]

    def _finish(self, returncode: int, error: str = "") -> None:
        s = self.status
        s.running = False
        s.returncode = returncode
        s.eta_s = None
        if self._log_file is not None:
            self._log_file.close()
        log_text = read_tail(self.log_path)
        if error:
            s.error = error
        elif returncode == 0:
            s.phase, s.progress, s.error = "done", 1.0, ""
            s.message = s.message if s.kind in ("prepare",) and s.message else f"{s.kind} finished"
        elif returncode == 130 or (self.cancelled and returncode in (-signal.SIGTERM, 143)):
            s.phase = "cancelled"
            s.error = ""
            s.message = (f"stopped at step {s.step}; Resume continues from the checkpoint" if s.resumable
                         else f"{s.kind} stopped")
        else:
            s.phase = "failed"
            detail = _status.failure_message(s.kind, returncode, log_text, self.python)
            # An error event is the trainer's own words; keep it and add what the log says if different.
            s.error = s.error if s.error and detail.startswith(f"the {s.kind} process") else detail
        if self.on_finish is not None:
            callback, self.on_finish = self.on_finish, None
            callback(self)

    def cancel(self) -> None:
        """Ask the process to stop (SIGTERM; CTRL_BREAK on Windows); poll() notices when it has."""
        self.cancelled = True
        if self._ask_to_stop():
            self.status.message = "stopping (writing a checkpoint)" if self.kind == "train" else "stopping"

    def _ask_to_stop(self) -> bool:
        """SIGTERM (CTRL_BREAK on Windows) to a running process; False when none runs."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        if sys.platform == "win32":
            self.proc.send_signal(signal.CTRL_BREAK_EVENT)
        else:
            self.proc.terminate()
        return True

    def abort(self, error: str, grace_s: float | None = None) -> None:
        """Mark the job failed with ``error`` and end its process: asked to stop now, killed if it still
        runs ``grace_s`` (default KILL_GRACE_S) seconds later, on a helper thread so Blender does not wait."""
        grace_s = KILL_GRACE_S if grace_s is None else grace_s
        s = self.status
        s.running, s.phase, s.error, s.eta_s = False, "failed", error, None
        proc = self.proc
        if self._ask_to_stop():
            threading.Thread(target=_reap, args=(proc, grace_s), name="nex-job-reaper", daemon=True).start()
        if self._log_file is not None:
            self._log_file.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()

    def wait(self, timeout: float | None = None) -> _status.JobStatus:
        """Poll until the job ends (for scripts and tests); raises TimeoutError after ``timeout`` s."""
        end = None if timeout is None else time.time() + timeout
        while True:
            status = self.poll()
            if not status.running:
                return status
            if end is not None and time.time() > end:
                raise TimeoutError(f"{self.kind} job still running after {timeout} s")
            time.sleep(0.1)


def nex_job(spec, python: str, log_path: Path | None = None,
            on_finish: Callable[[Job], None] | None = None) -> Job:
    """The background job of a ``nex_core.io.jobs`` job run by ``python``: its events file, its log (the
    spec's, else ``log_path``), started in the run folder's parent when there is one."""
    log = spec.log_path or log_path
    if log is None:
        raise JobError(f"the {spec.kind} job needs a log file")
    run_dir = spec.run_dir
    cwd = run_dir.parent if run_dir is not None and run_dir.parent.is_dir() else None
    return Job(spec.kind, [spec.argv(python)], log_path=log, events_path=spec.events_path, cwd=cwd,
               on_finish=on_finish)


def ask(spec, python: str, timeout: float):
    """Run a ``nex`` job that answers in JSON (cameras, doctor) and return its decoded answer; JobError
    says why there is none (the program is missing, it timed out, or the command failed)."""
    try:
        proc = subprocess.run(spec.argv(python), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env=worker_env())
    except FileNotFoundError:
        raise JobError(f"{python}: no such program") from None
    except subprocess.TimeoutExpired:
        raise JobError(f"{python} did not answer within {timeout:.0f} s") from None
    except OSError as exc:
        raise JobError(f"{python} cannot be run: {exc}") from None
    try:
        return spec.read_answer(proc.stdout)
    except _core.module("errors").FormatError as exc:
        if proc.returncode == 0 and proc.stdout.strip():  # it answered, in a form this add-on cannot read
            raise JobError(f"{python}: {exc}") from None
        raise JobError(_status.failure_message(spec.kind, proc.returncode, proc.stderr, python)) from None


def _reap(proc: subprocess.Popen, grace_s: float) -> None:
    """Kill ``proc`` if it has not exited ``grace_s`` seconds after being asked to stop."""
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _quote(arg: str) -> str:
    return arg if arg and not re.search(r"[\s'\"]", arg) else repr(arg)


def worker_env() -> dict[str, str]:
    """The environment of background processes: Blender's, minus what would confuse another Python."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONEXECUTABLE", "PYTHONSTARTUP")}
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_COLOR"] = "1"
    return env


def read_tail(path: Path | None, limit: int = 8000) -> str:
    if path is None:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


# --------------------------------------------------------------------------------------------------
# The registry and the timer (the only part that touches Blender data)

_jobs: dict[str, Job] = {}


def start(key: str, job: Job) -> Job:
    """Start ``job`` for ``key`` (a scene name, or ENV_JOB); refuses while another runs for that key."""
    current = _jobs.get(key)
    if current is not None and current.status.running:
        raise JobError(f"a {current.kind} job is still running; cancel it first or wait for it to finish")
    _jobs[key] = job.start()
    _ensure_timer()
    return job


def get(key: str) -> Job | None:
    return _jobs.get(key)


def cancel(key: str) -> bool:
    """Ask the running job of ``key`` to stop; False if none runs."""
    job = _jobs.get(key)
    if job is None or not job.status.running:
        return False
    job.cancel()
    return True


def poll_step() -> float | None:
    """The timer body: poll every job and copy its status into its scene. Returns the next interval
    (None when no job is running, which stops the timer). Safe to call directly, any time."""
    import bpy

    from .properties import apply_status

    any_running = False
    for key, job in list(_jobs.items()):
        was_running = job.status.running
        try:
            status = job.poll()
        except Exception as exc:  # a bug here must not silently stop the timer for every job
            import traceback

            traceback.print_exc()
            job.abort(f"internal error while watching the {job.kind} job: {exc!r}; its process was stopped")
            status = replace(job.status)
        any_running |= status.running
        scene = bpy.data.scenes.get(key) if key != ENV_JOB else None
        if scene is not None and (was_running or scene.nex.job.running):
            apply_status(scene.nex.job, status)
            if status.preview:
                previews.refresh(status.preview)
        if was_running and not status.running:
            _notify(status)
    if any_running:
        _tag_redraw()
    return POLL_INTERVAL_S if any_running else None


def _notify(status: _status.JobStatus) -> None:
    """Tell the user a job has ended (its panel shows the details): console, and a popup when there is UI."""
    import bpy

    if status.error:
        text, icon = f"NeX {status.kind} failed: {status.error}", "ERROR"
    else:
        text, icon = f"NeX {status.kind}: {status.message or status.phase}", "INFO"
    print(text, file=sys.stderr if status.error else sys.stdout)
    wm = getattr(bpy.context, "window_manager", None)
    if bpy.app.background or wm is None or not wm.windows:
        return

    def draw(menu, context):
        for line in textwrap.wrap(text, 70)[:10]:
            menu.layout.label(text=line)

    wm.popup_menu(draw, title="NeX", icon=icon)


def _tag_redraw() -> None:
    import bpy

    wm = getattr(bpy.context, "window_manager", None)
    for window in getattr(wm, "windows", ()):
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "PREFERENCES"):
                area.tag_redraw()


def _ensure_timer() -> None:
    import bpy

    if not bpy.app.timers.is_registered(poll_step):
        bpy.app.timers.register(poll_step, first_interval=POLL_INTERVAL_S, persistent=True)


def stop_all(wait_s: float = 5.0) -> None:
    """Ask every running job to stop and give them ``wait_s`` seconds (add-on disabled, Blender quitting)."""
    running = [job for job in _jobs.values() if job.status.running]
    for job in running:
        job.cancel()
    end = time.time() + wait_s
    for job in running:
        if job.proc is not None:
            try:
                job.proc.wait(max(0.0, end - time.time()))
            except subprocess.TimeoutExpired:
                pass
        job.poll()


def register() -> None:
    atexit.register(stop_all)


def unregister() -> None:
    import bpy

    atexit.unregister(stop_all)
    stop_all()
    _jobs.clear()
    if bpy.app.timers.is_registered(poll_step):
        bpy.app.timers.unregister(poll_step)
    previews.clear()
