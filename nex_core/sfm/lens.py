"""Which lens model ``nex prepare`` keeps: RADIAL (k1, k2) or none (a pinhole), chosen by evidence. Torch-free.

Mapping fits COLMAP's RADIAL camera, and k1, k2 also soak up what no camera model explains (matches on
reflections and refractions that move with the viewpoint): a distortion-free 12 MP capture of a shiny
scene came out with k1 0.06, k2 -0.05, and undistorting by them cropped and bent every frame. So after
mapping, :func:`choose_lens` bundle-adjusts two copies of the reconstruction with the same options, one
refining k1, k2 and one holding them at 0, and keeps the radial model only when :func:`radial_pays_off`;
otherwise the pinhole copy, made a PINHOLE camera, is the one written (no crop, no warp). ``--lens
radial`` or ``--lens none`` skip the vote (both errors are still measured and reported).

Then the model kept is bundle-adjusted once more with a robust loss (Cauchy, scale ROBUST_LOSS_SCALE_PX):
matches on reflections and refractions are outliers that a squared loss lets pull the poses, and the
robust adjustment discounts them (the poses it gives, and why the scale: docs/scenes.md, "nex prepare on
phone-like captures"). The choice itself stays on the squared-loss adjustments, whose errors the rule's
thresholds were set from.

The rule (:func:`radial_pays_off`): keep k1, k2 when they lower COLMAP's mean reprojection error by at least
1 % of the pinhole's and by at least 0.005 px, set from the suite's captures with and without a lens
(docs/scenes.md, "Choosing the lens model"): bundle adjustment absorbs most of a real lens into the poses
and points, so a real lens lowers the mean error by a few percent, and no lens by bundle adjustment's own
convergence noise. The mean error, not the sum of squares: reflections leave a tail of large residuals
that k1, k2 partly fit, so an information criterion on the squared error would keep spurious distortion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .colmap_run import CameraPrior, Runner, StepSettings, import_pycolmap

LENS_MODES = ("auto", "radial", "none")
MIN_RADIAL_GAIN_REL = 0.01  # k1, k2 must lower the mean reprojection error by 1 % of the pinhole's ...
MIN_RADIAL_GAIN_PX = 0.005  # ... and by at least 0.005 px
ROBUST_LOSS = "CAUCHY"  # the final adjustment's loss (a pycolmap.LossFunctionType name) ...
ROBUST_LOSS_SCALE_PX = 0.5  # ... and its scale: residuals well above it count less (docs/scenes.md)
ROBUST_MAX_ITERATIONS = 30  # from the squared-loss fit it is there by then (docs/scenes.md)


@dataclass
class LensChoice:
    """The lens model kept and the evidence for it."""

    model: str  # "radial" or "none"
    chosen_by: str  # "auto" (the errors decided) or "--lens" (the user did)
    radial_error_px: float  # mean reprojection error with k1, k2 refined
    none_error_px: float  # ... with k1 = k2 = 0 held fixed
    k1: float  # the radial fit's coefficients (whichever model is kept; if it is kept, after the final adjustment)
    k2: float
    kept_error_px: float | None = None  # the kept model's mean reprojection error after the final adjustment

    @property
    def gain_px(self) -> float:
        return self.none_error_px - self.radial_error_px

    @property
    def gain_rel(self) -> float:
        return self.gain_px / self.none_error_px if self.none_error_px > 0 else 0.0

    def report_fields(self) -> dict[str, Any]:
        """The choice as :class:`nex_core.sfm.options.PrepareReport` fields."""
        return {"lens_model": self.model, "lens_chosen_by": self.chosen_by, "radial_error_px": self.radial_error_px,
                "no_distortion_error_px": self.none_error_px}

    def describe(self) -> str:
        """One line: the model kept, why, both mean reprojection errors, and the kept model's after the final
        robust adjustment."""
        fit = f"k1 {self.k1:.4f}, k2 {self.k2:.4f}"
        if self.model == "radial":
            kept, errors = f"radial distortion {fit}", f"{self.radial_error_px:.3f} px with it"
        else:
            kept, errors = "no distortion (k1 = k2 = 0)", f"{self.radial_error_px:.3f} px with the radial fit ({fit})"
        text = f"lens: {kept}, " + ("as asked by --lens" if self.chosen_by == "--lens" else
                                     "chosen by the mean reprojection errors")
        text += f": {errors}, {self.none_error_px:.3f} px without, a gain of {100 * self.gain_rel:.1f} %"
        if self.chosen_by == "auto":
            text += f" where {100 * MIN_RADIAL_GAIN_REL:g} % and {MIN_RADIAL_GAIN_PX:g} px are needed"
        if self.kept_error_px is not None:
            text += (f"; then adjusted with a robust loss ({ROBUST_LOSS.lower()}, {ROBUST_LOSS_SCALE_PX:g} px): "
                     f"{self.kept_error_px:.3f} px")
        return text


def radial_pays_off(radial_error_px: float, none_error_px: float) -> bool:
    """Whether refining k1, k2 lowered the mean reprojection error enough to be a real lens: by at least
    MIN_RADIAL_GAIN_REL of the pinhole's error and MIN_RADIAL_GAIN_PX pixels (the floor keeps a relative
    gain on a near-perfect fit, a few thousandths of a pixel, from counting)."""
    gain = none_error_px - radial_error_px
    return gain >= MIN_RADIAL_GAIN_PX and gain >= MIN_RADIAL_GAIN_REL * none_error_px


def mean_error(rec) -> float:
    """COLMAP's mean reprojection error (the mean over 3D points of each one's mean over its track), after
    recomputing every point's error for the current cameras: the figure the report gives."""
    rec.update_point_3d_errors()
    return float(rec.compute_mean_reprojection_error())


def _camera(rec):
    return next(iter(rec.cameras.values()))


def radial_coefficients(camera) -> tuple[float, float]:
    """(k1, k2) of a RADIAL camera, (k1, 0) of a SIMPLE_RADIAL one, (0, 0) of a pinhole."""
    extra = [float(camera.params[i]) for i in camera.extra_params_idxs()] + [0.0, 0.0]
    return extra[0], extra[1]


def as_pinhole(rec) -> None:
    """Make the distortion-free camera of ``rec`` a PINHOLE one (fx = fy = f), as the undistortion would:
    given a RADIAL camera with k1 = k2 = 0 it copies the photos but keeps the RADIAL model."""
    camera = _camera(rec)
    f, cx, cy = camera.focal_length, camera.principal_point_x, camera.principal_point_y
    camera.model = import_pycolmap().CameraModelId.PINHOLE
    camera.params = [f, f, cx, cy]


def adjustment_options(prior: CameraPrior, refine_distortion: bool, settings: StepSettings, robust: bool = False):
    """pycolmap ``BundleAdjustmentOptions`` with the mapper's intrinsics settings: the focal length refined
    unless the prior holds it, the principal point held, k1, k2 refined or not; a squared loss, or with
    ``robust`` a Cauchy loss of scale ROBUST_LOSS_SCALE_PX pixels and at most ROBUST_MAX_ITERATIONS steps."""
    pycolmap = import_pycolmap()
    options = pycolmap.BundleAdjustmentOptions()
    options.refine_focal_length = not prior.fixed
    options.refine_principal_point = False
    options.refine_extra_params = refine_distortion
    options.print_summary = False
    options.ceres.solver_options.num_threads = settings.num_threads
    if robust:
        options.ceres.loss_function_type = getattr(pycolmap.LossFunctionType, ROBUST_LOSS)
        options.ceres.loss_function_scale = ROBUST_LOSS_SCALE_PX
        options.ceres.solver_options.max_num_iterations = ROBUST_MAX_ITERATIONS
    return options


def adjusted_copy(rec, prior: CameraPrior, refine_distortion: bool, settings: StepSettings, runner: Runner):
    """A copy of ``rec`` bundle-adjusted (squared loss) with the mapper's intrinsics settings; k1, k2 refined
    or held at 0."""
    pycolmap = import_pycolmap()
    copy = pycolmap.Reconstruction(rec)
    if not refine_distortion:
        camera = _camera(copy)
        params = np.asarray(camera.params, dtype=np.float64).copy()
        params[list(camera.extra_params_idxs())] = 0.0
        camera.params = params
    runner.call("lens model choice", pycolmap.bundle_adjustment, reconstruction=copy,
                options=adjustment_options(prior, refine_distortion, settings))
    return copy


def robust_adjustment(rec, prior: CameraPrior, refine_distortion: bool, settings: StepSettings,
                      runner: Runner) -> None:
    """Bundle-adjust ``rec`` in place with the robust loss (k1, k2 refined or held as they are)."""
    runner.call("final bundle adjustment", import_pycolmap().bundle_adjustment, reconstruction=rec,
                options=adjustment_options(prior, refine_distortion, settings, robust=True))


def choose_lens(rec, prior: CameraPrior, mode: str, settings: StepSettings, runner: Runner):
    """Bundle-adjust ``rec`` with and without k1, k2 (squared loss), choose, then adjust the model kept once
    more with the robust loss; returns (the reconstruction to keep, the choice)."""
    radial = adjusted_copy(rec, prior, True, settings, runner)
    pinhole = adjusted_copy(rec, prior, False, settings, runner)
    radial_px, none_px = mean_error(radial), mean_error(pinhole)
    if mode == "auto":
        model = "radial" if radial_pays_off(radial_px, none_px) else "none"
    else:
        model = mode
    k1, k2 = radial_coefficients(_camera(radial))
    choice = LensChoice(model=model, chosen_by="auto" if mode == "auto" else "--lens", radial_error_px=radial_px,
                        none_error_px=none_px, k1=k1, k2=k2)
    kept = radial if model == "radial" else pinhole
    robust_adjustment(kept, prior, model == "radial", settings, runner)
    if model == "radial":
        choice.k1, choice.k2 = radial_coefficients(_camera(kept))
    else:
        as_pinhole(kept)
    choice.kept_error_px = mean_error(kept)
    return kept, choice
