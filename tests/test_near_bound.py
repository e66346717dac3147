"""The near bound from a plane sweep of the photos (nex_core.sfm.near_bound): on scenes ray-cast here (two
textured planes, the near one with no 3D points), and on suite scenes rendered by Blender with their true
cameras (the glossy table of shiny_tabletop, which has no 3D points near the camera; deep_matte, where the
points' near bound is right)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nex_core.io.cameras import Camera
from nex_core.io.scene import load_scene
from nex_core.sfm import near_bound as nb

REPO = Path(__file__).resolve().parents[1]

W, H, F = 96, 72, 80.0


def _camera(x: float, y: float = 0.0) -> Camera:
    c2w = np.eye(4)
    c2w[:3, 3] = (x, y, 0.0)
    return Camera(W, H, F, F, W / 2, H / 2, c2w, f"cam{x:+.2f}")


def _texture(u: np.ndarray, v: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.full(u.shape, 0.5)
    for _ in range(12):
        fu, fv, phase = rng.uniform(-40, 40), rng.uniform(-40, 40), rng.uniform(0, 2 * np.pi)
        out += 0.06 * np.sin(fu * u + fv * v + phase)
    return out


def _render(cam: Camera, planes: list[tuple[float, float, int]], gain: float = 1.0) -> np.ndarray:
    """Ray-cast fronto-parallel planes (depth z, lowest world y they cover - everything below is open, and
    texture seed), nearest hit first; RGB [H, W, 3]."""
    rows, cols = np.mgrid[0:H, 0:W]
    d = np.stack([(cols + 0.5 - cam.cx) / cam.fx, (rows + 0.5 - cam.cy) / cam.fy, np.ones((H, W))], -1)
    o = cam.center
    img = np.zeros((H, W))
    hit = np.full((H, W), np.inf)
    for z, y_from, seed in planes:
        t = (z - o[2]) / d[..., 2]
        x, y = o[0] + t * d[..., 0], o[1] + t * d[..., 1]
        covers = (y >= y_from) & (t < hit)
        img = np.where(covers, _texture(x, y, seed), img)
        hit = np.where(covers, t, hit)
    return np.repeat(np.clip(gain * img, 0, 1)[..., None], 3, -1)


def test_ncc_equals_a_direct_computation():
    rng = np.random.default_rng(0)
    a, b = rng.random((20, 24)), rng.random((20, 24))
    b[5:15, 5:15] = 0.3 * a[5:15, 5:15] + 0.2  # correlated there
    got = nb.ncc(a, b, 5)
    for r, c in [(7, 7), (10, 12), (3, 18), (12, 9)]:
        pa, pb = a[r - 2:r + 3, c - 2:c + 3].ravel(), b[r - 2:r + 3, c - 2:c + 3].ravel()
        want = np.mean((pa - pa.mean()) * (pb - pb.mean())) / (pa.std() * pb.std())
        assert got[r, c] == pytest.approx(want, abs=1e-6)
    assert got[10, 10] == pytest.approx(1.0)


def test_warping_a_neighbour_onto_the_true_plane_gives_the_reference_view():
    planes = [(2.0, -10.0, 1)]
    ref, other = _camera(0.0), _camera(0.15, 0.05)
    want = _render(ref, planes)[..., 0]
    warped, valid = nb.warp_to_reference(_render(other, planes)[..., 0], other, ref, 2.0)
    assert valid.mean() > 0.7
    assert np.abs(warped - want)[valid].max() < 0.03
    off, _ = nb.warp_to_reference(_render(other, planes)[..., 0], other, ref, 3.0)
    assert np.abs(off - want)[valid].mean() > 3 * np.abs(warped - want)[valid].mean()


def _capture(gains=(1.0, 1.0, 1.0, 1.0, 1.0)):
    # A wall at depth 4, and a floor-like near plane at depth 1.2 covering the lower part of the view.
    planes = [(1.2, 0.12, 7), (4.0, -10.0, 3)]
    cams = [_camera(0.0), _camera(-0.12), _camera(0.12), _camera(-0.06, 0.05), _camera(0.06, -0.05)]
    return [_render(c, planes, g) for c, g in zip(cams, gains)], cams


def test_the_sweep_finds_near_content_the_points_missed():
    images, cams = _capture(gains=(1.0, 0.7, 1.3, 0.85, 1.15))  # exposure changes between shots
    got = nb.near_bound(images, cams, 0, near=3.5, far=4.5)  # the points saw only the wall
    assert got.photos == pytest.approx(1.2, rel=0.1)
    assert got.near == got.photos and "moved from" in got.describe()


def test_the_points_bound_stays_where_the_photos_agree():
    images, cams = _capture()
    got = nb.near_bound(images, cams, 0, near=1.2, far=4.5)
    assert got.photos == pytest.approx(1.2, rel=0.1)
    assert got.near == 1.2 and "agrees" in got.describe()


def test_textureless_photos_leave_the_points_bound():
    cams = [_camera(x) for x in (0.0, -0.1, 0.1)]
    images = [np.full((H, W, 3), 0.5) for _ in cams]
    got = nb.near_bound(images, cams, 0, near=2.0, far=5.0)
    assert got.photos is None and got.near == 2.0 and "too few" in got.describe()


def _suite_scene(name: str, out: Path):
    """A suite scene's camera grid (12 views of 128 x 96, 8 samples: about 10 s) with its true cameras -> (scene,
    the least depth the reference view's ray casts met)."""
    subprocess.run([sys.executable, str(REPO / "tools" / "scene_suite.py"), "render", "--scene", name, "--size",
                    "128", "96", "--views", "12", "--samples", "8", "--no-denoise", "--out", str(out)],
                   cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True, capture_output=True,
                   timeout=900)
    scene = load_scene(out, holdout=0)
    ref = json.loads((out / "truth.json").read_text())["views"][scene.ref_id]
    return scene, ref["near"] / 0.9  # the truth's near is 0.9 x the least depth (tools/suite/render.py)


needs_blender = [pytest.mark.slow,
                 pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="needs Blender as a module (bpy)")]


@pytest.mark.parametrize("scene_name, points_factor, moves", [
    pytest.param("shiny_tabletop", 2.7, True, marks=needs_blender),  # the points' near bound prepare found there
    pytest.param("deep_matte", 1.0, False, marks=needs_blender),
])
def test_on_suite_scenes_the_sweep_finds_the_nearest_content(scene_name, points_factor, moves, tmp_path):
    scene, least = _suite_scene(scene_name, tmp_path / scene_name)
    got = nb.near_bound(scene.images, scene.cameras, scene.ref_id, points_factor * least, scene.planes.dmax)
    assert got.photos is not None and 0.85 * least <= got.photos <= 1.15 * least, (got, least)
    assert (got.near == got.photos) is moves


def _camera_at(x: float, z: float) -> Camera:
    c2w = np.eye(4)
    c2w[:3, 3] = (x, 0.0, z)
    return Camera(W, H, F, F, W / 2, H / 2, c2w, f"cam{x:+.2f}{z:+.2f}")


def test_the_content_found_gives_every_photo_its_own_near_bound():
    """The sweep's votes are points in space: a photo 0.4 closer to the near plane (depth 1.2) gets 0.8;
    the reference photo gets the sweep's own bound; a photo whose points' bound is already near keeps it,
    and so does one that does not see the content (turned away)."""
    images, cams = _capture()
    got = nb.near_bound(images, cams, 0, near=3.5, far=4.5)
    assert got.near_for(cams[0], 3.5) == got.near
    assert got.near_for(_camera_at(0.05, 0.4), 3.3) == pytest.approx(0.8, rel=0.1)
    assert got.near_for(_camera_at(0.05, 0.4), 0.75) == 0.75
    away = _camera_at(0.0, 0.0)
    away.c2w[:3, :3] = [[-1, 0, 0], [0, 1, 0], [0, 0, -1]]  # looking back, away from the planes
    assert got.near_for(away, 3.5) == 3.5
    flat = nb.near_bound([np.full((H, W, 3), 0.5) for _ in cams], cams, 0, near=2.0, far=5.0)
    assert flat.near_for(_camera_at(0.05, 0.4), 2.0) == 2.0
