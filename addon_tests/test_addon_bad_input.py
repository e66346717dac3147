"""Import Cameras and Import MPI on bad input: the operator reports the clear nex_core message (in background
mode Blender turns an ERROR report into the RuntimeError that bpy.ops raises), creates nothing, and Blender
keeps working (the next, valid import succeeds)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from addon_helpers import DEMO_SCENE

DATA_KINDS = ("objects", "collections", "images", "materials", "meshes", "cameras", "node_groups")


def _data_blocks(bpy) -> set[tuple[str, str]]:
    return {(kind, block.name) for kind in DATA_KINDS for block in getattr(bpy.data, kind)}


def _refused(bpy, op, match: str, **kwargs) -> None:
    """Call the operator, expect its error report to match, and check that it created nothing."""
    before = _data_blocks(bpy)
    with pytest.raises(RuntimeError, match=match):
        op(**kwargs)
    assert _data_blocks(bpy) == before, f"left behind: {sorted(_data_blocks(bpy) - before)}"


def _small_baked(dest: Path) -> Path:
    """A valid 2 x 2-plane baked MPI of 10 x 8 texels."""
    from nex_core.io.baked import BakedMPI, MPIInfo, write_baked

    rng = np.random.default_rng(0)
    c2w = np.eye(4)
    c2w[:3, 3] = (0.0, 0.0, -1.0)
    info = MPIInfo(width=8, height=6, fx=8.0, fy=8.0, cx=4.0, cy=3.0, offset=1, depths=(1.0, 2.0, 3.0, 4.0),
                   layers=2, sublayers=2, n_basis=4, basis_kind="learned", lut_width=4, lut_height=3,
                   lut_vx=(-0.5, 0.5), lut_vy=(-0.5, 0.5), ref_c2w=c2w)
    h, w = info.mpi_height, info.mpi_width
    baked = BakedMPI(info, rng.uniform(0.2, 0.8, (4, h, w)).astype(np.float32),
                     rng.uniform(0, 1, (2, h, w, 3)).astype(np.float32),
                     rng.uniform(-0.1, 0.1, (2, h, w, 3, 4)).astype(np.float32),
                     rng.uniform(-1, 1, (4, 3, 4)).astype(np.float32))
    return write_baked(baked, dest, max_texture=64, compress_level=1)


def _edit_manifest(baked: Path, edit) -> None:
    raw = json.loads((baked / "mpi.json").read_text())
    edit(raw)
    (baked / "mpi.json").write_text(json.dumps(raw))


def test_cameras_from_a_missing_folder(scene, bpy_module, tmp_path):
    bpy = bpy_module
    _refused(bpy, bpy.ops.nex.import_cameras, r"no_such_scene does not exist: check the path",
             directory=str(tmp_path / "no_such_scene"))
    assert bpy.ops.nex.import_cameras(directory=str(DEMO_SCENE), background_images=False) == {"FINISHED"}
    assert len([o for o in scene.objects if o.type == "CAMERA"]) == 20


def test_cameras_with_nan_poses(scene, bpy_module, tmp_path):
    bpy = bpy_module
    root = tmp_path / "scène ü"
    shutil.copytree(DEMO_SCENE, root)
    poses = np.load(root / "poses_bounds.npy")
    poses[3, 5] = np.nan
    np.save(root / "poses_bounds.npy", poses)
    _refused(bpy, bpy.ops.nex.import_cameras, r"poses_bounds.npy: row 3 \(view_003.png\) has a NaN.*nex prepare",
             directory=str(root))
    assert not [o for o in scene.objects if o.type == "CAMERA"]


def test_cameras_with_a_broken_transforms_file(scene, bpy_module, tmp_path):
    bpy = bpy_module
    root = tmp_path / "blender_scene"
    shutil.copytree(DEMO_SCENE / "images", root / "images")
    doc = json.loads((DEMO_SCENE / "transforms.json").read_text())
    doc["w"] = float("nan")
    (root / "transforms.json").write_text(json.dumps(doc))
    _refused(bpy, bpy.ops.nex.import_cameras, r'transforms.json: frame 0 has an invalid "w"', directory=str(root))


def test_mpi_of_an_unknown_version(scene, bpy_module, tmp_path):
    bpy = bpy_module
    baked = _small_baked(tmp_path / "baked")
    _edit_manifest(baked, lambda raw: raw.update(version=7))
    _refused(bpy, bpy.ops.nex.import_mpi, r"version 7 is not supported.*bake the run again", directory=str(baked))


def test_mpi_with_an_escaping_texture_path(scene, bpy_module, tmp_path):
    bpy = bpy_module
    baked = _small_baked(tmp_path / "baked")
    shutil.copy(baked / "alpha_00.png", tmp_path / "x.png")
    _edit_manifest(baked, lambda raw: raw["textures"][0].update(file="../x.png"))
    _refused(bpy, bpy.ops.nex.import_mpi, r"'../x.png' escapes the baked directory", directory=str(baked))


def test_mpi_with_a_damaged_texture_then_a_good_one(scene, bpy_module, tmp_path):
    bpy = bpy_module
    baked = _small_baked(tmp_path / "baked")
    data = (baked / "k0_00.png").read_bytes()
    (baked / "k0_00.png").write_bytes(data[:len(data) // 2])
    _refused(bpy, bpy.ops.nex.import_mpi, r"k0_00.png is damaged.*nex bake", directory=str(baked))
    good = _small_baked(tmp_path / "good" / "baked")
    assert bpy.ops.nex.import_mpi(directory=str(good)) == {"FINISHED"}
    assert len([o for o in scene.objects if "nex_mpi_plane" in o.keys()]) == 4
