"""``nex prepare``'s lens model choice (:mod:`nex_core.sfm.lens`): the rule on numbers, the two bundle
adjustments on a small synthetic reconstruction, ``--lens`` validation, and how the choice is reported.

The end-to-end cases (a distortion-free render keeps its full frame; the phone capture keeps RADIAL) are in
tests/test_prepare.py and tests/test_prepare_phone.py, which run ``nex prepare`` on rendered captures.
"""

from __future__ import annotations

import numpy as np
import pytest

from nex_core.io.errors import ConfigError, ReconstructionError
from nex_core.sfm import options
from nex_core.sfm.lens import (LENS_MODES, MIN_RADIAL_GAIN_PX, MIN_RADIAL_GAIN_REL, LensChoice, radial_coefficients,
                               radial_pays_off)

W, H, F = 320, 240, 300.0


# --------------------------------------------------------------------------------------------------
# The rule


# (capture, mean error with k1, k2 refined, with k1 = k2 = 0) as measured (docs/scenes.md)
REAL_LENS = [("deep_matte phone, k1 -0.10", 0.4506, 0.4881), ("refraction phone", 0.6105, 0.6433),
             ("shiny_tabletop phone", 0.7455, 0.7632), ("12 MP shiny warped with k1 -0.06", 1.0153, 1.0402)]
NO_LENS = [("12 MP shiny", 1.0007, 0.9987), ("sfm render", 0.2872, 0.2870), ("shiny_demo", 0.3902, 0.3899),
           ("shiny_tabletop grid", 0.3488, 0.3491), ("refraction grid", 0.3792, 0.3790),
           ("12 MP shiny warped with k1 -0.03: missed, its radial fit has the wrong shape", 1.0115, 1.0172)]


def test_the_rule_on_the_measured_captures() -> None:
    for name, radial, none in REAL_LENS:
        assert radial_pays_off(radial, none), name
    for name, radial, none in NO_LENS:
        assert not radial_pays_off(radial, none), name


def test_the_rule_needs_both_gains() -> None:
    none = 1.0
    assert radial_pays_off(none * (1 - MIN_RADIAL_GAIN_REL) - 1e-9, none)
    assert not radial_pays_off(none * (1 - MIN_RADIAL_GAIN_REL) + 1e-6, none)  # too little relative gain
    assert not radial_pays_off(20.0 - 2 * MIN_RADIAL_GAIN_PX, 20.0)  # pixels gained, but 0.05 %
    assert not radial_pays_off(0.1, 0.1 + 0.9 * MIN_RADIAL_GAIN_PX)  # 4 %, but a few thousandths of a pixel
    assert not radial_pays_off(1.2, 1.0) and not radial_pays_off(1.0, 1.0)  # a worse fit never wins


def test_lens_choice_numbers_and_text() -> None:
    choice = LensChoice(model="none", chosen_by="auto", radial_error_px=1.0, none_error_px=1.25, k1=0.062, k2=-0.053)
    assert choice.gain_px == pytest.approx(0.25) and choice.gain_rel == pytest.approx(0.2)
    text = choice.describe()
    assert "no distortion" in text and "k1 0.0620" in text and "1.000 px" in text and "1.250 px" in text
    assert choice.report_fields() == {"lens_model": "none", "lens_chosen_by": "auto", "radial_error_px": 1.0,
                                      "no_distortion_error_px": 1.25}
    assert "robust" not in text
    choice.kept_error_px = 0.9  # after the final robust adjustment
    assert choice.describe().startswith(text) and "robust loss (cauchy, 0.5 px): 0.900 px" in choice.describe()


# --------------------------------------------------------------------------------------------------
# The two bundle adjustments, on a synthetic reconstruction


def _synthetic(k1: float, k2: float, start_k: tuple[float, float], seed: int = 0):
    """12 cameras on a 4 x 3 grid aimed at the middle of 500 points 5-9 units away, observed through a
    RADIAL lens (k1, k2) with 0.3 px noise; the camera starts at ``start_k``, points and centres a bit off."""
    import pycolmap

    rng = np.random.default_rng(seed)
    rec = pycolmap.Reconstruction()
    rec.add_camera_with_trivial_rig(pycolmap.Camera(model="RADIAL", width=W, height=H,
                                                    params=[F, W / 2, H / 2, *start_k], camera_id=1))
    points = rng.uniform([-3.0, -2.2, 5.0], [3.0, 2.2, 9.0], (500, 3))
    tracks: dict[int, list[tuple[int, int]]] = {j: [] for j in range(len(points))}
    for i, (centre, rot) in enumerate(_grid_poses()):
        cam = (points - centre) @ rot.T
        xy = cam[:, :2] / cam[:, 2:3]
        r2 = np.sum(xy * xy, axis=1, keepdims=True)
        uv = xy * (1.0 + k1 * r2 + k2 * r2 * r2) * F + [W / 2, H / 2]
        seen = np.flatnonzero((uv[:, 0] > 0) & (uv[:, 0] < W) & (uv[:, 1] > 0) & (uv[:, 1] < H))
        image = pycolmap.Image(name=f"v{i:02d}.png", keypoints=uv[seen] + rng.normal(0, 0.3, (len(seen), 2)),
                               camera_id=1, image_id=i + 1)
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(rot), -rot @ (centre + rng.normal(0, 0.01, 3)))
        rec.add_image_with_trivial_frame(image, pose)
        for k, j in enumerate(seen):
            tracks[int(j)].append((i + 1, k))
    for j, elements in tracks.items():
        if len(elements) >= 2:
            track = pycolmap.Track()
            for image_id, idx in elements:
                track.add_element(image_id, idx)
            rec.add_point3D(points[j] + rng.normal(0, 0.01, 3), track)
    return rec


def _grid_poses() -> list[tuple[np.ndarray, np.ndarray]]:
    """The synthetic cameras' true (centre, world -> camera rotation): a 4 x 3 grid aimed at (0, 0, 7)."""
    poses = []
    for x, y in ((x, y) for y in (-0.5, 0.0, 0.5) for x in (-1.5, -0.5, 0.5, 1.5)):
        centre = np.array([x, y, 0.0])
        z = np.array([0.0, 0.0, 7.0]) - centre
        z /= np.linalg.norm(z)
        right = np.cross([0.0, 1.0, 0.0], z)
        right /= np.linalg.norm(right)
        poses.append((centre, np.stack([right, np.cross(z, right), z])))
    return poses


def _choose(rec, mode: str):
    pytest.importorskip("pycolmap")
    from nex_core.sfm.colmap_run import CameraPrior, Runner, StepSettings
    from nex_core.sfm.lens import choose_lens

    prior = CameraPrior(W, H, F, "exif", fixed=True)
    return choose_lens(rec, prior, mode, StepSettings(num_threads=1), Runner(None))


def _camera(rec):
    return next(iter(rec.cameras.values()))


def _k(rec) -> list[float]:
    return list(radial_coefficients(_camera(rec)))


@pytest.mark.parametrize("mode", ["radial", "none"])
def test_a_forced_model_is_kept_and_both_errors_are_measured(mode: str) -> None:
    pytest.importorskip("pycolmap")
    rec = _synthetic(-0.10, 0.02, start_k=(-0.10, 0.02))
    kept, choice = _choose(rec, mode)
    assert choice.model == mode and choice.chosen_by == "--lens"
    assert _k(rec) == pytest.approx([-0.10, 0.02])  # the mapper's reconstruction is left as it was
    assert 0.2 < choice.radial_error_px <= choice.none_error_px < 1.0  # both fits reach about the noise
    assert choice.k1 == pytest.approx(-0.10, abs=0.03)  # the radial fit finds the lens
    if mode == "none":  # a pinhole, which the undistortion copies: no crop, no warp
        assert _camera(kept).model_name == "PINHOLE" and _k(kept) == [0.0, 0.0]
        assert list(_camera(kept).params) == pytest.approx([F, F, W / 2, H / 2])
    else:
        assert _camera(kept).model_name == "RADIAL" and _k(kept) == pytest.approx([choice.k1, choice.k2])
    chosen_error = choice.radial_error_px if mode == "radial" else choice.none_error_px
    assert float(kept.compute_mean_reprojection_error()) == pytest.approx(choice.kept_error_px)  # the report's
    assert choice.kept_error_px == pytest.approx(chosen_error, rel=0.1)  # the final robust adjustment, no outliers


def test_spurious_distortion_is_dropped() -> None:
    """A distortion-free reconstruction that mapping left with k1, k2 far from 0: the radial fit gains
    nothing over the pinhole one, so the pinhole one is kept."""
    pytest.importorskip("pycolmap")
    kept, choice = _choose(_synthetic(0.0, 0.0, start_k=(0.06, -0.05)), "auto")
    assert choice.model == "none" and choice.chosen_by == "auto" and _camera(kept).model_name == "PINHOLE"
    assert abs(choice.gain_px) < MIN_RADIAL_GAIN_PX


# --------------------------------------------------------------------------------------------------
# The final adjustment with a robust loss


def test_the_final_adjustment_uses_the_robust_loss() -> None:
    pycolmap = pytest.importorskip("pycolmap")
    from nex_core.sfm.colmap_run import CameraPrior, StepSettings
    from nex_core.sfm.lens import ROBUST_LOSS, ROBUST_LOSS_SCALE_PX, ROBUST_MAX_ITERATIONS, adjustment_options

    settings = StepSettings(num_threads=1)
    squared = adjustment_options(CameraPrior(W, H, F, "exif", fixed=True), True, settings)
    robust = adjustment_options(CameraPrior(W, H, None, "estimated", fixed=False), False, settings, robust=True)
    assert squared.ceres.loss_function_type == pycolmap.LossFunctionType.TRIVIAL  # the lens choice's
    assert robust.ceres.loss_function_type == getattr(pycolmap.LossFunctionType, ROBUST_LOSS) \
        == pycolmap.LossFunctionType.CAUCHY
    assert robust.ceres.loss_function_scale == ROBUST_LOSS_SCALE_PX and 0.1 <= ROBUST_LOSS_SCALE_PX <= 2.0
    assert squared.refine_extra_params and not squared.refine_focal_length  # the prior's focal is held
    assert not robust.refine_extra_params and robust.refine_focal_length and not robust.refine_principal_point
    assert robust.ceres.solver_options.num_threads == 1
    assert robust.ceres.solver_options.max_num_iterations == ROBUST_MAX_ITERATIONS
    assert squared.ceres.solver_options.max_num_iterations > ROBUST_MAX_ITERATIONS  # Ceres' default there


def test_the_final_adjustment_resists_outliers() -> None:
    """A fifth of the photos see a third of their points 2-4 px off, the same way in each photo (as
    reflections that slide with the viewpoint): the squared-loss fit lets them pull the cameras, the
    kept model (adjusted again with the robust loss) puts the cameras back near the truth."""
    pycolmap = pytest.importorskip("pycolmap")
    from suite.truth import pose_errors

    from nex_core.sfm.colmap_run import CameraPrior, Runner, StepSettings
    from nex_core.sfm.lens import adjusted_copy

    rec = _synthetic(0.0, 0.0, start_k=(0.0, 0.0))
    true_c2w = {}
    for i, (centre, rot) in enumerate(_grid_poses()):
        true_c2w[i + 1] = np.eye(4)
        true_c2w[i + 1][:3, :3], true_c2w[i + 1][:3, 3] = rot.T, centre
    rng = np.random.default_rng(1)
    for image_id in (3, 7, 10):
        image = rec.images[image_id]
        xy = np.array([p.xy for p in image.points2D])
        bad = rng.random(len(xy)) < 0.35
        xy[bad] += rng.uniform(2.0, 4.0) * np.array([0.8, 0.6])  # one direction per photo
        for point, value in zip(image.points2D, xy):
            point.xy = value
    kept, choice = _choose(rec, "none")
    squared = adjusted_copy(rec, CameraPrior(W, H, F, "exif", fixed=True), False, StepSettings(num_threads=1),
                            Runner(None))
    ids = sorted(true_c2w)
    truth_c2w = np.stack([true_c2w[i] for i in ids])
    rot_sq, cen_sq = pose_errors(np.stack([_c2w(squared.images[i]) for i in ids]), truth_c2w)
    rot_rb, cen_rb = pose_errors(np.stack([_c2w(kept.images[i]) for i in ids]), truth_c2w)
    assert rot_rb.max() < 0.5 * rot_sq.max() and cen_rb.max() < 0.5 * cen_sq.max(), (rot_sq, rot_rb, cen_sq, cen_rb)
    assert choice.kept_error_px < choice.none_error_px  # the outliers count less, the rest fit better


def _c2w(image) -> np.ndarray:
    m = np.asarray(image.cam_from_world().matrix())
    c2w = np.eye(4)
    c2w[:3, :3] = m[:, :3].T
    c2w[:3, 3] = -m[:, :3].T @ m[:, 3]
    return c2w


# --------------------------------------------------------------------------------------------------
# --lens, the report, the checks


def test_lens_option_is_validated() -> None:
    assert options.PrepareOptions().lens == "auto" and LENS_MODES == ("auto", "radial", "none")
    for good in LENS_MODES:
        options.check_options(options.PrepareOptions(lens=good))
    with pytest.raises(ConfigError, match=r"--lens must be one of auto, radial, none.*got 'fisheye'"):
        options.check_options(options.PrepareOptions(lens="fisheye"))


def test_lens_flag_choices_and_error(tmp_path, capsys) -> None:
    from nex_core.cli import build_parser, main
    from nex_core.commands.prepare import _options

    parser = build_parser()
    prepare = next(a for a in parser._actions if isinstance(a.choices, dict)).choices["prepare"]
    assert tuple(next(a for a in prepare._actions if a.dest == "lens").choices) == LENS_MODES
    args = parser.parse_args(["prepare", str(tmp_path), "--lens", "none"])
    assert _options(args).lens == "none"
    assert _options(parser.parse_args(["prepare", str(tmp_path)])).lens == "auto"
    with pytest.raises(SystemExit) as exc:
        main(["prepare", str(tmp_path), "--lens", "fisheye"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--lens: invalid choice: 'fisheye'" in err and "auto" in err and "none" in err
    assert list(tmp_path.iterdir()) == []


def _report(**changes) -> options.PrepareReport:
    fields = dict(photos_dir="p", scene_dir="s", images_total=24, images_registered=24, unregistered=[],
                  ignored_files=[], mean_reprojection_error_px=1.0, points3d=2000, mean_track_length=8.0,
                  input_size=[1008, 756], output_size=[1008, 756], focal_px=757.2, fov_x_deg=66.3,
                  focal_source="exif", focal_fixed=True, radial_k1=0.0, radial_k2=0.0, matcher="exhaustive",
                  pairs_matched=276, pairs_verified=276, baseline_ratio=0.12, dmin=33.0, dmax=102.0,
                  ref_image="view_009.jpg", near_range=[31.8, 34.9], far_range=[97.0, 111.0], timings_s={},
                  lens_model="none", radial_error_px=0.98, no_distortion_error_px=1.0)
    return options.PrepareReport(**{**fields, **changes})


def test_the_summary_gives_the_lens_model_and_both_errors() -> None:
    assert ("lens: no distortion (k1 = k2 = 0); mean reprojection error 0.980 px with k1, k2, 1.000 px without"
            in _report().summary())
    radial = _report(lens_model="radial", lens_chosen_by="--lens", radial_k1=-0.1, radial_k2=0.02).summary()
    assert "lens: radial distortion k1 -0.1000, k2 0.0200, removed, as asked by --lens;" in radial
    # reports written before the choice existed read as radial, without the errors
    old = {k: v for k, v in _report().to_dict().items()
           if k not in ("lens_model", "lens_chosen_by", "radial_error_px", "no_distortion_error_px")}
    assert "lens: radial distortion" in options.PrepareReport(**old).lens_line()


def test_a_large_error_with_lens_none_forced_advises_auto() -> None:
    from nex_core.sfm import checks
    from nex_core.sfm.colmap_run import CameraPrior

    stats = checks.ModelStats(registered=[f"v{i}" for i in range(16)], unregistered=[], points3d=3000,
                              mean_reproj_px=2.6, mean_track_length=6.0, focal_px=300.0, radial_k1=0.0,
                              width=320, baseline_ratio=0.1)
    prior = CameraPrior(320, 240, 300.0, "exif", fixed=True)
    forced = LensChoice("none", "--lens", radial_error_px=0.5, none_error_px=2.6, k1=-0.1, k2=0.02)
    with pytest.raises(ReconstructionError, match=r"ruled out by --lens none.*0\.50 px.*--lens auto"):
        checks.assess_model(stats, prior, 16, 12, lens=forced)
    chosen = LensChoice("none", "auto", radial_error_px=2.5, none_error_px=2.6, k1=0.01, k2=0.0)
    with pytest.raises(ReconstructionError) as exc:
        checks.assess_model(stats, prior, 16, 12, lens=chosen)
    assert "--lens" not in str(exc.value)
