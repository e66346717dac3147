"""Scene settings of the NeX panel and the state of its background job (``scene.nex``).

The job state is written only by :func:`apply_status`, called on the main thread by the worker's poll
step; panels just draw it.
"""

from __future__ import annotations

from pathlib import Path

# No module-level `import bpy`: bpy 4.2 keeps PropertyGroup classes alive forever, and one whose methods'
# globals hold the bpy module makes Blender crash at exit (see compat.py); import it inside functions.
from bpy.props import (BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty,
                       StringProperty)
from bpy.types import PropertyGroup, Scene

NETWORK_SUMMARY = {"AUTO": "", "MLP": ", MLP network", "GRID": ", grid network"}

PRESET_ITEMS = (
    ("tiny", "Tiny", "4 x 2 planes, 150 steps at 80 px: seconds on a CPU (a quick check)"),
    ("fast", "Fast", "8 x 4 planes, 1200 steps: minutes on a CPU"),
    ("paper", "Paper", "16 x 12 planes, 60000 steps at 1008 px: the paper's settings (needs a GPU)"),
)

JOB_LABELS = {"prepare": "Prepare", "train": "Train", "bake": "Bake", "export": "Export", "env": "Environment",
              "check": "Check"}


class NEX_PG_job(PropertyGroup):
    """What the panel shows about the latest background job of this scene."""

    kind: StringProperty(name="Job", description="prepare, train, bake, export")
    running: BoolProperty(name="Running")
    phase: StringProperty(name="Phase")
    progress: FloatProperty(name="Progress", subtype="PERCENTAGE", min=0.0, max=100.0, precision=0)
    step: IntProperty(name="Step")
    steps: IntProperty(name="Steps")
    loss: FloatProperty(name="Loss", precision=5, default=float("nan"))
    psnr: FloatProperty(name="PSNR", description="Training PSNR (dB)", precision=2, default=float("nan"))
    test_psnr: FloatProperty(name="Held-out PSNR", description="PSNR on the held-out views (dB)", precision=2,
                             default=float("nan"))
    eta_s: FloatProperty(name="ETA", description="Estimated seconds left", default=-1.0)
    message: StringProperty(name="Message", description="The latest status line")
    error: StringProperty(name="Error", description="Why the job failed")
    log_path: StringProperty(name="Log", subtype="FILE_PATH", description="The job's output log")
    preview_path: StringProperty(name="Preview", subtype="FILE_PATH")
    resumable: BoolProperty(name="Resumable", description="The run stopped with a checkpoint")
    returncode: IntProperty(name="Exit code")


class NEX_PG_settings(PropertyGroup):
    """The NeX panel's settings for this scene."""

    photos_dir: StringProperty(name="Photos", subtype="DIR_PATH",
                               description="Folder of 12 or more overlapping photos of the scene (for Prepare)")
    scene_dir: StringProperty(name="Scene", subtype="DIR_PATH",
                              description="Scene folder: images/ plus camera poses (poses_bounds.npy, "
                                          "sparse/0 or transforms.json); Prepare fills it in")
    run_dir: StringProperty(name="Run", subtype="DIR_PATH",
                            description="Run folder for training, checkpoints and the baked MPI "
                                        "(empty: <scene>/nex_runs/<preset>)")
    preset: EnumProperty(name="Preset", items=PRESET_ITEMS, default="fast")
    layers: IntProperty(name="Layers", min=0, max=64, default=0,
                        description="Plane groups sharing colour coefficients (0: the preset's)")
    sublayers: IntProperty(name="Sublayers", min=0, max=32, default=0,
                           description="Planes per layer (0: the preset's)")
    width: IntProperty(name="Width", min=0, max=8192, default=0, subtype="PIXEL",
                       description="Train at this image width (0: the preset's)")
    steps: IntProperty(name="Steps", min=0, max=1000000, default=0,
                       description="Training steps (0: the preset's)")
    minutes: FloatProperty(name="Minutes", min=0.0, max=100000.0, default=0.0, precision=1, step=50,
                           description="Train for this many minutes instead of a number of steps: the steps "
                                       "follow from the measured step time, and the schedule from the fraction "
                                       "of the time used (0: Steps decides; nex train --minutes)")
    # Explicit numbers: a .blend stores the number, and files saved before Automatic existed hold 0 or 1.
    network: EnumProperty(name="Network", default="AUTO", items=[
        ("AUTO", "Automatic", "The preset's: Fast takes the network that reaches the better result in the "
                              "same time on this computer (the MLP with a GPU or a CPU with native bf16, else "
                              "the grid), Paper the MLP", 2),
        ("MLP", "MLP (NeX)", "The paper's coefficient network: positional encoding + MLP "
                             "(nex train --field mlp)", 0),
        ("GRID", "Grid", "Per-plane feature grids + a small MLP: several times fewer operations a step, "
                         "same outputs, bake and import (nex train --field grid)", 1)],
        description="Form of the network that predicts each plane's alpha and colour coefficients")
    evaluate: BoolProperty(name="Evaluate", default=False,
                           description="Score the held-out views (PSNR, SSIM, LPIPS) after training")
    baked_dir: StringProperty(name="Baked MPI", subtype="DIR_PATH",
                              description="Baked MPI folder (mpi.json + PNGs); empty: <run>/baked")
    export_path: StringProperty(name="glTF", subtype="FILE_PATH",
                                description="Where Export writes the glTF binary (empty: <run>/export/mpi.glb)")
    dataset_dir: StringProperty(name="Dataset", subtype="DIR_PATH",
                                description="Where Render Dataset writes the scene folder")
    dataset_cols: IntProperty(name="Columns", default=5, min=1, max=32)
    dataset_rows: IntProperty(name="Rows", default=4, min=1, max=32)
    dataset_baseline: FloatProperty(name="Baseline", default=0.0, min=0.0, unit="LENGTH",
                                    description="Width of the camera grid (0: 15% of the median depth seen)")
    dataset_jitter: FloatProperty(name="Jitter", default=0.2, min=0.0, max=0.5,
                                  description="Random camera offsets, as a fraction of the grid spacing")
    job: PointerProperty(type=NEX_PG_job)

    # ---- derived paths -----------------------------------------------------------------------------

    def resolved_scene_dir(self) -> Path | None:
        return _path(self.scene_dir)

    def resolved_run_dir(self) -> Path | None:
        run = _path(self.run_dir)
        if run is not None:
            return run
        scene = self.resolved_scene_dir()
        return scene / "nex_runs" / self.preset if scene is not None else None

    def field_flag(self) -> str | None:
        """``nex train --field``'s value for the Network menu (None: the preset's choice)."""
        return None if self.network == "AUTO" else self.network.lower()

    def effective_summary(self) -> str:
        """What Train will use: the preset's settings with this panel's overrides applied."""
        from . import _core

        cfg = _core.module("config").preset(self.preset)
        layers = self.layers or cfg.model.layers
        sublayers = self.sublayers or cfg.model.sublayers
        width = self.width or cfg.data.width
        length = f"{self.minutes:g} min" if self.minutes > 0 else f"{self.steps or cfg.train.steps} steps"
        return (f"{layers} x {sublayers} = {layers * sublayers} planes, {length}, "
                f"{f'{width} px wide' if width else 'full size'}"
                f"{NETWORK_SUMMARY[self.network]}")

    def resolved_baked_dir(self) -> Path | None:
        baked = _path(self.baked_dir)
        if baked is not None:
            return baked
        from . import _core

        run = self.resolved_run_dir()
        return _core.module("run_files").RunFiles(run).baked if run is not None else None


def _path(value: str) -> Path | None:
    value = value.strip()
    if not value:
        return None
    import bpy

    return Path(bpy.path.abspath(value)).resolve()


def apply_status(job: NEX_PG_job, status) -> None:
    """Copy a :class:`~nex_blender.worker.JobStatus` into the scene's job state (main thread only)."""
    job.kind = status.kind
    job.running = status.running
    job.phase = status.phase
    job.progress = 100.0 * max(0.0, min(1.0, status.progress))
    job.step, job.steps = status.step, status.steps
    job.loss = status.loss if status.loss is not None else float("nan")
    job.psnr = status.psnr if status.psnr is not None else float("nan")
    job.test_psnr = status.test_psnr if status.test_psnr is not None else float("nan")
    job.eta_s = status.eta_s if status.eta_s is not None else -1.0
    job.message = status.message[:1000]
    job.error = status.error[:2000]
    job.log_path = str(status.log_path or "")
    job.preview_path = str(status.preview or "")
    job.resumable = status.resumable
    job.returncode = status.returncode if status.returncode is not None else 0


classes = (NEX_PG_job, NEX_PG_settings)


def register() -> None:
    Scene.nex = PointerProperty(type=NEX_PG_settings)


def unregister() -> None:
    del Scene.nex
