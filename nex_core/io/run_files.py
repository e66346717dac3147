"""The names of a run folder's files and folders, shared by nex_core and the Blender add-on. Torch-free.

A run folder holds ``config.toml`` (written first), ``events.jsonl`` (progress), ``preview.png``,
``checkpoints/step_XXXXXXXX.pt`` and, as later commands write them, ``eval/``, ``render/``, ``baked/``
and ``export/mpi.glb``. A front end that starts a ``nex`` command in the background sends its output to
``<kind>.log`` in the run folder (``train.log``, ``bake.log``, ...). A scene folder written by
``nex prepare`` has its own ``events.jsonl``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

CONFIG_FILE = "config.toml"
EVENTS_FILE = "events.jsonl"
PREVIEW_FILE = "preview.png"  # the reference view as trained so far
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_GLOB = "step_*.pt"
PARTIAL_CHECKPOINT_GLOB = ".step_*.pt.tmp"  # left behind by a checkpoint write that was killed
EVAL_DIR = "eval"
RENDER_DIR = "render"
BAKED_DIR = "baked"
EXPORT_DIR = "export"
GLTF_FILE = "mpi.glb"

_CHECKPOINT_NAME = re.compile(r"^step_(\d{8})\.pt$")


def checkpoint_name(step: int) -> str:
    """The file name of the checkpoint written at ``step``: ``step_XXXXXXXX.pt``."""
    return f"step_{int(step):08d}.pt"


def partial_checkpoint_name(step: int) -> str:
    """The temporary name a checkpoint is written under before it is renamed into place."""
    return f".{checkpoint_name(step)}.tmp"


def checkpoint_step(name: str) -> int | None:
    """The step of a checkpoint file name, or None if ``name`` is not one."""
    match = _CHECKPOINT_NAME.match(name)
    return int(match.group(1)) if match else None


def is_run_entry(name: str) -> bool:
    """Whether a file or folder name is one a run folder holds (so a folder of only these may be trained
    into): the config, events, preview, checkpoints, outputs, job logs, the temp names of atomic writes."""
    fixed = {CONFIG_FILE, EVENTS_FILE, PREVIEW_FILE, CHECKPOINTS_DIR, EVAL_DIR, RENDER_DIR, BAKED_DIR, EXPORT_DIR}
    return name in fixed or name.endswith((".log", ".tmp"))


def log_name(kind: str) -> str:
    """The log file of a background job of this kind (``train`` -> ``train.log``)."""
    return f"{kind}.log"


@dataclass(frozen=True)
class RunFiles:
    """The paths inside one run folder."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def events(self) -> Path:
        return self.root / EVENTS_FILE

    @property
    def preview(self) -> Path:
        return self.root / PREVIEW_FILE

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS_DIR

    @property
    def eval(self) -> Path:
        return self.root / EVAL_DIR

    @property
    def render(self) -> Path:
        return self.root / RENDER_DIR

    @property
    def baked(self) -> Path:
        return self.root / BAKED_DIR

    @property
    def gltf(self) -> Path:
        """Where the glTF export goes unless told otherwise."""
        return self.root / EXPORT_DIR / GLTF_FILE

    def log(self, kind: str) -> Path:
        return self.root / log_name(kind)

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / checkpoint_name(step)

    def list_checkpoints(self) -> list[tuple[int, Path]]:
        """(step, path) of every checkpoint file in the run, oldest first."""
        if not self.checkpoints.is_dir():
            return []
        found = [(step, p) for p in self.checkpoints.iterdir() if (step := checkpoint_step(p.name)) is not None]
        return sorted(found)

    def has_checkpoint(self) -> bool:
        return bool(self.list_checkpoints())
