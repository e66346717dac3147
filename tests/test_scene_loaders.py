"""Scene loaders: LLFF, COLMAP (binary and text), Blender transforms.json agree; errors are specific."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nex_core.io.errors import ConfigError, ImageError, PoseError, SceneError
from nex_core.io.scene import PlaneSpec, Scene, detect_format, load_scene
from nex_core.io.scene.images import image_size, read_image

REPO = Path(__file__).resolve().parents[1]
W, H = 32, 24
FX, FY = 30.0, 31.0
N_VIEWS = 16
CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


# ------------------------------------------------------------------------------------------ synthetic scene


def _rotation(axis_angle: np.ndarray) -> np.ndarray:
    """Rodrigues' formula."""
    theta = np.linalg.norm(axis_angle)
    if theta < 1e-12:
        return np.eye(3)
    k = axis_angle / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * kx + (1 - np.cos(theta)) * kx @ kx


def make_cameras(n: int = N_VIEWS, seed: int = 0) -> list[np.ndarray]:
    """Forward-facing OpenCV c2w matrices on a jittered 4-column grid, looking down +z."""
    rng = np.random.default_rng(seed)
    poses = []
    for i in range(n):
        m = np.eye(4)
        m[:3, :3] = _rotation(rng.normal(0.0, 0.05, 3))
        m[:3, 3] = [(i % 4) * 0.3 - 0.45, (i // 4) * 0.3 - 0.45, 0.0] + rng.normal(0.0, 0.03, 3)
        poses.append(m)
    return poses


def make_points(seed: int = 1, n: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), rng.uniform(2.0, 10.0, n)], 1)


def expected_bounds(poses: list[np.ndarray], points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-view 0.1 / 99.9 percentiles of point depths (what the COLMAP loader must compute)."""
    near, far = [], []
    for c2w in poses:
        w2c = np.linalg.inv(c2w)
        z = points @ w2c[2, :3] + w2c[2, 3]
        near.append(np.percentile(z, 0.1))
        far.append(np.percentile(z, 99.9))
    return np.array(near), np.array(far)


def names_for(n: int) -> list[str]:
    return [f"view_{i:03d}.png" for i in range(n)]


def write_images(root: Path, n: int = N_VIEWS, size: tuple[int, int] = (W, H), seed: int = 2) -> None:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    for name in names_for(n):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / name)


def llff_rows(poses: list[np.ndarray], near, far, hwf: tuple | None = (H, W, FX)) -> np.ndarray:
    """poses_bounds.npy rows: [down, right, backward, centre (, hwf)] row-major, then near, far."""
    rows = []
    for c2w, lo, hi in zip(poses, near, far):
        cols = [c2w[:3, 1], c2w[:3, 0], -c2w[:3, 2], c2w[:3, 3]]
        if hwf is not None:
            cols.append(np.asarray(hwf, dtype=np.float64))
        rows.append(np.concatenate([np.stack(cols, 1).ravel(), [lo, hi]]))
    return np.array(rows)


def write_llff(root: Path, poses, near, far, hwf=(H, W, FX)) -> None:
    np.save(root / "poses_bounds.npy", llff_rows(poses, near, far, hwf))


def write_colmap(root: Path, poses, points, binary: bool = True, model: str = "PINHOLE",
                 params: list[float] | None = None, folder: str = "sparse/0") -> None:
    import pycolmap

    rec = pycolmap.Reconstruction()
    camera = pycolmap.Camera.create_from_model_name(1, model, FX, W, H)
    camera.params = params if params is not None else [FX, FY, 15.5, 12.25]
    rec.add_camera_with_trivial_rig(camera)
    for i, (name, c2w) in enumerate(zip(names_for(len(poses)), poses)):
        w2c = np.linalg.inv(c2w)
        keypoints = np.zeros((len(points), 2))
        image = pycolmap.Image(name=name, camera_id=1, image_id=i + 1, keypoints=keypoints)
        rec.add_image_with_trivial_frame(image, pycolmap.Rigid3d(w2c[:3, :4]))
    for j, xyz in enumerate(points):
        track = pycolmap.Track()
        for i in range(len(poses)):
            track.add_element(i + 1, j)
        rec.add_point3D(xyz, track)
    out = root / folder
    out.mkdir(parents=True, exist_ok=True)
    (rec.write_binary if binary else rec.write_text)(str(out))


def write_blender(root: Path, poses, near=None, far=None, instant_ngp: bool = False,
                  filename: str = "transforms.json", names: list[str] | None = None) -> None:
    names = names or names_for(len(poses))
    meta: dict = {"camera_angle_x": 2.0 * np.arctan(W / (2.0 * FX)),
                  "camera_angle_y": 2.0 * np.arctan(H / (2.0 * FY))}
    if instant_ngp:
        meta = {"fl_x": FX, "fl_y": FY, "cx": 15.5, "cy": 12.25, "w": W, "h": H,
                "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0}
    frames = []
    for i, (name, c2w) in enumerate(zip(names, poses)):
        frame = {"file_path": f"./images/{Path(name).stem}", "transform_matrix": (c2w @ CV_TO_GL).tolist()}
        if near is not None:
            frame["near"], frame["far"] = float(near[i]), float(far[i])
        frames.append(frame)
    meta["frames"] = frames
    (root / filename).write_text(json.dumps(meta))


@pytest.fixture
def truth() -> dict:
    poses = make_cameras()
    points = make_points()
    near, far = expected_bounds(poses, points)
    return {"poses": poses, "points": points, "near": near, "far": far}


def llff_scene(root: Path, truth: dict, n: int = N_VIEWS) -> Path:
    write_images(root, n)
    write_llff(root, truth["poses"][:n], truth["near"][:n], truth["far"][:n])
    return root


def assert_cameras_equal(a, b, rtol: float = 1e-6) -> None:
    assert len(a) == len(b)
    for ca, cb in zip(a, b):
        assert (ca.width, ca.height) == (cb.width, cb.height)
        np.testing.assert_allclose([ca.fx, ca.fy, ca.cx, ca.cy], [cb.fx, cb.fy, cb.cx, cb.cy], rtol=rtol)
        np.testing.assert_allclose(ca.c2w, cb.c2w, atol=1e-6)


# ------------------------------------------------------------------------------------------ formats agree


def test_llff_loads_cameras_names_images_bounds(tmp_path, truth):
    scene = load_scene(llff_scene(tmp_path, truth))
    assert isinstance(scene, Scene) and scene.format == "llff"
    assert scene.names == [f"images/{n}" for n in names_for(N_VIEWS)]
    assert scene.images.shape == (N_VIEWS, H, W, 3) and scene.images.dtype == np.float32
    assert (scene.height, scene.width, scene.n_views) == (H, W, N_VIEWS)
    original = np.asarray(Image.open(tmp_path / "images" / "view_003.png"), dtype=np.float32) / 255
    np.testing.assert_allclose(scene.images[3], original, atol=1e-6)
    for cam, c2w in zip(scene.cameras, truth["poses"]):
        np.testing.assert_allclose(cam.c2w, c2w, atol=1e-9)
        assert (cam.fx, cam.fy, cam.cx, cam.cy) == (FX, FX, W / 2, H / 2)
    np.testing.assert_allclose(scene.near, truth["near"])
    np.testing.assert_allclose(scene.far, truth["far"])


def build_format(root: Path, kind: str, truth: dict) -> Path:
    """The same synthetic scene as LLFF, COLMAP binary/text or transforms.json (same intrinsics)."""
    write_images(root)
    poses, near, far = truth["poses"], truth["near"], truth["far"]
    if kind == "llff":
        write_llff(root, poses, near, far, hwf=(H, W, FX))
        np.save(root / "hwf_cxcy.npy", np.array([H, W, FX, FY, 15.5, 12.25]).reshape(6, 1))
    elif kind in ("colmap_bin", "colmap_txt"):
        write_colmap(root, poses, truth["points"], binary=kind == "colmap_bin")
    else:
        write_blender(root, poses, near, far, instant_ngp=True)
    return root


@pytest.mark.parametrize("kind", ["llff", "colmap_bin", "colmap_txt", "blender"])
def test_every_format_gives_the_same_scene(tmp_path, truth, kind):
    reference = load_scene(build_format(tmp_path / "ref", "llff", truth))
    scene = load_scene(build_format(tmp_path / kind, kind, truth))
    assert scene.format == kind.split("_")[0]
    assert scene.names == reference.names
    assert_cameras_equal(scene.cameras, reference.cameras)
    np.testing.assert_allclose(scene.near, truth["near"], rtol=1e-9)
    np.testing.assert_allclose(scene.far, truth["far"], rtol=1e-9)
    np.testing.assert_array_equal(scene.images, reference.images)
    assert (scene.train_ids, scene.test_ids, scene.ref_id) == (
        reference.train_ids, reference.test_ids, reference.ref_id)
    assert (scene.planes.dmin, scene.planes.dmax) == pytest.approx((reference.planes.dmin, reference.planes.dmax))
    assert (scene.planes.invz, scene.planes.offset, scene.planes.source) == (True, None, "bounds")


def test_blender_camera_angle_and_train_test_files(tmp_path, truth):
    write_images(tmp_path)
    poses = truth["poses"]
    names = names_for(N_VIEWS)
    write_blender(tmp_path, poses[:12], truth["near"], truth["far"], filename="transforms_train.json",
                  names=names[:12])
    write_blender(tmp_path, poses[12:], truth["near"][12:], truth["far"][12:],
                  filename="transforms_test.json", names=names[12:])
    scene = load_scene(tmp_path)
    assert scene.format == "blender"
    assert scene.names == [f"images/{n}" for n in names]
    assert scene.test_ids == [12, 13, 14, 15]  # the files' split wins over holdout
    assert load_scene(tmp_path, holdout=0).test_ids == []
    for cam, c2w in zip(scene.cameras, poses):
        np.testing.assert_allclose([cam.fx, cam.fy, cam.cx, cam.cy], [FX, FY, W / 2, H / 2], rtol=1e-9)
        np.testing.assert_allclose(cam.c2w, c2w, atol=1e-9)


def test_blender_refuses_lens_distortion(tmp_path, truth):
    write_images(tmp_path)
    write_blender(tmp_path, truth["poses"], truth["near"], truth["far"], instant_ngp=True)
    meta = json.loads((tmp_path / "transforms.json").read_text())
    meta["k1"] = 0.1
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(PoseError, match=r"transforms\.json: lens distortion k1=0\.1.*undistort"):
        load_scene(tmp_path)


# transforms.json as other tools write it: the cameras must come out the same.


def _frames(poses, names, path_of) -> list[dict]:
    return [{"file_path": path_of(name), "transform_matrix": (c2w @ CV_TO_GL).tolist()}
            for name, c2w in zip(names, poses)]


def test_blendernerf_convention_camera_angle_x_only(tmp_path, truth):
    """BlenderNeRF / NeRF-synthetic: only the horizontal field of view, paths with their extension."""
    write_images(tmp_path)
    names = names_for(N_VIEWS)
    meta = {"camera_angle_x": 2.0 * np.arctan(W / (2.0 * FX)), "aabb_scale": 16,
            "frames": _frames(truth["poses"], names, lambda n: f"images/{n}")}
    (tmp_path / "transforms.json").write_text(json.dumps(meta, indent=4))
    cameras = load_scene(tmp_path, dmin=1.0, dmax=10.0).cameras
    for cam, c2w in zip(cameras, truth["poses"]):
        assert (cam.width, cam.height) == (W, H)
        np.testing.assert_allclose([cam.fx, cam.fy, cam.cx, cam.cy], [FX, FX, W / 2, H / 2], rtol=1e-9)
        np.testing.assert_allclose(cam.c2w, c2w, atol=1e-9)


def test_nerfstudio_convention_pixels_at_another_resolution(tmp_path, truth):
    """nerfstudio (ns-process-data): fl_x/fl_y/cx/cy for w x h (here the full resolution, twice the photos
    on disk), camera_model OPENCV with zero distortion, applied_transform (ignored: the frames are already
    in the file's world)."""
    write_images(tmp_path)
    names = names_for(N_VIEWS)
    meta = {"w": 2 * W, "h": 2 * H, "fl_x": 2 * FX, "fl_y": 2 * FY, "cx": 2 * 15.5, "cy": 2 * 12.25,
            "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0, "camera_model": "OPENCV",
            "applied_transform": [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, -1, 0]],
            "frames": _frames(truth["poses"], names, lambda n: f"images/{n}")}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    cameras = load_scene(tmp_path, dmin=1.0, dmax=10.0).cameras
    for cam, c2w in zip(cameras, truth["poses"]):
        assert (cam.width, cam.height) == (W, H)
        np.testing.assert_allclose([cam.fx, cam.fy, cam.cx, cam.cy], [FX, FY, 15.5, 12.25], rtol=1e-9)
        np.testing.assert_allclose(cam.c2w, c2w, atol=1e-9)
    meta["camera_model"] = "OPENCV_FISHEYE"
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(PoseError, match=r"camera_model 'OPENCV_FISHEYE' \(frame 0\).*pinhole"):
        load_scene(tmp_path, dmin=1.0, dmax=10.0)


def test_per_frame_intrinsics(tmp_path, truth):
    """Intrinsics in each frame (nerfstudio, Polycam) override the top level, frame by frame."""
    write_images(tmp_path)
    names = names_for(N_VIEWS)
    frames = _frames(truth["poses"], names, lambda n: f"./images/{Path(n).stem}")
    for i, frame in enumerate(frames):
        frame.update({"fl_x": FX + i, "fl_y": FY + 2 * i, "cx": 15.0 + 0.1 * i, "cy": 12.0 - 0.1 * i,
                      "w": W, "h": H})
    meta = {"camera_angle_x": 1.0, "fl_x": 99.0, "frames": frames}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    cameras = load_scene(tmp_path, dmin=1.0, dmax=10.0).cameras
    for i, (cam, c2w) in enumerate(zip(cameras, truth["poses"])):
        np.testing.assert_allclose([cam.fx, cam.fy, cam.cx, cam.cy],
                                   [FX + i, FY + 2 * i, 15.0 + 0.1 * i, 12.0 - 0.1 * i], rtol=1e-9)
        np.testing.assert_allclose(cam.c2w, c2w, atol=1e-9)


def test_colmap_bounds_use_point_depth_percentiles(tmp_path, truth):
    write_images(tmp_path)
    points = np.vstack([truth["points"], [[0.0, 0.0, -3.0]]])  # one point behind every camera: ignored
    write_colmap(tmp_path, truth["poses"], points)
    scene = load_scene(tmp_path)
    np.testing.assert_allclose(scene.near, truth["near"], rtol=1e-9)
    np.testing.assert_allclose(scene.far, truth["far"], rtol=1e-9)


def test_colmap_in_sparse_root_and_zero_distortion(tmp_path, truth):
    write_images(tmp_path)
    write_colmap(tmp_path, truth["poses"], truth["points"], model="OPENCV",
                 params=[FX, FY, 15.5, 12.25, 0, 0, 0, 0], folder="sparse")
    scene = load_scene(tmp_path)
    assert scene.format == "colmap"
    assert (scene.cameras[0].fx, scene.cameras[0].cy) == (FX, 12.25)


def test_colmap_refuses_distorted_model(tmp_path, truth):
    write_images(tmp_path)
    write_colmap(tmp_path, truth["poses"], truth["points"], model="SIMPLE_RADIAL",
                 params=[FX, 16.0, 12.0, 0.05])
    with pytest.raises(PoseError, match=r"SIMPLE_RADIAL.*nex prepare"):
        load_scene(tmp_path)


def test_colmap_unregistered_photo(tmp_path, truth):
    write_images(tmp_path, N_VIEWS + 1)
    write_colmap(tmp_path, truth["poses"], truth["points"])
    with pytest.raises(PoseError, match=r"no pose for: view_016\.png"):
        load_scene(tmp_path)


def test_detect_format_prefers_llff_then_colmap_then_blender(tmp_path, truth):
    write_images(tmp_path)
    write_blender(tmp_path, truth["poses"], truth["near"], truth["far"])
    assert detect_format(tmp_path) == "blender"
    write_colmap(tmp_path, truth["poses"], truth["points"])
    assert detect_format(tmp_path) == "colmap"
    write_llff(tmp_path, truth["poses"], truth["near"], truth["far"])
    assert detect_format(tmp_path) == "llff"
    assert load_scene(tmp_path).format == "llff"


# ------------------------------------------------------------------------------------------ intrinsics


def test_hwf_cxcy_variant_keeps_principal_point(tmp_path, truth):
    write_images(tmp_path)
    write_llff(tmp_path, truth["poses"], truth["near"], truth["far"], hwf=None)  # 14 values per row
    np.save(tmp_path / "hwf_cxcy.npy", np.array([H, W, FX, FY, 14.0, 13.0]).reshape(6, 1))
    cam = load_scene(tmp_path).cameras[0]
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (FX, FY, 14.0, 13.0)
    np.save(tmp_path / "hwf_cxcy.npy", np.array([H, W, FX, 14.0, 13.0]))  # (h, w, f, cx, cy)
    cam = load_scene(tmp_path).cameras[0]
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (FX, FX, 14.0, 13.0)


def test_hwf_cxcy_at_higher_resolution_is_scaled_to_photos(tmp_path, truth):
    write_images(tmp_path)  # photos at 32x24; intrinsics given for 64x48
    write_llff(tmp_path, truth["poses"], truth["near"], truth["far"], hwf=None)
    np.save(tmp_path / "hwf_cxcy.npy", np.array([2 * H, 2 * W, 2 * FX, 2 * FY, 28.0, 26.0]).reshape(6, 1))
    cam = load_scene(tmp_path).cameras[0]
    assert (cam.width, cam.height, cam.fx, cam.fy, cam.cx, cam.cy) == (W, H, FX, FY, 14.0, 13.0)


def test_llff_hwf_at_full_resolution_scaled_to_downsampled_photos(tmp_path, truth):
    write_images(tmp_path)
    write_llff(tmp_path, truth["poses"], truth["near"], truth["far"], hwf=(4 * H, 4 * W, 4 * FX))
    cam = load_scene(tmp_path).cameras[0]
    assert (cam.width, cam.height, cam.fx, cam.cx, cam.cy) == (W, H, FX, W / 2, H / 2)


def test_aspect_mismatch_between_poses_and_photos(tmp_path, truth):
    write_images(tmp_path)
    write_llff(tmp_path, truth["poses"], truth["near"], truth["far"], hwf=(W, H, FX))  # rotated
    with pytest.raises(ImageError, match=r"view_000\.png is 32x24 .* aspect ratio"):
        load_scene(tmp_path)


@pytest.mark.parametrize("width", [16, 20, 48])
def test_resize_scales_intrinsics_with_half_pixel_convention(tmp_path, truth, width):
    build_format(tmp_path, "llff", truth)
    full = load_scene(tmp_path)
    small = load_scene(tmp_path, width=width)
    height = int(round(H * width / W))
    assert small.images.shape == (N_VIEWS, height, width, 3)
    point = np.array([0.3, -0.2, 4.0])
    for a, b in zip(full.cameras, small.cameras):
        assert (b.width, b.height) == (width, height)
        uv_full = a.project(point) / [W, H]
        uv_small = b.project(point) / [width, height]
        np.testing.assert_allclose(uv_small, uv_full, rtol=1e-9)
    assert 0.0 <= small.images.min() and small.images.max() <= 1.0


def test_downscale_is_area_average(tmp_path):
    pixels = np.zeros((4, 4, 3), dtype=np.uint8)
    pixels[::2, ::2] = 255  # one white pixel in each 2x2 block
    Image.fromarray(pixels).save(tmp_path / "checker.png")
    out = read_image(tmp_path / "checker.png", width=2)
    np.testing.assert_allclose(out, 0.25, atol=1e-6)


# ------------------------------------------------------------------------------------------ split, reference


def test_holdout_indices(tmp_path, truth):
    root = llff_scene(tmp_path, truth)
    scene = load_scene(root)
    assert scene.test_ids == [0, 8]
    assert scene.train_ids == [i for i in range(N_VIEWS) if i not in (0, 8)]
    assert load_scene(root, holdout=5).test_ids == [0, 5, 10, 15]
    scene = load_scene(root, holdout=0)
    assert scene.test_ids == [] and scene.train_ids == list(range(N_VIEWS))
    assert [c.name for c in scene.test_cameras()] == []
    with pytest.raises(ConfigError, match="no training views"):
        load_scene(root, holdout=1)


def test_reference_view_default_and_override(tmp_path, truth):
    root = llff_scene(tmp_path, truth)
    scene = load_scene(root)
    centers = np.stack([p[:3, 3] for p in truth["poses"]])
    dists = np.linalg.norm(centers - centers.mean(0), axis=1)
    expected = min(scene.train_ids, key=lambda i: dists[i])
    assert scene.ref_id == expected and scene.ref_id in scene.train_ids
    assert scene.ref_camera is scene.cameras[expected]
    for query in ("view_005", "view_005.png", "images/view_005.png"):
        assert load_scene(root, ref_image=query).ref_id == 5
    with pytest.raises(SceneError, match=r"held-out test view"):
        load_scene(root, ref_image="view_008")


def test_unknown_ref_image(tmp_path, truth):
    with pytest.raises(SceneError, match=r"'nope' is not in the scene; valid names: view_000\.png"):
        load_scene(llff_scene(tmp_path, truth), ref_image="nope")


# ------------------------------------------------------------------------------------------ planes


def test_planes_from_reference_bounds(tmp_path, truth):
    scene = load_scene(llff_scene(tmp_path, truth))
    assert scene.planes == PlaneSpec(dmin=truth["near"][scene.ref_id], dmax=truth["far"][scene.ref_id],
                                     invz=True, offset=None, source="bounds")


def test_planes_txt_and_flags_override(tmp_path, truth):
    root = llff_scene(tmp_path, truth)
    (root / "planes.txt").write_text("1.5 20 0 64\n")
    assert load_scene(root).planes == PlaneSpec(1.5, 20.0, False, 64, "planes.txt")
    (root / "planes.txt").write_text("1.5 20\n")
    assert load_scene(root).planes == PlaneSpec(1.5, 20.0, True, None, "planes.txt")
    planes = load_scene(root, dmin=2.0, invz=False, offset=10).planes
    assert planes == PlaneSpec(2.0, 20.0, False, 10, "flags")


def test_planes_txt_with_dmin_not_below_dmax(tmp_path, truth):
    root = llff_scene(tmp_path, truth)
    (root / "planes.txt").write_text("5 5 1\n")
    with pytest.raises(SceneError, match=r"planes\.txt.*0 < dmin < dmax"):
        load_scene(root)


def test_malformed_planes_txt(tmp_path, truth):
    root = llff_scene(tmp_path, truth)
    (root / "planes.txt").write_text("near far\n")
    with pytest.raises(SceneError, match=r"planes\.txt: dmin and dmax must be numbers"):
        load_scene(root)


def test_blender_without_bounds_needs_planes(tmp_path, truth):
    write_images(tmp_path)
    write_blender(tmp_path, truth["poses"])
    with pytest.raises(SceneError, match=r"no near/far bounds.*planes\.txt"):
        load_scene(tmp_path)
    assert np.all(np.isnan(load_scene(tmp_path, dmin=1.0, dmax=9.0).near))
    (tmp_path / "planes.txt").write_text("1 9\n")
    assert load_scene(tmp_path).planes.source == "planes.txt"


# ------------------------------------------------------------------------------------------ errors


def test_missing_folder(tmp_path):
    with pytest.raises(SceneError, match=r"does not exist"):
        load_scene(tmp_path / "nowhere")


def test_folder_without_images(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(ImageError, match=r"no photos found in .*images"):
        load_scene(tmp_path)


def test_photos_without_poses(tmp_path):
    write_images(tmp_path)
    with pytest.raises(PoseError, match=r"16 photos in images/ but no camera poses.*nex prepare"):
        load_scene(tmp_path)


def test_llff_poses_without_photos(tmp_path, truth):
    (tmp_path / "images").mkdir()
    write_llff(tmp_path, truth["poses"], truth["near"], truth["far"])
    with pytest.raises(ImageError, match=r"no photos"):
        load_scene(tmp_path)


def test_too_few_images(tmp_path, truth):
    with pytest.raises(SceneError, match=r"NeX needs >= 12 photos.*only 6"):
        load_scene(llff_scene(tmp_path, truth, n=6))


def test_mixed_image_sizes(tmp_path, truth):
    root = llff_scene(tmp_path, truth)
    Image.new("RGB", (16, 12)).save(root / "images" / "view_007.png")
    with pytest.raises(ImageError, match=r"view_000\.png is 32x24 but .*view_007\.png is 16x12"):
        load_scene(root)


def test_pose_count_mismatch(tmp_path, truth):
    write_images(tmp_path, N_VIEWS)
    write_llff(tmp_path, truth["poses"][:14], truth["near"][:14], truth["far"][:14])
    with pytest.raises(PoseError, match=r"poses_bounds\.npy has 14 poses but .*images holds 16 photos"):
        load_scene(tmp_path)


def test_nan_in_poses(tmp_path, truth):
    root = llff_scene(tmp_path, truth)
    rows = np.load(root / "poses_bounds.npy")
    rows[3, 4] = np.nan
    np.save(root / "poses_bounds.npy", rows)
    with pytest.raises(PoseError, match=r"row 3 \(view_003\.png\) has a NaN or infinite pose"):
        load_scene(root)


def test_nan_in_bounds(tmp_path, truth):
    root = llff_scene(tmp_path, truth)
    rows = np.load(root / "poses_bounds.npy")
    rows[2, -1] = np.inf
    np.save(root / "poses_bounds.npy", rows)
    with pytest.raises(PoseError, match=r"row 2 \(view_002\.png\) has a NaN or infinite bounds"):
        load_scene(root)


def test_non_rigid_pose(tmp_path, truth):
    write_images(tmp_path)
    poses = [p.copy() for p in truth["poses"]]
    poses[4][:3, 0] *= 2.0
    write_blender(tmp_path, poses, truth["near"], truth["far"])
    with pytest.raises(PoseError, match=r"pose of images/view_004\.png is invalid.*not orthonormal"):
        load_scene(tmp_path)


def test_zero_byte_image(tmp_path, truth):
    root = llff_scene(tmp_path, truth)
    (root / "images" / "view_005.png").write_bytes(b"")
    with pytest.raises(ImageError, match=r"view_005\.png is empty \(0 bytes\)"):
        load_scene(root)


def test_truncated_png(tmp_path, truth):
    root = llff_scene(tmp_path, truth)
    path = root / "images" / "view_009.png"
    path.write_bytes(path.read_bytes()[:120])
    with pytest.raises(ImageError, match=r"view_009\.png cannot be decoded.*truncated"):
        load_scene(root)


def test_duplicate_names(tmp_path, truth):
    write_images(tmp_path)
    shutil.copy(tmp_path / "images" / "view_001.png", tmp_path / "images" / "view_001.jpg")
    names = names_for(N_VIEWS)
    meta_names = names + ["view_001.jpg"]
    write_blender(tmp_path, truth["poses"] + [truth["poses"][1]], list(truth["near"]) * 2,
                  list(truth["far"]) * 2, names=meta_names)
    meta = json.loads((tmp_path / "transforms.json").read_text())
    meta["frames"][-1]["file_path"] = "images/view_001.jpg"
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(SceneError, match=r"view_001\.jpg and images/view_001\.png|view_001\.png and "
                                         r"images/view_001\.jpg"):
        load_scene(tmp_path)


def test_bad_arguments(tmp_path, truth):
    root = llff_scene(tmp_path, truth)
    with pytest.raises(ConfigError, match="width"):
        load_scene(root, width=0)
    with pytest.raises(ConfigError, match="holdout"):
        load_scene(root, holdout=-1)


# ------------------------------------------------------------------------------------------ image modes


def _png16(path: Path, pixels: np.ndarray) -> None:
    """A minimal 16-bit PNG writer (pillow cannot write 16-bit RGB)."""
    h, w, c = pixels.shape
    color_type = {1: 0, 3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


def test_image_modes_load_as_rgb_float(tmp_path):
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, (6, 8), dtype=np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    rgba = rng.integers(0, 256, (6, 8, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    gray16 = rng.integers(0, 65536, (6, 8, 1), dtype=np.uint16)
    _png16(tmp_path / "gray16.png", gray16)
    rgb16 = rng.integers(0, 65536, (6, 8, 3), dtype=np.uint16)
    _png16(tmp_path / "rgb16.png", rgb16)
    palette = Image.fromarray(rng.integers(0, 4, (6, 8), dtype=np.uint8), "P")
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255] + [0] * 756)
    palette.save(tmp_path / "palette.png")

    expected = {
        "gray.png": np.repeat(gray[:, :, None] / 255.0, 3, 2),
        "rgba.png": rgba[:, :, :3] / 255.0,
        "gray16.png": np.repeat(gray16 / 65535.0, 3, 2),
        "rgb16.png": (rgb16 >> 8) / 255.0,  # pillow keeps the high byte of 16-bit RGB
        "palette.png": np.asarray(palette.convert("RGB")) / 255.0,
    }
    for name, want in expected.items():
        got = read_image(tmp_path / name)
        assert got.dtype == np.float32 and got.shape == (6, 8, 3), name
        assert 0.0 <= got.min() and got.max() <= 1.0, name
        np.testing.assert_allclose(got, want, atol=1e-6, err_msg=name)


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((6, 8, 3), dtype=np.uint8)
    pixels[0, 0] = 255  # top-left marker
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(pixels).save(tmp_path / "rotated.jpg", exif=exif, quality=100)
    assert image_size(tmp_path / "rotated.jpg") == (6, 8)
    out = read_image(tmp_path / "rotated.jpg")
    assert out.shape == (8, 6, 3)
    assert out[0, -1].mean() > 0.5 and out[0, 0].mean() < 0.5  # the marker moved to the top-right


# ------------------------------------------------------------------------------------------ misc


def test_scene_package_is_torch_free():
    code = ("import sys, nex_core.io.scene, nex_core.io.scene.colmap; "
            "assert 'torch' not in sys.modules and 'pycolmap' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


SHINY_DEMO = REPO / "data" / "scenes" / "shiny_demo"


@pytest.mark.skipif(not ((SHINY_DEMO / "poses_bounds.npy").is_file() and (SHINY_DEMO / "transforms.json").is_file()),
                    reason="data/scenes/shiny_demo (poses_bounds.npy + transforms.json) is not rendered yet")
def test_shiny_demo_llff_and_transforms_agree(tmp_path):
    for kind, files in (("llff", ["poses_bounds.npy", "hwf_cxcy.npy"]), ("blender", ["transforms.json"])):
        folder = tmp_path / kind
        folder.mkdir()
        for name in files + ["images"]:
            if (SHINY_DEMO / name).exists():
                (folder / name).symlink_to(SHINY_DEMO / name)
    llff = load_scene(tmp_path / "llff", width=64)
    blender = load_scene(tmp_path / "blender", width=64)
    assert (llff.format, blender.format) == ("llff", "blender")
    assert llff.names == blender.names
    for a, b in zip(llff.cameras, blender.cameras):
        np.testing.assert_allclose([a.fx, a.fy, a.cx, a.cy], [b.fx, b.fy, b.cx, b.cy], rtol=1e-4)
        np.testing.assert_allclose(a.c2w, b.c2w, atol=1e-4)
    np.testing.assert_allclose(llff.near, blender.near, rtol=1e-4)
    np.testing.assert_allclose(llff.far, blender.far, rtol=1e-4)
