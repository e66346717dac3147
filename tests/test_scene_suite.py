"""The scene suite (tools/scene_suite.py, tools/suite/): every scene renders at a small size with poses
that reproject its own marker points within 0.5 px; the phone lens round-trips (distort, undistort with
the true k1, k2) within 0.5 px; the photo pipeline's noise, EXIF and orientation; the hand-held path.

The lens is checked against pycolmap's RADIAL camera (an independent implementation of the same model).
Scenes render with Blender in a subprocess into a temporary ``NEX_SUITE_CACHE`` (96 x 72 is too small
for markers away from the border, so 128 x 96, 2 views, 8 samples, no denoising: a few seconds each).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from nex_core.io.cameras import llff_to_opencv
from nex_core.io.scene import load_scene
from nex_core.sfm import photos as sfm_photos
from suite import phone, rig, truth
from suite.scenes import SCENES

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "tools" / "scene_suite.py"
SIZE, VIEWS = (128, 96), 2
needs_bpy = pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="needs Blender as a module (bpy)")


def _suite(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NEX_SUITE_CACHE": str(cache), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(SUITE), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600, check=True)


def _luma(path: Path) -> np.ndarray:
    """Linear luminance of an image file, upright (EXIF orientation applied)."""
    with Image.open(path) as im:
        rgb = np.asarray(ImageOps.exif_transpose(im).convert("RGB"), dtype=np.float64) / 255.0
    return phone.srgb_decode(rgb) @ np.array([0.2126, 0.7152, 0.0722])


# --------------------------------------------------------------------------------------------------
# The lens


def test_distortion_is_colmap_radial() -> None:
    pycolmap = pytest.importorskip("pycolmap")
    f, w, h = 240.0, 320, 240
    cam = pycolmap.Camera(model="RADIAL", width=w, height=h, params=[f, w / 2, h / 2, phone.K1, phone.K2])
    rng = np.random.default_rng(0)
    xy = rng.uniform(-0.9, 0.9, (200, 2)) * [1.0, 0.75]
    ours = phone.project(np.concatenate([xy, np.ones((200, 1))], 1), f, w / 2, h / 2, phone.K1, phone.K2)
    theirs = cam.img_from_cam(np.concatenate([xy, np.ones((200, 1))], 1))
    assert np.abs(ours - theirs).max() < 1e-9
    back = phone.undistort(phone.distort(xy))
    assert np.abs(back - xy).max() < 1e-12


def test_lens_warp_round_trips_within_half_a_pixel() -> None:
    """Bright dots at known places in a wide pinhole frame, warped through the lens: their centroids in
    the distorted photo, undistorted by pycolmap with the true k1, k2, land back within 0.5 px."""
    pycolmap = pytest.importorskip("pycolmap")
    w, h = 160, 120
    f = phone.focal_px_for(w, h)
    ww, wh = phone.wide_frame(w, h, f)
    assert ww > w and wh > h
    # dots on a grid of undistorted positions that the distorted frame shows (inner 90 %)
    grid = np.stack(np.meshgrid(np.linspace(-0.45, 0.45, 7) * w, np.linspace(-0.45, 0.45, 5) * h), -1).reshape(-1, 2)
    xy_u = phone.undistort(grid / f)  # so the dots' distorted images fall on ``grid``
    dots = xy_u * f + [ww / 2, wh / 2]
    yy, xx = np.mgrid[0:wh, 0:ww] + 0.5
    wide = np.zeros((wh, ww))
    for u, v in dots:
        wide += np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * 0.8 ** 2))
    photo = phone.apply_lens(np.repeat(wide[..., None], 3, -1), w, h, f)[..., 0]
    cam = pycolmap.Camera(model="RADIAL", width=w, height=h, params=[f, w / 2, h / 2, phone.K1, phone.K2])
    found = np.stack([truth.marker_centre(photo, g + [w / 2, h / 2], radius=3.5) for g in grid])
    back = cam.cam_from_img(found) * f + [ww / 2, wh / 2]  # undistorted, in the wide pinhole frame
    err = np.linalg.norm(back - dots, axis=1)
    assert err.max() < 0.5, err.max()
    # without undistortion the dots would be off by pixels near the corners: the check has teeth
    assert np.linalg.norm(found - [w / 2, h / 2] + [ww / 2, wh / 2] - dots, axis=1).max() > 2.0


# --------------------------------------------------------------------------------------------------
# The photo pipeline


def test_noise_rises_with_exposure() -> None:
    flat = np.full((64, 64, 3), 0.1)
    stds = []
    for gain in (0.5, 2.0, 8.0):
        shot = phone.Shot(ev=0.0, gain=gain, wb=(1.0, 1.0, 1.0), orientation=1, noise_seed=4)
        y = flat * gain
        stds.append(float((phone.srgb_decode(phone.develop(flat, shot) / 255.0) - y).std()))
        expected = np.sqrt(gain * y[0, 0, 0] / phone.FULL_WELL + (gain * phone.READ_NOISE) ** 2)
        assert stds[-1] == pytest.approx(expected, rel=0.25)
    assert stds[0] < stds[1] < stds[2]


def test_draws_are_seeded_and_within_range() -> None:
    frame = np.full((8, 8, 3), 0.09)
    a = [phone.draw_shot(np.random.default_rng(3), frame) for _ in range(2)]
    assert a[0] == a[1]
    shots = [phone.draw_shot(rng, frame) for rng in [np.random.default_rng(s) for s in range(50)]]
    assert all(abs(s.ev) <= phone.EV_RANGE and s.gain == pytest.approx(2.0 * 2.0 ** s.ev) for s in shots)
    assert all(abs(np.log(s.wb[0])) <= phone.WB_RANGE and s.wb[1] == 1.0 for s in shots)
    assert {s.orientation for s in shots} == set(phone.ORIENTATIONS)


@pytest.mark.parametrize("orientation", phone.ORIENTATIONS)
def test_jpeg_has_exif_focal_and_orientation(tmp_path: Path, orientation: int) -> None:
    w, h = 160, 120
    f = phone.focal_px_for(w, h)
    yy, xx = np.mgrid[0:h, 0:w]
    upright = np.stack([60 + xx, 80 + yy, 120 + 0 * xx], -1).astype(np.uint8)  # smooth: JPEG keeps it well
    upright[:10, :20] = 255  # a bright top-left corner shows which way up the stored pixels are
    path = tmp_path / "IMG_0001.jpg"
    path.write_bytes(phone.jpeg_bytes(upright, orientation, f))
    with Image.open(path) as im:
        assert im.getexif()[0x0112] == orientation
        assert im.getexif().get_ifd(0x8769)[0xA405] == phone.FOCAL_35MM
        shown = np.asarray(ImageOps.exif_transpose(im).convert("RGB"), dtype=np.float64)
    assert shown.shape == upright.shape and np.abs(shown - upright).mean() < 3.0
    assert shown[:8, :16].mean() > 240
    info = sfm_photos.read_info(path)  # what `nex prepare` reads: upright size and the focal prior
    assert (info.width, info.height) == (w, h) and info.focal_px == pytest.approx(f, rel=1e-9)


def test_handheld_path_is_a_sweep_with_wobble() -> None:
    r = rig.Rig(center=(0.0, 0.0, 1.2), pitch_deg=-5.0, baseline=(0.5, 0.3), target_depth=3.0)
    poses = np.stack(rig.handheld_path(r, 16, seed=3))
    assert np.allclose(poses, np.stack(rig.handheld_path(r, 16, seed=3)))
    assert not np.allclose(poses, np.stack(rig.handheld_path(r, 16, seed=4)))
    x = poses[:, 0, 3]
    assert np.all(np.diff(x) > 0) and x.max() - x.min() == pytest.approx(0.5, rel=0.05)  # left to right
    assert np.ptp(poses[:, 1, 3]) > 0.05 and np.ptp(poses[:, 2, 3]) > 0.05  # depth and height wobble
    rolls = np.degrees(np.arcsin(poses[:, 2, 0]))  # how far each image's x axis tilts out of the horizontal
    assert np.ptp(rolls) > 1.0 and np.abs(rolls).max() < 6.0
    yaws = np.degrees(np.arctan2(poses[:, 0, 2], poses[:, 1, 2]))  # re-aimed at the subject along the sweep
    assert np.ptp(yaws) > 3.0
    assert np.allclose(np.einsum("nij,nik->njk", poses[:, :3, :3], poses[:, :3, :3]), np.eye(3), atol=1e-12)
    xs = np.unique(np.round(x, 6))
    assert len(xs) == 16  # not a grid: no two columns share a position


# --------------------------------------------------------------------------------------------------
# Rendering every scene


@pytest.fixture(scope="session")
def suite_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("suite_cache")


@pytest.fixture(scope="session")
def rendered(suite_cache: Path) -> dict[str, Path]:
    if importlib.util.find_spec("bpy") is None:
        pytest.skip("needs Blender as a module (bpy)")
    out = {}
    for name in SCENES:
        proc = _suite("render", "--scene", name, "--size", *map(str, SIZE), "--views", str(VIEWS), "--samples", "8",
                      "--no-denoise", cache=suite_cache)
        out[name] = Path(proc.stdout.strip().splitlines()[-1])
    return out


def test_list_names_every_scene(suite_cache: Path) -> None:
    if importlib.util.find_spec("bpy") is None:
        pytest.skip("needs Blender as a module (bpy)")
    lines = _suite("list", cache=suite_cache).stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(SCENES) and len(SCENES) >= 5


@needs_bpy
@pytest.mark.parametrize("name", SCENES)
def test_scene_renders_with_exact_poses(rendered: dict[str, Path], suite_cache: Path, name: str) -> None:
    folder = rendered[name]
    assert suite_cache in folder.parents and folder.name.startswith(f"{name}-{SIZE[0]}x{SIZE[1]}-grid-s0-")
    doc = json.loads((folder / "truth.json").read_text())
    assert (doc["width"], doc["height"]) == SIZE and len(doc["views"]) == VIEWS
    images = {v["name"]: _luma(folder / "images" / v["name"]) for v in doc["views"]}
    errors = truth.marker_errors(doc, images)
    assert len(errors) >= 2, f"{name}: too few markers in view to check the poses"
    assert max(errors) < 0.5, (name, errors)
    rows = np.load(folder / "poses_bounds.npy")  # LLFF, as the shipped scene
    assert rows.shape == (VIEWS, 17)
    for row, view in zip(rows, doc["views"]):
        assert np.allclose(llff_to_opencv(row[:15].reshape(3, 5)[:, :4]), view["c2w"], atol=1e-9)
        assert np.allclose(row[:15].reshape(3, 5)[:, 4], [SIZE[1], SIZE[0], doc["fx"]])
        assert 0 < view["near"] == row[15] < row[16] == view["far"]
    scene = load_scene(folder, holdout=0, min_images=VIEWS)  # the folder nex trains on
    cam = scene.cameras[0]
    assert (cam.width, cam.height) == SIZE and cam.fx == pytest.approx(doc["fx"], rel=1e-6)


@needs_bpy
def test_a_second_render_comes_from_the_cache(rendered: dict[str, Path], suite_cache: Path) -> None:
    proc = _suite("render", "--scene", SCENES[0], "--size", *map(str, SIZE), "--views", str(VIEWS), "--samples",
                  "8", "--no-denoise", cache=suite_cache)
    assert proc.stdout.startswith("[suite] cached:") and Path(proc.stdout.splitlines()[-1]) == rendered[SCENES[0]]
