"""``nex prepare PHOTOS_DIR``: camera poses for a folder of photos (COLMAP via pycolmap), as a scene
folder ``nex train`` reads. See :mod:`nex_core.sfm.pipeline` for what each phase does."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .console import EventPrinter
from .stop_flag import StopFlag

PHASE_LABELS = {"photos": "photos", "features": "features", "matching": "matching", "mapping": "mapping",
                "undistortion": "undistort", "writing": "writing"}


class PreparePrinter(EventPrinter):
    """Turns prepare events into one rich progress bar per phase (plain lines when not on a terminal)."""

    def __init__(self, quiet: bool = False):
        super().__init__(quiet, soft_wrap=True, plain_every=5.0)
        self.tasks: dict[str, Any] = {}

    def __call__(self, event: dict[str, Any]) -> None:
        if self.quiet:
            return
        kind, phase = event.get("kind"), event.get("phase")
        if kind in ("note", "warning"):
            self.say(f"{kind}: {event['message']}")
        elif phase in PHASE_LABELS and kind == "start":
            self._start(phase, event)
        elif phase in PHASE_LABELS and kind == "progress":
            self._advance(phase, event)
        elif phase in PHASE_LABELS and kind == "end":
            self._end(phase, event)
        elif kind in ("cancelled", "error", "report"):
            self.close()

    def _start(self, phase: str, event: dict[str, Any]) -> None:
        progress = self.start_progress("{task.description:<10}", "{task.fields[unit]}")
        if progress is not None:
            self.tasks[phase] = progress.add_task(PHASE_LABELS[phase], total=event["steps"], unit=event["unit"])

    def _advance(self, phase: str, event: dict[str, Any]) -> None:
        if self.progress is not None and phase in self.tasks:
            self.progress.update(self.tasks[phase], completed=event["step"])
        elif self.progress is None and self.plain.ready():
            eta = f", about {event['eta_s']:.0f} s left" if event.get("eta_s") is not None else ""
            self.say(f"{phase}: {event['step']}/{event['steps']} {event['unit']}{eta}")

    def _end(self, phase: str, event: dict[str, Any]) -> None:
        if self.progress is not None and phase in self.tasks:
            task = self.tasks[phase]
            self.progress.update(task, completed=self.progress.tasks[task].total)
        else:
            self.say(f"{phase}: done in {event['elapsed_s']:.1f} s")


# What COLMAP takes as a C int; beyond these the flags make no sense anyway.
FLAG_RANGES = {"width": (0, 1 << 20), "max_features": (1, 1 << 24), "threads": (-1, 1 << 12),
               "seed": (0, (1 << 31) - 1)}


def check_flags(args: argparse.Namespace) -> None:
    """Refuse integer flags outside what COLMAP accepts, naming the flag (the rest is checked by
    :func:`nex_core.sfm.options.check_options`)."""
    from ..io.errors import ConfigError

    for name, (low, high) in FLAG_RANGES.items():
        value = getattr(args, name)
        if not low <= value <= high:
            raise ConfigError(f"--{name.replace('_', '-')} {value}: choose between {low} and {high}")
    if args.threads == 0:
        raise ConfigError("--threads 0: give a number of CPU threads, or -1 for all of them")


def _may_prepare_into(folder: Path, photos: Path) -> bool:
    """Whether an existing --out may receive a scene: it holds one (prepare's own check asks for --force)
    or nothing but an earlier prepare's log and work folder and the photos themselves. Anything else (a
    run, a bake) would have its events.jsonl replaced, so it is refused."""
    from ..io.run_files import EVENTS_FILE
    from ..sfm.scene_output import WORK_DIR, existing_outputs

    if existing_outputs(folder):
        return True
    folder, photos = folder.resolve(), photos.resolve()
    allowed = {EVENTS_FILE, WORK_DIR}
    if folder in photos.parents:
        allowed.add(photos.relative_to(folder).parts[0])
    return all(entry.name in allowed for entry in folder.iterdir())


def _options(args: argparse.Namespace):
    from ..sfm.pipeline import PrepareOptions

    return PrepareOptions(width=args.width or None, matcher=args.matcher, focal_px=args.focal_px,
                          fov_deg=args.fov_deg, refine_focal=args.refine_focal, force=args.force,
                          max_features=args.max_features, num_threads=args.threads, seed=args.seed, lens=args.lens)


def _quiet_colmap(verbose: bool) -> None:
    """Keep COLMAP's own log lines off the terminal unless asked for."""
    try:
        import pycolmap
    except ImportError:
        return
    pycolmap.logging.minloglevel = 0 if verbose else 2  # 2: errors only


def cmd_prepare(args: argparse.Namespace) -> int:
    from ..io.errors import CancelledError
    from ..io.output_paths import check_output_dir, os_errors_as_output_errors
    from ..sfm.pipeline import default_scene_dir, prepare_scene

    check_flags(args)
    photos = Path(args.photos)
    out = Path(args.out) if args.out else default_scene_dir(photos.resolve())
    check_output_dir(out, "scene folder", replaceable=lambda folder: _may_prepare_into(folder, photos))
    _quiet_colmap(args.verbose)
    printer = PreparePrinter(quiet=args.quiet)
    try:
        with StopFlag() as stop, os_errors_as_output_errors(out, "scene folder", only_inside=True):
            report = prepare_scene(photos, out, _options(args), listeners=[printer], should_stop=stop)
    except CancelledError as exc:
        printer.say(f"stopped: {exc}")
        return 130
    finally:
        printer.close()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        printer.say(report.summary(messages=args.quiet))  # notes and warnings were shown as they came
    printer.say(f"scene written to {out}; train it with `nex train {out}`")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "prepare", help="camera poses for a folder of photos (structure from motion with COLMAP)",
        description="Find the camera poses of a folder of photos with COLMAP (pycolmap, in-process): "
        "features, matching, incremental mapping, undistortion. Writes a scene folder with images/ "
        "(undistorted), sparse/0/ (PINHOLE model), poses_bounds.npy, hwf_cxcy.npy and prepare_report.json "
        "that `nex train` reads. Progress goes to the terminal and to SCENE/events.jsonl; Ctrl-C stops.")
    p.add_argument("photos", help="folder of photos (JPEG/PNG, 12 or more, one camera)")
    p.add_argument("--out", help="scene folder to write (default: <photos>_scene beside the photo folder)")
    p.add_argument("--width", type=int, default=1600,
                   help="shrink photos to at most this width before SfM; 0 keeps them as they are (default: 1600)")
    p.add_argument("--matcher", choices=["auto", "exhaustive", "sequential"], default="auto",
                   help="which photo pairs to match: every pair, or neighbours in file-name (shooting) "
                   "order; auto: exhaustive up to 60 photos (default: auto)")
    focal = p.add_mutually_exclusive_group()
    focal.add_argument("--focal-px", type=float, help="known focal length in pixels of the photos as stored "
                       "(held fixed; default: from EXIF, else estimated)")
    focal.add_argument("--fov-deg", type=float, help="known horizontal field of view in degrees (held fixed)")
    p.add_argument("--lens", choices=["auto", "radial", "none"], default="auto",
                   help="lens distortion: radial estimates k1, k2 and undistorts (cropping a little); none "
                   "treats the photos as distortion-free (no crop); auto keeps radial only when it fits the "
                   "photos clearly better than none (default: auto)")
    p.add_argument("--refine-focal", action="store_true",
                   help="let bundle adjustment refine a focal length from EXIF or the flags")
    p.add_argument("--force", action="store_true",
                   help="replace an existing scene in --out (kept until the new one is complete)")
    p.add_argument("--max-features", type=int, default=8192, help="SIFT features per photo (default: 8192)")
    p.add_argument("--threads", type=int, default=-1, help="CPU threads for COLMAP (default: all)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--verbose", action="store_true", help="show COLMAP's own log")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_prepare)
