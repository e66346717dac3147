"""The add-on's Blender-free logic (nex_core.io.addon): cameras, the rendered dataset, MPI planes and the
shader spec, checked without Blender."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.baked import write_small_baked

from nex_core.io.addon import cameras as cam_logic
from nex_core.io.addon import dataset, planes, shading_spec
from nex_core.io.baked import read_baked, read_layout
from nex_core.io.baked.reference_render import render_baked
from nex_core.io.cameras import Camera, opengl_to_opencv
from nex_core.io.errors import SceneError
from nex_core.io.scene.loader import load_cameras

REPO = Path(__file__).resolve().parents[1]
DEMO_SCENE = REPO / "data" / "scenes" / "shiny_demo"


class CameraData:
    """A stand-in for bpy.types.Camera."""

    def __init__(self, lens: float, shift_x: float, shift_y: float, sensor_fit: str = "HORIZONTAL",
                 sensor_width: float = 36.0, sensor_height: float = 24.0, type: str = "PERSP"):
        self.name, self.type, self.sensor_fit = "c", type, sensor_fit
        self.sensor_width, self.sensor_height = sensor_width, sensor_height
        self.lens, self.shift_x, self.shift_y = lens, shift_x, shift_y


# --------------------------------------------------------------------------------------------------
# cameras


def test_blender_camera_params_and_back():
    cam = Camera(200, 100, 180.0, 170.0, 96.0, 55.0, np.eye(4))
    p = cam_logic.blender_camera_params(cam)
    assert abs(p.lens / p.sensor_width - 0.9) < 1e-12 and abs(p.shift_x - 0.02) < 1e-12
    assert p.resolution == (200, 100) and p.pixel_aspect == (1.0, 180.0 / 170.0)
    data = CameraData(p.lens, p.shift_x, p.shift_y, sensor_width=p.sensor_width)
    fx, fy, cx, cy = cam_logic.intrinsics_from_blender(data, 200, 100, *p.pixel_aspect)
    assert np.allclose([fx, fy, cx, cy], [180.0, 170.0, 96.0, 55.0])


@pytest.mark.parametrize("fx, fy", [(150.0, 150.0), (150.0, 160.0), (170.0, 150.0)])
def test_round_trip_for_any_principal_point_and_pixel_aspect(fx, fy):
    rng = np.random.default_rng(int(fx + fy))
    for _ in range(5):
        w, h = int(rng.integers(40, 400)), int(rng.integers(40, 400))
        cam = Camera(w, h, fx, fy, rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h, np.eye(4))
        p = cam_logic.blender_camera_params(cam)
        assert min(p.pixel_aspect) == 1.0
        data = CameraData(p.lens, p.shift_x, p.shift_y, sensor_width=p.sensor_width)
        got = cam_logic.intrinsics_from_blender(data, w, h, *p.pixel_aspect)
        assert np.allclose(got, [cam.fx, cam.fy, cam.cx, cam.cy], rtol=1e-12, atol=1e-9)


def test_auto_sensor_fit_follows_the_longer_side():
    data = CameraData(50.0, 0.1, -0.05, sensor_fit="AUTO", sensor_width=36.0, sensor_height=36.0)
    vertical = CameraData(50.0, 0.1, -0.05, sensor_fit="VERTICAL", sensor_width=36.0, sensor_height=36.0)
    horizontal = CameraData(50.0, 0.1, -0.05, sensor_fit="HORIZONTAL", sensor_width=36.0)
    assert cam_logic.intrinsics_from_blender(data, 120, 200) == cam_logic.intrinsics_from_blender(vertical, 120, 200)
    assert cam_logic.intrinsics_from_blender(data, 200, 120) == cam_logic.intrinsics_from_blender(horizontal, 200, 120)
    fx, fy, cx, cy = cam_logic.intrinsics_from_blender(vertical, 120, 200)
    assert (fx, fy) == (50.0 / 36.0 * 200, 50.0 / 36.0 * 200) and cx == 60.0 - 0.1 * 200


def test_only_perspective_cameras():
    with pytest.raises(ValueError, match="only perspective"):
        cam_logic.intrinsics_from_blender(CameraData(50.0, 0, 0, type="ORTHO"), 10, 10)


def test_opencv_pose_drops_scale():
    rng = np.random.default_rng(2)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = q * np.sign(np.linalg.det(q)), [1.0, -2.0, 0.5]
    scaled = pose.copy()
    scaled[:3, :3] = pose[:3, :3] * np.array([2.0, 0.5, 3.0])
    assert np.allclose(cam_logic.opencv_pose(scaled.tolist()), opengl_to_opencv(pose))


def test_missing_reader(tmp_path):
    assert cam_logic.missing_reader(DEMO_SCENE) is None
    colmap = tmp_path / "colmap"
    (colmap / "sparse" / "0").mkdir(parents=True)
    (colmap / "sparse" / "0" / "cameras.txt").write_text("1 PINHOLE 10 10 5 5 5 5\n")
    assert cam_logic.missing_reader(colmap, find_spec=lambda name: None) == "pycolmap"
    assert cam_logic.missing_reader(colmap, find_spec=lambda name: object()) is None
    (tmp_path / "empty" / "images").mkdir(parents=True)
    with pytest.raises(SceneError, match="no photos found"):
        cam_logic.missing_reader(tmp_path / "empty")


# --------------------------------------------------------------------------------------------------
# dataset


def _centre_camera() -> Camera:
    c2w = np.eye(4)
    c2w[:3, 3] = [0.5, -1.0, 2.0]
    return Camera(40, 30, 36.0, 36.0, 21.0, 15.5, c2w)


def test_grid_without_jitter_is_regular():
    centre = _centre_camera()
    poses = dataset.grid_poses(centre.c2w, 4, 3, 0.6, 0.4, 0.0, 0.0, seed=0)
    assert len(poses) == 12
    offsets = np.stack([p[:3, 3] - centre.c2w[:3, 3] for p in poses])
    assert np.allclose(offsets.mean(0), 0.0)
    assert np.allclose(offsets[1] - offsets[0], [0.2, 0.0, 0.0]) and np.allclose(offsets[4] - offsets[0], [0, 0.2, 0])
    assert all(np.allclose(p[:3, :3], centre.c2w[:3, :3]) for p in poses)


def test_grid_jitter_is_seeded_and_small():
    centre = _centre_camera()
    a = dataset.grid_poses(centre.c2w, 3, 2, 0.6, 0.3, 0.2, 2.0, seed=5)
    b = dataset.grid_poses(centre.c2w, 3, 2, 0.6, 0.3, 0.2, 2.0, seed=5)
    c = dataset.grid_poses(centre.c2w, 3, 2, 0.6, 0.3, 0.2, 2.0, seed=6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and not np.array_equal(a[0], c[0])
    regular = dataset.grid_poses(centre.c2w, 3, 2, 0.6, 0.3, 0.0, 0.0, seed=5)
    for p, q in zip(a, regular):
        assert np.all(np.abs(p[:3, 3] - q[:3, 3]) <= 0.2 * 0.3 + 1e-12)
        angle = np.degrees(np.arccos(np.clip((np.trace(p[:3, :3].T @ q[:3, :3]) - 1) / 2, -1, 1)))
        assert 0 < angle <= 2.0 * np.sqrt(2.25) + 1e-9
        assert np.allclose(p[:3, :3] @ p[:3, :3].T, np.eye(3))


def test_grid_spans():
    assert dataset.grid_spans(5, 4, 1.2) == (1.2, 1.2 * 3 / 4)
    assert dataset.grid_spans(5, 4, 0.0, median_depth=4.0) == (0.15 * 4.0, 0.15 * 4.0 * 3 / 4)
    assert dataset.grid_spans(3, 1, 0.6) == (0.6, 0.0)
    assert dataset.grid_spans(1, 3, 0.6) == (0.6, 1.2)


def test_bounds_rays_and_depths():
    cam = _centre_camera()
    origin, dirs = dataset.bounds_rays(cam, (4, 3))
    assert np.array_equal(origin, cam.c2w[:3, 3]) and len(dirs) == 12
    assert np.allclose(np.linalg.norm(dirs, axis=1), 1.0)
    # Each ray goes through its pixel centre: first row, first column is pixel (5, 5).
    hit = origin + 3.0 * dirs[0] / dirs[0][2]
    assert np.allclose(cam.project(hit[None]), [[5.0, 5.0]])
    assert dataset.z_depth(cam, hit) == pytest.approx(3.0)
    assert dataset.view_bounds(np.array([2.0, 5.0, 3.0]), 0) == (0.9 * 2.0, 1.1 * 5.0)
    assert dataset.view_bounds(np.array([2.0, 5.0]), 3) == (0.9 * 2.0, 1.1 * 5.0 * 2.0)


def _write_dataset(out: Path, cam: Camera, n: int = 12):
    (out / "images").mkdir(parents=True)
    poses = dataset.grid_poses(cam.c2w, 4, 3, 0.6, 0.45, 0.2, 1.5, seed=1)[:n]
    names = []
    for i in range(n):
        Image.new("RGB", (cam.width, cam.height), (i * 10, 80, 120)).save(out / "images" / f"view_{i:03d}.png")
        names.append(f"images/view_{i:03d}.png")
    bounds = [(1.0 + 0.01 * i, 8.0 + 0.1 * i) for i in range(n)]
    dataset.write_dataset_files(out, names, poses, bounds, (cam.fx, cam.fy, cam.cx, cam.cy),
                                (cam.width, cam.height))
    return names, poses, bounds


def test_dataset_files_read_back_as_both_formats(tmp_path):
    cam = _centre_camera()
    names, poses, bounds = _write_dataset(tmp_path / "ds", cam)
    assert (tmp_path / "ds" / "hwf_cxcy.npy").is_file()  # the principal point is off-centre
    llff = load_cameras(tmp_path / "ds", holdout=0)
    assert llff.format == "llff" and llff.names == names
    (tmp_path / "nerf").mkdir()
    (tmp_path / "nerf" / "transforms.json").write_text((tmp_path / "ds" / "transforms.json").read_text())
    (tmp_path / "nerf" / "images").symlink_to(tmp_path / "ds" / "images")
    nerf = load_cameras(tmp_path / "nerf", holdout=0)
    assert nerf.format == "blender"
    for views in (llff, nerf):
        for got, want in zip(views.cameras, poses):
            assert np.allclose(got.c2w, want, atol=1e-9)
            assert np.allclose([got.fx, got.fy, got.cx, got.cy], [cam.fx, cam.fy, cam.cx, cam.cy])
        assert np.allclose(views.near, [b[0] for b in bounds]) and np.allclose(views.far, [b[1] for b in bounds])


def test_centred_square_pixels_need_no_intrinsics_file(tmp_path):
    cam = Camera(40, 30, 36.0, 36.0, 20.0, 15.0, np.eye(4))
    _write_dataset(tmp_path / "ds", cam)
    assert not (tmp_path / "ds" / "hwf_cxcy.npy").is_file()
    doc = json.loads((tmp_path / "ds" / "transforms.json").read_text())
    assert doc["w"] == 40 and doc["h"] == 30 and len(doc["frames"]) == 12


# --------------------------------------------------------------------------------------------------
# planes and the shader spec


@pytest.fixture(params=[16, 64], ids=["atlas-per-plane", "shared-atlas"])
def layout(request, tmp_path):
    return read_layout(write_small_baked(tmp_path / "baked", max_texture=request.param))


def test_plane_rectangles_cover_the_mpi_texels(layout):
    info = layout.info
    for depth in info.depths:
        x0, x1, y0, y1 = planes.plane_rectangle(info, depth)
        assert np.allclose([x0 / depth * info.fx + info.cx, x1 / depth * info.fx + info.cx],
                           [-info.offset, info.width + info.offset])
        assert np.allclose([y0 / depth * info.fy + info.cy, y1 / depth * info.fy + info.cy],
                           [-info.offset, info.height + info.offset])
        centre, verts, uvs = planes.plane_mesh_data(info, depth)
        corners = centre + verts
        assert np.allclose(corners[:, 2], -depth) and np.allclose(verts.mean(0), 0.0)
        # u grows to the right (+x), v upwards (+y in Blender axes): bottom-left corner first.
        assert np.allclose(corners[0, :2], [x0, -y1]) and np.allclose(corners[2, :2], [x1, -y0])
        assert np.array_equal(uvs, [[0, 0], [1, 0], [1, 1], [0, 1]])


def test_materials_are_shared_per_layer_and_alpha_atlas(layout):
    info = layout.info
    keys = [planes.material_key(layout, j) for j in range(info.n_planes)]
    assert [k[0] for k in keys] == [j // info.sublayers for j in range(info.n_planes)]
    assert [k[1] for k in keys] == [t.texture for t in layout.tiles["alpha"]]
    for j, tile in enumerate(layout.tiles["alpha"]):
        spec = layout.textures[tile.texture]
        assert planes.plane_attributes(layout, j) == {
            "nex_a": [tile.x / spec.width, 1.0 - tile.y / spec.height, 0.0]}


def test_reference_opacity_matches_the_reference_renderer(layout):
    used = planes.opacity_atlases(layout)
    assert used == sorted({t.texture for t in layout.tiles["alpha"]})
    alpha = {i: np.asarray(Image.open(layout.path(layout.textures[i])), np.float32) / 255.0 for i in used}
    baked = read_baked(layout.root)
    want = render_baked(baked, baked.info.ref_camera())[..., 3].mean()
    assert abs(planes.reference_opacity(layout, alpha) - want) < 1e-3


def test_large_mpis_are_not_measured(layout, monkeypatch):
    monkeypatch.setattr(planes, "OPACITY_BUDGET", 10)
    assert planes.opacity_atlases(layout) is None


def test_reference_camera_and_view_transform(layout):
    info = layout.info
    assert json.loads(planes.reference_camera_json(info)) == {
        "width": info.width, "height": info.height, "fx": info.fx, "fy": info.fy, "cx": info.cx, "cy": info.cy}
    assert (planes.faithful_view_transform(True), planes.faithful_view_transform(False)) == ("Standard", "Raw")


def test_shader_spec_of_each_layer(layout):
    info = layout.info
    images = {i: f"img {t.file}" for i, t in enumerate(layout.textures)}
    for j in range(0, info.n_planes, info.sublayers):
        key = planes.material_key(layout, j)
        spec = shading_spec.shader_spec(layout, key, images, view_dependent=False, filtering="LINEAR")
        layer = key[0]
        assert spec.d0 == info.depths[layer * info.sublayers] and spec.n_basis == info.n_basis
        assert spec.alpha.image == images[key[1]]
        k0 = layout.tiles["k0"][layer]
        assert spec.k0.image == images[k0.texture] and spec.k0_tile == (k0.x, k0.y)
        assert len(spec.coeffs) == len(spec.coeff_tiles) == info.n_basis
        assert len(spec.lut_tiles) == len(layout.tiles["basis"])
        assert (spec.view_dependent, spec.linear_output, spec.filtering) == (False, True, "LINEAR")
        assert shading_spec.ShaderSpec.from_json(spec.to_json()) == spec


def test_tile_offsets_and_node_positions():
    assert shading_spec.tile_offset(0, 0, 64, 32) == (0.0, 1.0, 0.0)
    assert shading_spec.tile_offset(16, 8, 64, 32) == (0.25, 0.75, 0.0)
    assert shading_spec.node_positions([0, 1, 0, 2, 1]) == [(0.0, 0.0), (220.0, 0.0), (0.0, -180.0), (440.0, 0.0),
                                                           (220.0, -180.0)]


# --------------------------------------------------------------------------------------------------
# colour: the import's advice for the MPI's compositing space


def test_colour_mode_advice_for_each_space_and_mode():
    from nex_core.io.addon import colour

    assert colour.colour_mode_advice("linear", True, 0.3) is None  # exact: no advice, however transparent
    assert "Scene-Linear Colour is off" in colour.colour_mode_advice("linear", False, 0.99)
    assert "--compositing linear" in colour.colour_mode_advice("srgb", True, 0.5)
    assert colour.colour_mode_advice("srgb", True, 0.95) is None  # opaque: the two spaces agree
    assert colour.colour_mode_advice("srgb", True, None) is None  # opacity unknown (a huge MPI)
    assert colour.colour_mode_advice("srgb", False, 0.2) is None  # Raw + display values: exact
    assert colour.exact_in_blender("linear", True) and colour.exact_in_blender("srgb", False)
    assert not colour.exact_in_blender("linear", False) and not colour.exact_in_blender("srgb", True)


def test_exact_render_settings_cover_both_engines():
    from nex_core.io.addon import colour

    settings = colour.exact_render_settings(n_planes=32, bounce_margin=8)
    by_path = {s.path: s for s in settings}
    assert by_path["cycles.filter_width"].value == 0.01
    assert by_path["cycles.transparent_max_bounces"].value == 40
    assert by_path["cycles.min_transparent_bounces"].value == 32
    assert by_path["render.filter_size"].engine == "EEVEE" and by_path["render.filter_size"].value == 0.0
    assert by_path["cycles.use_denoising"].value is False
    text = colour.describe_settings(settings)
    assert text.count("\n") == len(settings) - 1 and "Cycles: cycles.filter_width = 0.01" in text
