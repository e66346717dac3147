"""What one ``nex prepare`` run is told (:class:`PrepareOptions`, checked by :func:`check_options`) and what
it reports (:class:`PrepareReport`, written as ``prepare_report.json``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..io.errors import ConfigError
from .colmap_run import StepSettings
from .lens import LENS_MODES
from .photos import MIN_PHOTOS, brief_list

MATCHERS = ("auto", "exhaustive", "sequential")


@dataclass
class PrepareOptions:
    """Settings of one ``nex prepare`` run."""

    width: int | None = 1600  # shrink photos to at most this width (None: keep their size)
    matcher: str = "auto"  # auto, exhaustive or sequential
    focal_px: float | None = None  # focal length in pixels of the photos as stored (before width)
    fov_deg: float | None = None  # horizontal field of view in degrees (alternative to focal_px)
    refine_focal: bool = False  # let bundle adjustment refine a known (flag / EXIF) focal length
    force: bool = False  # replace an existing scene
    max_features: int = 8192  # SIFT features per photo
    num_threads: int = -1  # -1: all cores
    seed: int = 0  # RANSAC / mapper random seed
    min_images: int = MIN_PHOTOS  # fewest photos accepted (and fewest that must be placed)
    lens: str = "auto"  # auto (radial k1, k2 only if they lower the error enough), radial or none

    def step_settings(self) -> StepSettings:
        return StepSettings(max_features=self.max_features, num_threads=self.num_threads, seed=self.seed)


@dataclass
class PrepareReport:
    """What ``nex prepare`` did; written as ``prepare_report.json``."""

    photos_dir: str
    scene_dir: str
    images_total: int
    images_registered: int
    unregistered: list[str]
    ignored_files: list[str]
    mean_reprojection_error_px: float
    points3d: int
    mean_track_length: float
    input_size: list[int]  # [W, H] of the photos given to COLMAP
    output_size: list[int]  # [W, H] of the undistorted images
    focal_px: float  # of the undistorted images
    fov_x_deg: float
    focal_source: str  # "--focal-px", "--fov-deg", "exif", "estimated"
    focal_fixed: bool
    radial_k1: float  # the lens distortion removed (OpenCV k1, k2 on normalised coordinates; 0 for lens_model none)
    matcher: str
    pairs_matched: int
    pairs_verified: int
    baseline_ratio: float  # camera spread / median point depth
    dmin: float  # the MPI plane range `nex train` will use by default
    dmax: float
    ref_image: str
    near_range: list[float]  # [smallest, largest] near bound over the photos
    far_range: list[float]
    timings_s: dict[str, float]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    pycolmap_version: str = ""
    radial_k2: float = 0.0
    lens_model: str = "radial"  # "radial" (k1, k2 estimated and undistorted) or "none" (k1 = k2 = 0, no crop)
    lens_chosen_by: str = "auto"  # "auto": by the two errors below (nex_core.sfm.lens); "--lens": as asked
    radial_error_px: float | None = None  # mean reprojection error with k1, k2 refined
    no_distortion_error_px: float | None = None  # ... and with k1 = k2 = 0 held fixed
    far_bound: str = ""  # how the reference photo's far bound was set (nex_core.sfm.far_bound)
    far_extended: int = 0  # photos whose far bound moved out from their farthest 3D points
    near_bound: str = ""  # how the reference photo's near bound was set (nex_core.sfm.near_bound)
    points_near: float = 0.0  # the reference photo's near bound from the 3D points alone
    near_moved: int = 0  # photos whose near bound moved in to the content the plane sweep found

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self, messages: bool = True) -> str:
        """A few human-readable lines (with the notes and warnings unless ``messages`` is False)."""
        lines = [f"registered {self.images_registered}/{self.images_total} photos"
                 + (f"; not placed: {brief_list(self.unregistered)}" if self.unregistered else ""),
                 f"{self.points3d} 3D points, mean reprojection error {self.mean_reprojection_error_px:.3f} px, "
                 f"mean track length {self.mean_track_length:.1f}",
                 f"camera: {self.output_size[0]}x{self.output_size[1]} pinhole, focal {self.focal_px:.1f} px "
                 f"(horizontal FOV {self.fov_x_deg:.1f} deg; {self.focal_source}"
                 f"{', held fixed' if self.focal_fixed else ', refined'})",
                 self.lens_line(),
                 f"planes: dmin {self.dmin:.4g}, dmax {self.dmax:.4g} (reference view {self.ref_image})"
                 + "".join(f"; {line}" for line in (self.near_bound, self.far_bound) if line)
                 + (f"; near bound moved in on {self.near_moved} of {self.images_registered} photos"
                    if self.near_moved else ""),
                 "time: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.timings_s.items())]
        if messages:
            lines += [f"note: {n}" for n in self.notes] + [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def lens_line(self) -> str:
        """The lens model kept, and the errors it was chosen by."""
        kept = (f"radial distortion k1 {self.radial_k1:.4f}, k2 {self.radial_k2:.4f}, removed"
                if self.lens_model == "radial" else "no distortion (k1 = k2 = 0)")
        how = ", as asked by --lens" if self.lens_chosen_by == "--lens" else ""
        if self.radial_error_px is None or self.no_distortion_error_px is None:
            return f"lens: {kept}{how}"
        return (f"lens: {kept}{how}; mean reprojection error {self.radial_error_px:.3f} px with k1, k2, "
                f"{self.no_distortion_error_px:.3f} px without")


def default_scene_dir(photos_dir: Path) -> Path:
    """``<photos>_scene`` beside the photo folder."""
    return photos_dir.with_name(photos_dir.name + "_scene")


def check_options(options: PrepareOptions) -> None:
    if options.lens not in LENS_MODES:
        raise ConfigError(f"--lens must be one of {', '.join(LENS_MODES)} (auto: decide from the photos; radial: "
                          f"estimate and remove k1, k2; none: a distortion-free lens), got {options.lens!r}")
    if options.matcher not in MATCHERS:
        raise ConfigError(f"matcher must be one of {', '.join(MATCHERS)}, got {options.matcher!r}")
    if options.focal_px is not None and options.fov_deg is not None:
        raise ConfigError("give either --focal-px or --fov-deg, not both")
    if options.focal_px is not None and not (math.isfinite(options.focal_px) and options.focal_px > 0):
        raise ConfigError(f"--focal-px must be a positive number of pixels, got {options.focal_px}")
    if options.fov_deg is not None and not 1.0 <= options.fov_deg <= 179.0:
        raise ConfigError(f"--fov-deg must be a horizontal field of view between 1 and 179 degrees, "
                          f"got {options.fov_deg}")
    if options.width is not None and options.width < 16:
        raise ConfigError(f"--width must be at least 16 pixels (800 or more works best), got {options.width}")
    if options.max_features < 100:
        raise ConfigError(f"--max-features must be at least 100, got {options.max_features}")
    if options.min_images < 2:
        raise ConfigError(f"min_images must be >= 2, got {options.min_images}")
