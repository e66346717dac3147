"""Is a structure-from-motion result good enough to train on? And the per-photo depth bounds. Torch-free.

:func:`check_overlap` fails early (after matching) when too few photos overlap any other.
:func:`assess_model` refuses a reconstruction that is implausible, each reason with advice:

* fewer than ``min_images`` photos placed, or fewer than half of them;
* fewer than :data:`MIN_POINTS3D` 3D points;
* mean reprojection error above :data:`MAX_MEAN_REPROJ_PX` pixels;
* an estimated focal length whose horizontal field of view is outside :data:`FOV_RANGE_DEG`, or a
  refined prior focal length that moved by more than :data:`PRIOR_FOCAL_RATIO`;
* radial distortion ``|k1|`` above :data:`MAX_RADIAL_K1` (a sign of a degenerate self-calibration), when
  the radial model is the one kept (:mod:`nex_core.sfm.lens`; the pinhole one has k1 = k2 = 0);
* camera spread below :data:`MIN_BASELINE_RATIO` of the median scene depth (the camera turned but
  hardly moved: no parallax, no depth).

:func:`point_depth_bounds` gives each photo's near/far planes: the 0.1 / 99.9 percentiles of the depths
(camera z) of the 3D points it sees, as LLFF's imgs2poses computes them, but counting only points seen by
at least :data:`MIN_TRACK_FOR_BOUNDS` photos when a photo has :data:`MIN_POINTS_FOR_BOUNDS` of those:
two-view points carry most of the outliers, which otherwise move near/far far off. A far bound at the
triangulation limit is moved out afterwards (:mod:`nex_core.sfm.far_bound`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..io.errors import ReconstructionError
from .colmap_run import CameraPrior
from .far_bound import camera_spread
from .lens import LensChoice, radial_coefficients
from .photos import brief_list

MIN_POINTS3D = 100
MAX_MEAN_REPROJ_PX = 2.0
FOV_RANGE_DEG = (15.0, 130.0)
PRIOR_FOCAL_RATIO = 1.5
MAX_RADIAL_K1 = 0.5
MIN_BASELINE_RATIO = 0.01
NEAR_PERCENTILE, FAR_PERCENTILE = 0.1, 99.9
MIN_TRACK_FOR_BOUNDS = 3
MIN_POINTS_FOR_BOUNDS = 100
FOCAL_ADVICE = ("If you know the lens, pass --fov-deg (the horizontal field of view; a phone's main camera "
                "has about 65-70 degrees) or --focal-px.")


def check_overlap(partners: dict[str, int], min_images: int, matcher: str) -> list[str]:
    """Fail when fewer than ``min_images`` photos overlap another; returns the isolated photos."""
    isolated = sorted(name for name, n in partners.items() if n == 0)
    connected = len(partners) - len(isolated)
    if connected >= min_images:
        return isolated
    order_hint = ("; --matcher exhaustive if the file names are not in shooting order"
                  if matcher == "sequential" else "")
    raise ReconstructionError(
        f"the photos do not overlap enough: {len(isolated)} of {len(partners)} share no matching features "
        f"with any other photo ({brief_list(isolated)}), which leaves {connected} (NeX needs {min_images}). "
        "Try: photos of one scene from nearby viewpoints with 60-80 % overlap between neighbours; a "
        f"textured, static subject; no motion blur; more photos{order_hint}.")


@dataclass
class ModelStats:
    """Numbers describing a reconstruction, for the checks and the report."""

    registered: list[str]
    unregistered: list[str]
    points3d: int
    mean_reproj_px: float
    mean_track_length: float
    focal_px: float
    radial_k1: float
    width: int
    baseline_ratio: float  # camera spread (twice the largest distance from the mean centre) / median depth
    radial_k2: float = 0.0

    @property
    def fov_x_deg(self) -> float:
        return math.degrees(2.0 * math.atan(self.width / (2.0 * self.focal_px)))


def _observations(rec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image ids [M], xyz [M, 3], track lengths [M]) over all observations of all 3D points."""
    image_ids, xyz, lengths = [], [], []
    for point in rec.points3D.values():
        length = int(point.track.length())
        for element in point.track.elements:
            image_ids.append(int(element.image_id))
            xyz.append(point.xyz)
            lengths.append(length)
    return (np.asarray(image_ids, dtype=np.int64), np.asarray(xyz, dtype=np.float64).reshape(-1, 3),
            np.asarray(lengths, dtype=np.int64))


def _depths(rec, image_ids: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """Camera-frame z of each observation in its own image."""
    z_rows = {int(i): np.asarray(rec.image(i).cam_from_world().matrix(), dtype=np.float64)[2]
              for i in rec.reg_image_ids()}
    rows = np.stack([z_rows[int(i)] for i in image_ids]) if len(image_ids) else np.zeros((0, 4))
    return np.einsum("ij,ij->i", rows[:, :3], xyz) + rows[:, 3]


def model_stats(rec, names: list[str]) -> ModelStats:
    """The numbers :func:`assess_model` judges, for a one-camera reconstruction: RADIAL, SIMPLE_RADIAL or
    (when the pinhole model was kept) PINHOLE, whose k1 = k2 = 0."""
    images = [rec.image(i) for i in rec.reg_image_ids()]
    registered = sorted(im.name for im in images)
    centers = np.array([im.projection_center() for im in images], dtype=np.float64)
    spread = camera_spread(centers)
    image_ids, xyz, _ = _observations(rec)
    depths = _depths(rec, image_ids, xyz)
    median_depth = float(np.median(depths)) if depths.size else math.nan
    camera = next(iter(rec.cameras.values()))
    params = np.asarray(camera.params, dtype=np.float64)
    k1, k2 = radial_coefficients(camera)
    return ModelStats(registered=registered, unregistered=sorted(set(names) - set(registered)),
                      points3d=int(rec.num_points3D()), mean_reproj_px=float(rec.compute_mean_reprojection_error()),
                      mean_track_length=float(rec.compute_mean_track_length()), focal_px=float(params[0]),
                      radial_k1=k1, radial_k2=k2, width=int(camera.width),
                      baseline_ratio=spread / median_depth if median_depth > 0 else 0.0)


def _placement_problem(stats: ModelStats, n_photos: int, min_images: int) -> str | None:
    n_reg = len(stats.registered)
    if n_reg >= min_images and n_reg >= 0.5 * n_photos:
        return None
    return (f"only {n_reg} of {n_photos} photos could be placed (not placed: {brief_list(stats.unregistered)}); "
            "COLMAP found no consistent geometry linking the rest. Take more photos in between so that "
            "neighbours overlap by 60-80 %, keep the scene still, or remove the unrelated photos.")


def _focal_problems(stats: ModelStats, prior: CameraPrior) -> list[str]:
    problems = []
    lo, hi = FOV_RANGE_DEG
    if not prior.fixed and not lo <= stats.fov_x_deg <= hi:
        problems.append(f"the estimated focal length {stats.focal_px:.1f} px means a horizontal field of view of "
                        f"{stats.fov_x_deg:.1f} degrees, outside the plausible {lo:g}-{hi:g}: the solve is "
                        f"degenerate (typically too little camera motion). {FOCAL_ADVICE}")
    if not prior.fixed and prior.focal_px is not None:
        ratio = stats.focal_px / prior.focal_px
        if not 1.0 / PRIOR_FOCAL_RATIO <= ratio <= PRIOR_FOCAL_RATIO:
            problems.append(f"the focal length went from {prior.focal_px:.1f} px ({prior.source}) to "
                            f"{stats.focal_px:.1f} px during refinement: the solve is unreliable. Rerun without "
                            "--refine-focal.")
    if abs(stats.radial_k1) > MAX_RADIAL_K1:
        problems.append(f"the estimated lens distortion k1 = {stats.radial_k1:.3f} is implausibly strong: the "
                        f"solve is degenerate. {FOCAL_ADVICE}")
    return problems


def _lens_hint(lens: LensChoice | None) -> str:
    """Advice for a large reprojection error when the user ruled lens distortion out."""
    if lens is None or lens.model != "none" or lens.chosen_by != "--lens":
        return ""
    return (f" Lens distortion was ruled out by --lens none (with k1, k2 the error would be "
            f"{lens.radial_error_px:.2f} px); if the lens distorts, rerun with --lens auto.")


def _geometry_problems(stats: ModelStats, prior: CameraPrior, lens: LensChoice | None = None) -> list[str]:
    problems = []
    if stats.points3d < MIN_POINTS3D:
        problems.append(f"only {stats.points3d} 3D points were reconstructed: the photos have too little "
                        "texture or overlap. Shoot a more textured scene, with more photos closer together.")
    if stats.mean_reproj_px > MAX_MEAN_REPROJ_PX:
        fixed = (f" The focal length was held fixed at {prior.focal_px:.1f} px ({prior.source}); if that is "
                 "wrong, rerun with --refine-focal or the right --fov-deg." if prior.fixed else "")
        problems.append(f"the mean reprojection error is {stats.mean_reproj_px:.2f} px (a good model has < 1 px): "
                        f"the camera poses do not fit the photos.{fixed}{_lens_hint(lens)}")
    if stats.baseline_ratio < MIN_BASELINE_RATIO:
        problems.append(f"the cameras barely moved (spread {stats.baseline_ratio:.4f} x the scene depth): depth "
                        "cannot be recovered from turning the camera alone. Move it sideways between shots (a "
                        "step or two for a room-sized scene).")
    return problems


def assess_model(stats: ModelStats, prior: CameraPrior, n_photos: int, min_images: int,
                 lens: LensChoice | None = None) -> list[str]:
    """Raise ReconstructionError listing every problem with advice; returns warnings for a usable model.
    ``stats`` describe the reconstruction kept, ``lens`` how its lens model was chosen."""
    problems = [p for p in [_placement_problem(stats, n_photos, min_images)] if p]
    problems += _geometry_problems(stats, prior, lens) + _focal_problems(stats, prior)
    if problems:
        raise ReconstructionError("structure from motion produced an unreliable model:\n- " + "\n- ".join(problems))
    if stats.unregistered:
        return [f"{len(stats.unregistered)} photo(s) could not be placed and are left out: "
                f"{brief_list(stats.unregistered)}"]
    return []


def point_depth_bounds(rec) -> dict[str, tuple[float, float]]:
    """Per photo name: (near, far) from the depths of the 3D points it sees (see the module docstring)."""
    image_ids, xyz, lengths = _observations(rec)
    depths = _depths(rec, image_ids, xyz)
    bounds = {}
    for image_id in rec.reg_image_ids():
        mine = image_ids == int(image_id)
        robust = depths[mine & (lengths >= MIN_TRACK_FOR_BOUNDS)]
        chosen = robust if robust.size >= MIN_POINTS_FOR_BOUNDS else depths[mine]
        chosen = chosen[np.isfinite(chosen) & (chosen > 0)]
        near, far = (np.percentile(chosen, [NEAR_PERCENTILE, FAR_PERCENTILE]) if chosen.size
                     else (math.nan, math.nan))
        bounds[rec.image(image_id).name] = (float(near), float(far))
    return bounds
