"""Import Cameras: Blender cameras that project like nex_core's cameras, for every scene format."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from addon_helpers import DEMO_SCENE

from nex_core.io.cameras import invert_pose
from nex_core.io.scene.loader import load_cameras


def _blender_pixels(bpy, sc, cam_obj, points: np.ndarray) -> np.ndarray:
    """Pixel coordinates (pixel-centre convention: centres at +0.5) of world points seen by cam_obj."""
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    w, h = sc.render.resolution_x, sc.render.resolution_y
    out = []
    for p in points:
        ndc = world_to_camera_view(sc, cam_obj, Vector(p.tolist()))
        out.append((ndc.x * w, (1.0 - ndc.y) * h))
    return np.array(out)


def _points_in_view(cam, near: float, far: float, n: int, rng) -> np.ndarray:
    """Random world points inside the camera's view frustum between near and far."""
    u = rng.uniform(0, cam.width, n)
    v = rng.uniform(0, cam.height, n)
    z = rng.uniform(near, far, n)
    local = np.stack([(u - cam.cx) / cam.fx * z, (v - cam.cy) / cam.fy * z, z], -1)
    return local @ cam.c2w[:3, :3].T + cam.c2w[:3, 3]


def _check_reprojection(bpy, sc, scene_dir: Path, points: np.ndarray | None = None) -> float:
    views = load_cameras(scene_dir)
    rng = np.random.default_rng(1)
    worst = 0.0
    for i, cam in enumerate(views.cameras):
        obj = bpy.data.objects[Path(cam.name).stem]
        pts = points if points is not None else _points_in_view(cam, 1.0, 8.0, 50, rng)
        z = (pts - cam.center) @ cam.c2w[:3, 2]
        pts = pts[z > 0.1]
        expected = cam.project(pts)
        got = _blender_pixels(bpy, sc, obj, pts)
        worst = max(worst, float(np.abs(got - expected).max()))
    print(f"{scene_dir.name}: worst reprojection difference {worst:.2e} px over {len(views.cameras)} cameras")
    return worst


@pytest.mark.smoke
def test_llff_cameras(scene, bpy_module):
    bpy = bpy_module
    assert bpy.ops.nex.import_cameras(directory=str(DEMO_SCENE)) == {"FINISHED"}
    views = load_cameras(DEMO_SCENE)
    cams = [o for o in scene.objects if o.type == "CAMERA"]
    assert sorted(o.name for o in cams) == sorted(Path(n).stem for n in views.names)
    ref = bpy.data.objects[Path(views.names[views.ref_id]).stem]
    assert ref["nex_reference"] and scene.camera == ref
    assert sum(bool(o["nex_reference"]) for o in cams) == 1
    assert {o.name for o in cams if o["nex_split"] == "test"} == {Path(views.names[i]).stem for i in views.test_ids}
    assert (scene.render.resolution_x, scene.render.resolution_y) == (160, 120)
    assert ref.data.background_images[0].image.filepath.endswith("view_007.png") or \
        ref.data.background_images[0].image is not None
    assert ref.data.sensor_fit == "HORIZONTAL"
    assert _check_reprojection(bpy, scene, DEMO_SCENE) < 0.5


def _blender_scene_off_centre(tmp_path: Path) -> Path:
    """The demo scene as transforms.json only, with an off-centre principal point and fx != fy."""
    root = tmp_path / "blender_scene"
    shutil.copytree(DEMO_SCENE / "images", root / "images")
    doc = json.loads((DEMO_SCENE / "transforms.json").read_text())
    doc.update(cx=91.0, cy=52.5, fl_y=doc["fl_x"] * 1.04)
    doc.pop("camera_angle_y", None)
    (root / "transforms.json").write_text(json.dumps(doc))
    return root


@pytest.mark.smoke
def test_transforms_json_principal_point_and_pixel_aspect(scene, bpy_module, tmp_path):
    bpy = bpy_module
    root = _blender_scene_off_centre(tmp_path)
    views = load_cameras(root)
    assert views.format == "blender" and abs(views.cameras[0].cx - 91.0) < 1e-9
    assert bpy.ops.nex.import_cameras(directory=str(root), background_images=False) == {"FINISHED"}
    obj = bpy.data.objects["view_000"]
    assert obj.data.shift_x != 0 and obj.data.shift_y != 0
    assert abs(scene.render.pixel_aspect_y / scene.render.pixel_aspect_x - 1 / 1.04) < 1e-6
    assert _check_reprojection(bpy, scene, root) < 0.5


def _quaternion(r: np.ndarray) -> tuple[float, float, float, float]:
    """(w, x, y, z) of a rotation matrix."""
    w = np.sqrt(max(0.0, 1.0 + r[0, 0] + r[1, 1] + r[2, 2])) / 2.0
    x = np.copysign(np.sqrt(max(0.0, 1.0 + r[0, 0] - r[1, 1] - r[2, 2])) / 2.0, r[2, 1] - r[1, 2])
    y = np.copysign(np.sqrt(max(0.0, 1.0 - r[0, 0] + r[1, 1] - r[2, 2])) / 2.0, r[0, 2] - r[2, 0])
    z = np.copysign(np.sqrt(max(0.0, 1.0 - r[0, 0] - r[1, 1] + r[2, 2])) / 2.0, r[1, 0] - r[0, 1])
    return float(w), float(x), float(y), float(z)


def _colmap_scene(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """The demo scene as a COLMAP text model (PINHOLE, off-centre principal point) with 3D points."""
    root = tmp_path / "colmap_scene"
    shutil.copytree(DEMO_SCENE / "images", root / "images")
    views = load_cameras(DEMO_SCENE)
    rng = np.random.default_rng(3)
    points = _points_in_view(views.ref_camera, 2.0, 7.0, 200, rng)
    model = root / "sparse" / "0"
    model.mkdir(parents=True)
    w, h = views.size
    (model / "cameras.txt").write_text(f"1 PINHOLE {w} {h} 150.0 151.5 83.0 57.25\n")
    lines, tracks = [], {k: [] for k in range(len(points))}
    for i, (name, cam) in enumerate(zip(views.names, views.cameras), start=1):
        w2c = invert_pose(cam.c2w)
        qw, qx, qy, qz = _quaternion(w2c[:3, :3])
        t = w2c[:3, 3]
        lines.append(f"{i} {qw} {qx} {qy} {qz} {t[0]} {t[1]} {t[2]} 1 {Path(name).name}")
        obs = []
        for k, p in enumerate(points):
            xc = w2c[:3, :3] @ p + t
            if xc[2] > 0:
                tracks[k].append((i, len(obs)))
                obs.append(f"{150.0 * xc[0] / xc[2] + 83.0} {151.5 * xc[1] / xc[2] + 57.25} {k + 1}")
        lines.append(" ".join(obs))
    (model / "images.txt").write_text("\n".join(lines) + "\n")
    (model / "points3D.txt").write_text("".join(
        f"{k + 1} {p[0]} {p[1]} {p[2]} 128 128 128 0.1 " + " ".join(f"{a} {b}" for a, b in tracks[k]) + "\n"
        for k, p in enumerate(points)))
    return root, points


def test_colmap_points_reproject(scene, bpy_module, tmp_path):
    pytest.importorskip("pycolmap")
    bpy = bpy_module
    root, points = _colmap_scene(tmp_path)
    views = load_cameras(root)
    assert views.format == "colmap" and abs(views.cameras[0].cx - 83.0) < 1e-9
    assert bpy.ops.nex.import_cameras(directory=str(root), background_images=False) == {"FINISHED"}
    assert _check_reprojection(bpy, scene, root, points) < 0.5


def test_colmap_through_background_python(addon, tmp_path):
    """Blender's Python has no pycolmap: then the background Python reads the model."""
    pytest.importorskip("pycolmap")
    root, _ = _colmap_scene(tmp_path)
    direct = load_cameras(root)
    via = addon.camera_import.read_scene_cameras_with(sys.executable, root)
    assert via.names == direct.names and via.ref_id == direct.ref_id and via.test_ids == direct.test_ids
    for a, b in zip(via.cameras, direct.cameras):
        assert np.allclose(a.c2w, b.c2w) and (a.fx, a.fy, a.cx, a.cy) == (b.fx, b.fy, b.cx, b.cy)


def test_scene_the_addon_cannot_read_goes_through_nex_cameras(addon, monkeypatch, tmp_path):
    """A scene whose reader needs a package Blender's Python lacks is read by `nex cameras --json`."""
    logic = addon._core.module("addon.cameras")
    monkeypatch.setattr(logic, "FORMAT_PACKAGES", {"llff": "nex_no_such_package"})
    assert logic.missing_reader(DEMO_SCENE) == "nex_no_such_package"
    via = addon.camera_import.read_scene_cameras(DEMO_SCENE, holdout=4, python=sys.executable)
    direct = load_cameras(DEMO_SCENE, holdout=4)
    assert type(via).__module__.startswith(addon._core.PACKAGE)  # decoded by the vendored answers module
    assert via.names == direct.names and via.test_ids == direct.test_ids and via.ref_id == direct.ref_id
    assert np.array_equal(via.near, direct.near) and np.array_equal(via.cameras[3].c2w, direct.cameras[3].c2w)
    (tmp_path / "images").mkdir()
    with pytest.raises(addon._core.module("errors").SceneError, match="no photos found"):
        addon.camera_import.read_scene_cameras_with(sys.executable, tmp_path)


@pytest.mark.smoke
def test_missing_scene_is_reported(scene, bpy_module, tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(RuntimeError, match="no photos found"):
        bpy_module.ops.nex.import_cameras(directory=str(tmp_path))
    assert not [o for o in scene.objects if o.type == "CAMERA"]
