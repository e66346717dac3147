"""``nex prepare``: a folder of photos -> a scene NeX trains on, with COLMAP run in-process by pycolmap.

Torch-free; pycolmap (>= 4.0) is imported when a run starts. Phases (each an ``events.jsonl`` phase, see
:mod:`nex_core.io.events`):

1. ``photos`` -- list the photos, check they fit one camera, copy them upright (and at most ``width``
   pixels wide) into a working folder (:mod:`nex_core.sfm.photos`).
2. ``features`` -- SIFT, in batches of photos. One shared RADIAL camera (f, cx, cy, k1, k2); the focal
   length comes from ``--focal-px`` / ``--fov-deg``, else EXIF, else COLMAP's guess (1.2 x the larger
   side) refined by bundle adjustment. A known focal length is held fixed in bundle adjustment unless
   ``refine_focal`` (:func:`nex_core.sfm.colmap_run.mapper_options`).
3. ``matching`` -- exhaustive (every pair) up to 60 photos, sequential above (or as asked): COLMAP's
   sequential pairing with its defaults (quadratic overlap 10: each photo with the next one and then
   with ones about 2, 4, 8, ... places further in file-name order, so shooting order matters; about 6
   pairs a photo at 100 photos); in batches of pairs. Vocabulary-tree
   matching is not offered (it needs a downloaded vocabulary). Fails early when too few photos overlap.
4. ``mapping`` -- incremental mapping (progress per placed photo). If COLMAP splits the photos into
   several models the largest is kept; the others' photos are reported as not placed. The model is
   then bundle-adjusted twice, with k1, k2 refined and with k1 = k2 = 0, and the lens model kept by
   ``--lens`` (auto: radial only when it lowers the reprojection error clearly, :mod:`nex_core.sfm.lens`;
   a ``mapping`` note gives both errors), and the model kept is adjusted once more with a robust (Cauchy)
   loss. With ``--lens none`` mapping holds k1 = k2 = 0 throughout. The model kept is checked
   (:mod:`nex_core.sfm.checks`); an implausible one is refused with advice.
5. ``undistortion`` -- ``undistort_images``: PINHOLE camera; with the radial model undistorted (and
   slightly cropped) images, without it the photos at their full size.
6. ``writing`` -- the scene: ``images/``, ``sparse/0/`` (binary COLMAP model), ``poses_bounds.npy`` (LLFF
   rows in sorted file-name order: ``opencv_to_llff`` pose, ``[H, W, fx]``, near, far),
   ``hwf_cxcy.npy`` (``[h, w, fx, fy, cx, cy]``, so the exact principal point survives) and
   ``prepare_report.json``. Near/far: :func:`nex_core.sfm.checks.point_depth_bounds`, the far bound moved
   out where it reaches the triangulation limit (:mod:`nex_core.sfm.far_bound`). The scene is then
   loaded with :func:`nex_core.io.scene.load_scene` as ``nex train`` will, the reference photo's near bound
   checked against a plane sweep of the photos (:mod:`nex_core.sfm.near_bound`), and its plane range
   reported.

Output safety: everything is built in ``SCENE_DIR/.nex-prepare/`` and moved into place only at the end. An
existing scene is replaced only with ``force``; if the run fails or is cancelled, the old scene is left as
it was. ``SCENE_DIR/events.jsonl`` is the progress log of the latest run (started afresh by each run).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ..io.errors import CancelledError, ReconstructionError
from ..io.events import EventLog, Listener
from ..io.run_files import EVENTS_FILE
from .checks import ModelStats, assess_model, check_overlap, model_stats
from .colmap_run import (CameraPrior, Phase, Runner, choose_matcher, extract_features, import_pycolmap,
                         match_features, run_mapping, undistort)
from .lens import LensChoice, choose_lens
from .near_bound import near_bound
from .options import PrepareOptions, PrepareReport, check_options, default_scene_dir
from .photos import PhotoSet, brief_list, copy_upright, inspect_photos, output_size
from .scene_output import (REPORT_FILE, WORK_DIR, assemble_scene, check_existing, check_paths,
                           existing_outputs, set_near, swap_in, write_llff)

VALIDATION_WIDTH = 128


# --------------------------------------------------------------------------------------------------
# Photos and the camera


def intake(photos_dir: Path, input_dir: Path, options: PrepareOptions, log: EventLog,
           runner: Runner) -> tuple[PhotoSet, tuple[int, int], list[str]]:
    """Check the photos and copy them upright at the working size; returns them, that size, their names."""
    known_focal = options.focal_px is not None or options.fov_deg is not None
    photos = inspect_photos(photos_dir, options.min_images, ignore_exif_focal=known_focal)
    if photos.ignored:
        log.emit("photos", "note", message=f"ignored {len(photos.ignored)} file(s) that are not PNG/JPEG "
                 f"photos: {brief_list(photos.ignored)}")
    for note in photos.notes:
        log.emit("photos", "note", message=note)
    size = output_size(photos.width, photos.height, options.width)
    input_dir.mkdir(parents=True)
    phase = Phase(log, "photos", len(photos.photos), "photos")
    names = []
    for k, info in enumerate(photos.photos):
        runner.check("photo intake")
        copy_upright(info, input_dir / info.path.name, size)
        names.append(info.path.name)
        phase.update(k + 1)
    phase.end(photos=len(names), width=size[0], height=size[1])
    return photos, size, names


def camera_prior(photos: PhotoSet, size: tuple[int, int], options: PrepareOptions) -> CameraPrior:
    """The starting camera: focal from a flag, else EXIF, else unknown; a known one is fixed unless refined."""
    width, height = size
    scale = width / photos.width
    if options.focal_px is not None:
        focal, source = options.focal_px * scale, "--focal-px"
    elif options.fov_deg is not None:
        focal, source = 0.5 * width / math.tan(math.radians(options.fov_deg) / 2.0), "--fov-deg"
    elif photos.exif_focal_px is not None:
        focal, source = photos.exif_focal_px * scale, "exif"
    else:
        return CameraPrior(width, height, None, "estimated", fixed=False)
    return CameraPrior(width, height, focal, source, fixed=not options.refine_focal)


# --------------------------------------------------------------------------------------------------
# The run


@dataclass
class _Run:
    """One run's folders, settings and progress channel."""

    photos_dir: Path
    scene_dir: Path
    work: Path
    options: PrepareOptions
    log: EventLog
    runner: Runner
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def input_dir(self) -> Path:
        return self.work / "input"

    @property
    def db(self) -> Path:
        return self.work / "database.db"

    def timed(self, name: str, start: float) -> None:
        self.timings[name] = round(time.perf_counter() - start, 2)


def prepare_scene(photos_dir: Path | str, scene_dir: Path | str | None = None,
                  options: PrepareOptions | None = None, listeners: Iterable[Listener] = (),
                  should_stop: Callable[[], bool] | None = None) -> PrepareReport:
    """Run structure from motion on the photos in ``photos_dir`` and write a trainable scene.

    ``scene_dir`` defaults to ``<photos_dir>_scene``. Progress goes to ``scene_dir/events.jsonl`` and to
    ``listeners``; ``should_stop`` is polled (about 10 times a second) to cancel. Raises NexError
    subclasses with advice (CancelledError when stopped); an existing scene is kept on any failure.
    """
    options = options or PrepareOptions()
    check_options(options)
    photos_dir = Path(photos_dir).resolve()
    scene_dir = default_scene_dir(photos_dir) if scene_dir is None else Path(scene_dir).resolve()
    check_paths(photos_dir, scene_dir)
    check_existing(scene_dir, options.force)
    scene_dir.mkdir(parents=True, exist_ok=True)
    (scene_dir / EVENTS_FILE).unlink(missing_ok=True)
    run = _Run(photos_dir, scene_dir, scene_dir / WORK_DIR, options, EventLog(scene_dir, listeners),
               Runner(should_stop))
    shutil.rmtree(run.work, ignore_errors=True)
    run.work.mkdir()
    run.log.emit("setup", "start", photos_dir=str(photos_dir), scene_dir=str(scene_dir), options=asdict(options))
    try:
        report = _prepare(run)
    except CancelledError as exc:
        run.log.emit("cancelled", "cancelled", message=str(exc))
        raise
    except Exception as exc:
        run.log.emit("failed", "error", message=str(exc) or type(exc).__name__, error_type=type(exc).__name__)
        raise
    finally:
        shutil.rmtree(run.work, ignore_errors=True)
    run.log.emit("done", "report", summary=report.summary(messages=False), **report.to_dict())
    return report


def _prepare(run: _Run) -> PrepareReport:
    import_pycolmap().set_random_seed(run.options.seed)
    t = time.perf_counter()
    photos, size, names = intake(run.photos_dir, run.input_dir, run.options, run.log, run.runner)
    prior = camera_prior(photos, size, run.options)
    if prior.focal_px is not None:
        run.log.emit("photos", "note", message=f"focal length {prior.focal_px:.1f} px from {prior.source}"
                     + (" (held fixed)" if prior.fixed else " (refined)"))
    run.timed("photos", t)
    rec, stats, matching, lens = _reconstruct(run, names, prior)
    warnings = assess_model(stats, prior, len(names), run.options.min_images, lens=lens)
    model_dir = run.work / "model"
    model_dir.mkdir()
    rec.write(str(model_dir))
    run.runner.check("mapping")

    t = time.perf_counter()
    undistort(model_dir, run.input_dir, run.work / "undistorted", len(stats.registered),
              run.options.step_settings(), run.log, run.runner)
    run.timed("undistortion", t)
    return _write(run, photos, size, prior, stats, matching, lens, warnings)


def _reconstruct(run: _Run, names: list[str],
                 prior: CameraPrior) -> tuple[Any, ModelStats, dict[str, Any], LensChoice]:
    """Features, matching, mapping, the lens model; returns (the reconstruction kept, its stats, the
    matching numbers, the lens choice)."""
    settings = run.options.step_settings()
    t = time.perf_counter()
    extract_features(run.db, run.input_dir, names, prior, settings, run.log, run.runner)
    run.timed("features", t)

    t = time.perf_counter()
    matcher = choose_matcher(run.options.matcher, len(names))
    n_pairs, partners = match_features(run.db, run.work, matcher, settings, run.log, run.runner)
    isolated = check_overlap(partners, run.options.min_images, matcher)
    matching = {"matcher": matcher, "pairs_matched": n_pairs, "pairs_verified": sum(partners.values()) // 2}
    run.timed("matching", t)

    t = time.perf_counter()
    rec = run_mapping(run.db, run.input_dir, run.work, prior, len(names) - len(isolated), run.options.min_images,
                      settings, run.log, run.runner, refine_distortion=run.options.lens != "none")
    if rec is None:
        raise ReconstructionError(
            f"COLMAP could not build any model from the {len(names)} photos ({matching['pairs_verified']} "
            f"overlapping pairs{'; no overlap at all for ' + brief_list(isolated) if isolated else ''}). Try: "
            "more photos from nearby viewpoints (60-80 % overlap), a textured and static scene, moving the "
            "camera sideways rather than only turning it, and --fov-deg if you know the lens.")
    run.timed("mapping", t)

    t = time.perf_counter()
    rec, lens = choose_lens(rec, prior, run.options.lens, settings, run.runner)
    run.log.emit("mapping", "note", message=lens.describe(), lens_model=lens.model, lens_chosen_by=lens.chosen_by,
                 radial_error_px=round(lens.radial_error_px, 4), no_distortion_error_px=round(lens.none_error_px, 4))
    run.timed("lens", t)
    return rec, model_stats(rec, names), matching, lens


def _write(run: _Run, photos: PhotoSet, size: tuple[int, int], prior: CameraPrior, stats: ModelStats,
           matching: dict[str, Any], lens: LensChoice, warnings: list[str]) -> PrepareReport:
    """Stage the scene, check it loads, write the report, swap it into the scene folder."""
    from ..io.scene import load_scene

    t = time.perf_counter()
    phase = Phase(run.log, "writing", 1, "scene")
    staged = run.work / "scene"
    assemble_scene(run.work / "undistorted", staged)
    near, bounds_far, cameras = write_llff(staged)
    far = bounds_far.far
    width = min(VALIDATION_WIDTH, cameras[0].width)
    scene = load_scene(staged, width=width, min_images=run.options.min_images)
    nearest = near_bound(scene.images, scene.cameras, scene.ref_id, scene.planes.dmin, scene.planes.dmax)
    swept = np.array([nearest.near_for(cam, float(lo)) for cam, lo in zip(scene.cameras, near)])
    swept[scene.ref_id] = nearest.near
    moved = int((swept != near).sum())
    if moved:
        set_near(staged, swept)
        near = swept
        scene = load_scene(staged, width=width, min_images=run.options.min_images)
    replaced = existing_outputs(run.scene_dir)
    if "planes.txt" in replaced:
        warnings = warnings + ["the old planes.txt was removed: its depths referred to the old camera poses"]
    for warning in warnings:
        run.log.emit("writing", "warning", message=warning)
    run.timed("writing", t)
    cam = cameras[0]
    report = PrepareReport(
        photos_dir=str(run.photos_dir), scene_dir=str(run.scene_dir), images_total=len(photos.photos),
        images_registered=len(stats.registered), unregistered=stats.unregistered, ignored_files=photos.ignored,
        mean_reprojection_error_px=stats.mean_reproj_px, points3d=stats.points3d,
        mean_track_length=stats.mean_track_length, input_size=list(size), output_size=[cam.width, cam.height],
        focal_px=cam.fx, fov_x_deg=cam.fov_x_degrees(), focal_source=prior.source, focal_fixed=prior.fixed,
        radial_k1=stats.radial_k1, radial_k2=stats.radial_k2, baseline_ratio=stats.baseline_ratio, dmin=scene.planes.dmin,
        dmax=scene.planes.dmax, ref_image=Path(scene.names[scene.ref_id]).name,
        far_bound=bounds_far.describe(scene.ref_id), far_extended=int(bounds_far.extended.sum()),
        near_bound=nearest.describe(), points_near=nearest.points, near_moved=moved,
        near_range=[float(near.min()), float(near.max())], far_range=[float(far.min()), float(far.max())],
        timings_s=dict(run.timings), notes=photos.notes, warnings=warnings,
        pycolmap_version=str(getattr(import_pycolmap(), "__version__", "")), **matching, **lens.report_fields())
    (staged / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    swap_in(staged, run.scene_dir, run.work / "old")
    phase.update(1)
    phase.end(replaced=replaced)
    return report
