"""The jobs a front end (the Blender add-on) starts in a background Python, as typed options, and the
``nex`` command line each one is: ``[python, "-m", "nex_core.cli", SUBCOMMAND, ...]``. Torch-free.

Each job also says where its progress and output go (``events.jsonl``, a log in the run folder; see
:mod:`.run_files`) and, for the commands that answer in JSON, how to read the answer. Zero or None in
an option means "the preset's / the command's default": the flag is then left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from .run_files import EVENTS_FILE, RunFiles

if TYPE_CHECKING:
    from .answers.doctor import DoctorReport
    from .scene.loader import SceneCameras

CLI_MODULE = "nex_core.cli"


class NexJob:
    """What every job has; subclasses are dataclasses of their options."""

    kind: ClassVar[str]

    def args(self) -> list[str]:
        """The ``nex`` arguments (subcommand first)."""
        raise NotImplementedError

    def argv(self, python: str) -> list[str]:
        """The whole command line, run by ``python``."""
        return [str(python), "-m", CLI_MODULE, *self.args()]

    @property
    def run_dir(self) -> Path | None:
        """The run folder the job works in, if any."""
        return None

    @property
    def events_path(self) -> Path | None:
        """The ``events.jsonl`` the job writes its progress to, if any."""
        return None

    @property
    def log_path(self) -> Path | None:
        """Where the job's output belongs, when it has a run folder."""
        return RunFiles(self.run_dir).log(self.kind) if self.run_dir is not None else None


class _TrainingJob(NexJob):
    """A training job: it works in the run folder ``self.run`` and logs its progress there."""

    run: Path

    @property
    def run_dir(self) -> Path:
        return Path(self.run)

    @property
    def events_path(self) -> Path:
        return RunFiles(self.run).events


def _flag(name: str, value: object) -> list[str]:
    return [f"--{name}", str(value)] if value else []


@dataclass(frozen=True)
class PrepareJob(NexJob):
    """``nex prepare PHOTOS --out SCENE``: camera poses by structure from motion."""

    photos: Path
    scene: Path
    force: bool = False
    kind: ClassVar[str] = "prepare"

    def args(self) -> list[str]:
        return ["prepare", str(self.photos), "--out", str(self.scene)] + (["--force"] if self.force else [])

    @property
    def events_path(self) -> Path:
        return Path(self.scene) / EVENTS_FILE


@dataclass(frozen=True)
class TrainJob(_TrainingJob):
    """``nex train SCENE --preset P --out RUN`` with the panel's overrides (``--minutes M``: to a time budget)."""

    scene: Path
    run: Path
    preset: str = "fast"
    layers: int = 0
    sublayers: int = 0
    width: int = 0
    steps: int = 0
    minutes: float = 0.0  # a time budget instead of steps (the two exclude each other)
    field: str | None = None  # "mlp", "grid" or "auto"; None: the preset's
    evaluate: bool = True  # score the held-out views at the end
    kind: ClassVar[str] = "train"

    def __post_init__(self) -> None:
        if self.steps and self.minutes:
            raise ValueError(f"a training job has steps ({self.steps}) or minutes ({self.minutes:g}), not both")

    def args(self) -> list[str]:
        out = ["train", str(self.scene), "--preset", self.preset, "--out", str(self.run)]
        for name in ("layers", "sublayers", "width", "steps", "minutes", "field"):
            out += _flag(name, getattr(self, name))
        return out + ([] if self.evaluate else ["--no-eval"])


@dataclass(frozen=True)
class ResumeJob(_TrainingJob):
    """``nex train --resume RUN``: continue from the newest checkpoint."""

    run: Path
    evaluate: bool = True
    kind: ClassVar[str] = "train"

    def args(self) -> list[str]:
        return ["train", "--resume", str(self.run)] + ([] if self.evaluate else ["--no-eval"])


@dataclass(frozen=True)
class BakeJob(NexJob):
    """``nex bake RUN``: the trained run as textures in ``RUN/baked``."""

    run: Path
    kind: ClassVar[str] = "bake"

    def args(self) -> list[str]:
        return ["bake", str(self.run)]

    @property
    def run_dir(self) -> Path:
        return Path(self.run)

    @property
    def baked_dir(self) -> Path:
        return RunFiles(self.run).baked


@dataclass(frozen=True)
class ExportJob(NexJob):
    """``nex export RUN --gltf FILE``: the baked MPI as glTF binary (default ``RUN/export/mpi.glb``)."""

    run: Path
    gltf: Path | None = None
    kind: ClassVar[str] = "export"

    @property
    def out(self) -> Path:
        return Path(self.gltf) if self.gltf is not None else RunFiles(self.run).gltf

    def args(self) -> list[str]:
        return ["export", str(self.run), "--gltf", str(self.out)]

    @property
    def run_dir(self) -> Path:
        return Path(self.run)


@dataclass(frozen=True)
class CamerasJob(NexJob):
    """``nex cameras SCENE --json``: the scene's cameras, read by a Python that has every reader."""

    scene: Path
    holdout: int = 8
    ref_image: str = ""
    kind: ClassVar[str] = "cameras"

    def args(self) -> list[str]:
        return ["cameras", str(self.scene), "--json", "--holdout", str(self.holdout)] + _flag("ref-image",
                                                                                             self.ref_image)

    @staticmethod
    def read_answer(stdout: str) -> "SceneCameras":
        from .answers import cameras

        return cameras.decode(stdout)


@dataclass(frozen=True)
class DoctorJob(NexJob):
    """``nex doctor --json``: what the background Python has (nex_core, torch, packages, device)."""

    kind: ClassVar[str] = "doctor"

    def args(self) -> list[str]:
        return ["doctor", "--json"]

    @staticmethod
    def read_answer(stdout: str) -> "DoctorReport":
        from .answers.doctor import DoctorReport

        return DoctorReport.decode(stdout)
