"""``nex prepare``: structure from motion on a rendered scene with known cameras, and the error cases.

The scene (tools/render_sfm_scene.py: matte procedural textures, a jittered 4 x 4 forward-facing grid,
320 x 240) is rendered once per session with Blender in a subprocess; prepare runs once on it and several
tests read that result. Error cases use small synthetic images and fail before or right after matching.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from suite.truth import pose_errors, umeyama  # tools/suite: the scene suite's pose checks (numpy)

from nex_core.io.errors import CancelledError, ConfigError, ImageError, ReconstructionError, SceneError
from nex_core.io.events import read_events

pytest.importorskip("pycolmap")

from nex_core.io.scene import load_scene
from nex_core.sfm import checks as sfm_checks
from nex_core.sfm import colmap_run as sfm_colmap
from nex_core.sfm import lens as sfm_lens
from nex_core.sfm import photos as photos_mod
from nex_core.sfm import options, scene_output
from nex_core.sfm import pipeline as sfm

REPO = Path(__file__).resolve().parents[1]
RENDER_SCRIPT = REPO / "tools" / "render_sfm_scene.py"
GRID, SIZE = (4, 4), (320, 240)
NOISE_NAME, NOTE_NAME = "zz_noise.png", "notes.txt"
needs_bpy = pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="needs Blender as a module (bpy)")


def _noise_image(path: Path, seed: int, size: tuple[int, int] = (160, 120)) -> None:
    """Smooth random colour blobs: SIFT finds features, but nothing matches another image."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray((rng.random((size[1] // 8, size[0] // 8, 3)) * 255).astype(np.uint8))
    small.resize(size, Image.Resampling.BICUBIC).save(path)


def _options(**kw) -> options.PrepareOptions:
    return options.PrepareOptions(num_threads=2, **kw)


# --------------------------------------------------------------------------------------------------
# The rendered scene and one prepare run on it


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> Path:
    """16 rendered views plus an unrelated photo and a text file, in one folder; truth.json beside it."""
    if importlib.util.find_spec("bpy") is None:
        pytest.skip("needs Blender as a module (bpy)")
    out = tmp_path_factory.mktemp("sfm_render")
    subprocess.run([sys.executable, str(RENDER_SCRIPT), "--out", str(out), "--grid", *map(str, GRID),
                    "--size", *map(str, SIZE)], check=True, cwd=REPO, timeout=600, capture_output=True)
    _noise_image(out / "images" / NOISE_NAME, seed=1, size=SIZE)
    (out / "images" / NOTE_NAME).write_text("shot on a tripod\n")
    return out


@pytest.fixture(scope="session")
def prepared(rendered: Path, tmp_path_factory) -> tuple[Path, options.PrepareReport, list[dict]]:
    scene_dir = tmp_path_factory.mktemp("sfm_scene") / "scene"
    events: list[dict] = []
    report = sfm.prepare_scene(rendered / "images", scene_dir, _options(), listeners=[events.append])
    return scene_dir, report, events


def test_umeyama_recovers_a_similarity() -> None:
    rng = np.random.default_rng(0)
    src = rng.normal(size=(10, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rot = q * np.sign(np.linalg.det(q))
    scale, r, t = umeyama(src, 2.5 * src @ rot.T + [1.0, 2.0, 3.0])
    assert scale == pytest.approx(2.5) and np.allclose(r, rot) and np.allclose(t, [1.0, 2.0, 3.0])


@pytest.mark.slow
@needs_bpy
def test_prepare_recovers_the_cameras(prepared, rendered: Path) -> None:
    scene_dir, report, _ = prepared
    truth = json.loads((rendered / "truth.json").read_text())
    true_c2w = {v["name"]: np.array(v["c2w"]) for v in truth["views"]}
    assert report.images_total == 17 and report.images_registered == 16
    assert report.unregistered == [NOISE_NAME]
    assert report.ignored_files == [NOTE_NAME]
    scene = load_scene(scene_dir, width=80, holdout=0)
    names = [Path(n).name for n in scene.names]
    assert names == sorted(true_c2w)
    est = np.stack([c.c2w for c in scene.cameras])
    rot_err, centre_err = pose_errors(est, np.stack([true_c2w[n] for n in names]))
    # bars with margin over what is measured (docs/scenes.md, "The final robust adjustment")
    assert rot_err.max() < 0.5, rot_err
    assert centre_err.max() < 0.01, centre_err
    assert report.focal_px == pytest.approx(truth["fx"], rel=0.05)
    assert report.focal_source == "estimated" and not report.focal_fixed
    assert report.mean_reprojection_error_px < 1.0 and report.points3d > 500


@pytest.mark.slow
@needs_bpy
def test_prepared_scene_files(prepared) -> None:
    scene_dir, report, _ = prepared
    for name in ("images", "sparse/0/cameras.bin", "poses_bounds.npy", "hwf_cxcy.npy", scene_output.REPORT_FILE):
        assert (scene_dir / name).exists(), name
    assert not (scene_dir / scene_output.WORK_DIR).exists()
    pb = np.load(scene_dir / "poses_bounds.npy")
    assert pb.shape == (16, 17) and np.all(np.isfinite(pb))
    assert np.all(pb[:, 15] > 0) and np.all(pb[:, 15] < pb[:, 16])
    h, w, fx, fy, cx, cy = np.load(scene_dir / "hwf_cxcy.npy").ravel()
    assert (int(w), int(h)) == tuple(report.output_size)
    assert Image.open(next((scene_dir / "images").iterdir())).size == (int(w), int(h))
    import pycolmap

    rec = pycolmap.Reconstruction(str(scene_dir / "sparse" / "0"))
    assert {c.model_name for c in rec.cameras.values()} == {"PINHOLE"}
    on_disk = json.loads((scene_dir / scene_output.REPORT_FILE).read_text())
    assert on_disk["images_registered"] == 16 and 0 < on_disk["dmin"] < on_disk["dmax"]
    assert report.near_range[0] <= report.dmin and report.dmax <= report.far_range[1]


@pytest.mark.slow
@needs_bpy
def test_distortion_free_photos_keep_their_full_frame(prepared) -> None:
    """The render has no lens distortion: k1, k2 do not lower the error enough, so the pinhole model is
    kept and the photos are neither cropped nor warped."""
    scene_dir, report, events = prepared
    assert report.lens_model == "none" and report.lens_chosen_by == "auto"
    assert not sfm_lens.radial_pays_off(report.radial_error_px, report.no_distortion_error_px)
    assert report.radial_k1 == 0.0 and report.radial_k2 == 0.0
    # the written model is the pinhole one adjusted once more with the robust loss: a lower mean error
    assert 0.9 * report.no_distortion_error_px < report.mean_reprojection_error_px < report.no_distortion_error_px
    assert report.input_size == report.output_size == list(SIZE)
    assert {Image.open(p).size for p in (scene_dir / "images").iterdir()} == {SIZE}
    h, w, fx, fy, cx, cy = np.load(scene_dir / "hwf_cxcy.npy").ravel()
    assert (w, h, cx, cy) == (SIZE[0], SIZE[1], SIZE[0] / 2, SIZE[1] / 2)
    (note,) = [e for e in events if "lens_model" in e and e["phase"] == "mapping"]
    assert note["kind"] == "note" and note["lens_model"] == "none" and "no distortion" in note["message"]
    assert "lens: no distortion (k1 = k2 = 0)" in events[-1]["summary"]


@pytest.mark.slow
@needs_bpy
def test_prepare_events(prepared) -> None:
    scene_dir, report, events = prepared
    assert read_events(scene_dir / "events.jsonl") == events
    starts = [e["phase"] for e in events if e["kind"] == "start"]
    assert starts == ["setup", "photos", "features", "matching", "mapping", "undistortion", "writing"]
    for e in events:
        if e["kind"] == "progress":
            assert 0 < e["step"] <= e["steps"], e
            assert e["eta_s"] is None or e["eta_s"] >= 0, e
    assert any(e["kind"] == "note" and NOTE_NAME in e["message"] for e in events)
    assert any(e["kind"] == "warning" and NOISE_NAME in e["message"] for e in events)
    assert events[-1]["phase"] == "done" and events[-1]["images_registered"] == 16
    assert "registered 16/17 photos" in events[-1]["summary"]


@pytest.mark.slow
@needs_bpy
def test_train_on_prepared_scene(prepared, tmp_path: Path) -> None:
    from nex_core.cli import main

    scene_dir, _, _ = prepared
    run = tmp_path / "run"
    code = main(["train", str(scene_dir), "--preset", "tiny", "--steps", "20", "--out", str(run),
                 "--no-eval", "--quiet"])
    assert code == 0
    assert any(e.get("step") == 20 for e in read_events(run / "events.jsonl"))


@pytest.mark.slow
@needs_bpy
def test_existing_scene_needs_force_and_survives_a_failed_force(prepared, tmp_path: Path) -> None:
    scene_dir, _, _ = prepared
    copy = tmp_path / "scene"
    shutil.copytree(scene_dir, copy)
    before = (copy / "poses_bounds.npy").read_bytes()
    noise = tmp_path / "noise"
    noise.mkdir()
    for i in range(12):
        _noise_image(noise / f"n{i:02d}.png", seed=100 + i)
    with pytest.raises(SceneError, match="already holds a prepared scene.*--force"):
        sfm.prepare_scene(noise, copy, _options())
    with pytest.raises(ReconstructionError, match="do not overlap"):
        sfm.prepare_scene(noise, copy, _options(force=True, max_features=500))
    assert (copy / "poses_bounds.npy").read_bytes() == before
    assert len(list((copy / "images").iterdir())) == 16
    assert not (copy / scene_output.WORK_DIR).exists()
    assert read_events(copy / "events.jsonl")[-1]["kind"] == "error"


@pytest.mark.slow
@needs_bpy
def test_cancel_during_mapping(rendered: Path, tmp_path: Path) -> None:
    """A stop request reaches COLMAP's incremental mapper through its cancellation token."""
    events: list[dict] = []

    def stop() -> bool:
        return any(e["phase"] == "mapping" and e["kind"] == "progress" for e in events)

    with pytest.raises(CancelledError):
        sfm.prepare_scene(rendered / "images", tmp_path / "scene", _options(max_features=1500),
                          listeners=[events.append],
                          should_stop=stop)
    assert events[-1]["phase"] == "cancelled" and "mapping" in events[-1]["message"]
    mapping_start = next(e["time"] for e in events if e["phase"] == "mapping" and e["kind"] == "progress")
    assert events[-1]["time"] - mapping_start < 5.0
    assert not any(e["phase"] == "undistortion" for e in events)
    assert scene_output.existing_outputs(tmp_path / "scene") == []
    assert not (tmp_path / "scene" / scene_output.WORK_DIR).exists()


# --------------------------------------------------------------------------------------------------
# Errors (no Blender needed)


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(ImageError, match=r"no photos .* readme\.txt"):
        sfm.prepare_scene(tmp_path, tmp_path.with_name("out_empty"), _options())


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(SceneError, match="does not exist"):
        sfm.prepare_scene(tmp_path / "nope", tmp_path / "out", _options())


def test_too_few_photos(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(5):
        _noise_image(photos / f"p{i}.png", seed=i)
    with pytest.raises(ImageError, match="at least 12 photos.*only 5"):
        sfm.prepare_scene(photos, tmp_path / "scene", _options())


def test_corrupt_photo_is_named(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(12):
        _noise_image(photos / f"p{i:02d}.png", seed=i)
    data = (photos / "p03.png").read_bytes()
    (photos / "p03.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"p03\.png.*(truncated|corrupt)"):
        sfm.prepare_scene(photos, tmp_path / "scene", _options())
    assert scene_output.existing_outputs(tmp_path / "scene") == []


def test_non_overlapping_photos(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(12):
        _noise_image(photos / f"n{i:02d}.png", seed=50 + i)
    with pytest.raises(ReconstructionError, match=r"do not overlap.*n00\.png.*Try:"):
        sfm.prepare_scene(photos, tmp_path / "scene", _options(max_features=500))
    events = read_events(tmp_path / "scene" / "events.jsonl")
    assert events[-1]["kind"] == "error" and "overlap" in events[-1]["message"]


def test_mixed_orientations_are_refused(tmp_path: Path) -> None:
    for i in range(12):
        size = (120, 160) if i in (4, 9) else (160, 120)
        _noise_image(tmp_path / f"p{i:02d}.png", seed=i, size=size)
    with pytest.raises(ImageError, match=r"mix orientations: 10 are landscape but 2 portrait \(p04\.png, p09\.png\)"):
        photos_mod.inspect_photos(tmp_path)


def test_mixed_resolutions_are_resized(tmp_path: Path) -> None:
    for i in range(12):
        _noise_image(tmp_path / f"p{i:02d}.png", seed=i, size=(320, 240) if i else (160, 120))
    found = photos_mod.inspect_photos(tmp_path)
    assert (found.width, found.height) == (160, 120) and "resized to the smallest" in found.notes[0]


def test_output_inside_photos_output_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lie inside the output"):
        scene_output.check_paths(tmp_path / "scene" / "images", tmp_path / "scene")
    with pytest.raises(ConfigError, match="must differ"):
        scene_output.check_paths(tmp_path, tmp_path)


def _jpeg_with_exif(path: Path, size: tuple[int, int], orientation: int = 1, f35: float | None = None) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    if f35 is not None:
        exif.get_ifd(0x8769)[0xA405] = f35
    img = np.zeros((size[1], size[0], 3), np.uint8)
    img[: size[1] // 2, : size[0] // 3] = 255  # a bright block top-left as stored
    Image.fromarray(img).save(path, format="JPEG", exif=exif, quality=95)


def test_exif_focal_and_orientation(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    _jpeg_with_exif(path, (400, 300), orientation=6, f35=28)
    info = photos_mod.read_info(path)
    assert (info.width, info.height) == (300, 400)  # rotated 90 degrees: upright is portrait
    assert info.focal_px == pytest.approx(28 * 500 / math.hypot(36, 24))
    photos_mod.copy_upright(info, tmp_path / "out.jpg", (150, 200))
    out = np.asarray(Image.open(tmp_path / "out.jpg").convert("L"), dtype=np.float32)
    assert out.shape == (200, 150)
    assert out[:50, -50:].mean() > 200 and out[-50:, :50].mean() < 50  # orientation 6: top-left -> top-right


def test_exif_focal_sets_a_fixed_prior(tmp_path: Path) -> None:
    for i in range(12):
        _jpeg_with_exif(tmp_path / f"p{i:02d}.jpg", (400, 300), f35=26)
    found = photos_mod.inspect_photos(tmp_path)
    prior = sfm.camera_prior(found, (200, 150), _options())
    assert prior.source == "exif" and prior.fixed
    assert prior.focal_px == pytest.approx(26 * 500 / math.hypot(36, 24) / 2)
    mapping = sfm_colmap.mapper_options(prior, _options().step_settings(), 12)
    assert not mapping.ba_refine_focal_length and not mapping.mapper.abs_pose_refine_focal_length
    flag = sfm.camera_prior(found, (200, 150), _options(fov_deg=90.0))
    assert flag.source == "--fov-deg" and flag.focal_px == pytest.approx(100.0)
    refined = sfm.camera_prior(found, (200, 150), _options(refine_focal=True))
    assert not refined.fixed
    assert sfm_colmap.mapper_options(refined, _options().step_settings(), 12).ba_refine_focal_length


def test_mixed_zoom_is_refused(tmp_path: Path) -> None:
    for i in range(12):
        _jpeg_with_exif(tmp_path / f"p{i:02d}.jpg", (400, 300), f35=52 if i == 7 else 26)
    with pytest.raises(ImageError, match=r"different zoom settings.*p07\.jpg at 52 mm"):
        photos_mod.inspect_photos(tmp_path)


def test_degenerate_models_are_refused() -> None:
    good = sfm_checks.ModelStats(registered=[f"v{i}" for i in range(16)], unregistered=[], points3d=3000,
                          mean_reproj_px=0.4, mean_track_length=6.0, focal_px=300.0, radial_k1=0.01, width=320,
                          baseline_ratio=0.1)
    prior = sfm_colmap.CameraPrior(320, 240, None, "estimated", fixed=False)
    assert sfm_checks.assess_model(good, prior, 16, 12) == []
    cases = {"field of view": {"focal_px": 5000.0}, "3D points": {"points3d": 40},
             "reprojection error": {"mean_reproj_px": 3.0}, "barely moved": {"baseline_ratio": 0.001},
             "distortion": {"radial_k1": 2.0}}
    for phrase, change in cases.items():
        with pytest.raises(ReconstructionError, match=phrase):
            sfm_checks.assess_model(sfm_checks.ModelStats(**{**good.__dict__, **change}), prior, 16, 12)
    few = sfm_checks.ModelStats(**{**good.__dict__, "registered": good.registered[:10], "unregistered": ["x"] * 6})
    with pytest.raises(ReconstructionError, match="only 10 of 16 photos"):
        sfm_checks.assess_model(few, prior, 16, 12)


def test_cli_prepare_refuses_existing_output(tmp_path: Path, capsys) -> None:
    from nex_core.cli import main

    scene = tmp_path / "scene"
    scene.mkdir()
    (scene / "poses_bounds.npy").write_bytes(b"old")
    assert main(["prepare", str(tmp_path), "--out", str(scene), "--quiet"]) == 2
    assert "--force" in capsys.readouterr().err
    assert (scene / "poses_bounds.npy").read_bytes() == b"old"


def test_swap_in_replaces_the_old_outputs(tmp_path: Path) -> None:
    scene, staged = tmp_path / "scene", tmp_path / "staged"
    (scene / "images").mkdir(parents=True)
    (scene / "images" / "old.png").write_bytes(b"old")
    (scene / "planes.txt").write_text("1 2\n")
    (scene / "mine.txt").write_text("user file")
    (staged / "images").mkdir(parents=True)
    (staged / "images" / "new.png").write_bytes(b"new")
    (staged / "poses_bounds.npy").write_bytes(b"npy")
    replaced = scene_output.swap_in(staged, scene, tmp_path / "old")
    assert replaced == ["images", "planes.txt"]
    assert sorted(p.name for p in scene.iterdir()) == ["images", "mine.txt", "poses_bounds.npy"]
    assert [p.name for p in (scene / "images").iterdir()] == ["new.png"]


def test_progress_printer_plain_lines(capsys) -> None:
    from nex_core.commands.prepare import PreparePrinter

    printer = PreparePrinter()
    printer({"phase": "photos", "kind": "note", "message": "ignored 1 file(s): notes.txt"})
    printer({"phase": "features", "kind": "start", "step": 0, "steps": 16, "unit": "photos"})
    printer({"phase": "features", "kind": "progress", "step": 4, "steps": 16, "unit": "photos", "eta_s": 3.0})
    printer({"phase": "features", "kind": "end", "elapsed_s": 4.2})
    err = capsys.readouterr().err
    assert "note: ignored 1 file(s): notes.txt" in err
    assert "features: 4/16 photos, about 3 s left" in err and "features: done in 4.2 s" in err
