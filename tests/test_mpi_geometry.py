"""The one MPI geometry: its derived sizes, the checkpoint fingerprint and mpi.json that depend on its
fields, and the baked format's info built on it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields

import numpy as np
import pytest
from support.baked import random_baked

from nex_core.io import config as config_mod
from nex_core.io.baked import MPIInfo, read_layout, write_baked
from nex_core.io.cameras import Camera
from nex_core.io.mpi_geometry import MPIGeometry, plane_depths
from nex_core.runtime.checkpoint import fingerprint
from nex_core.runtime.setup import model_settings

# 1 / linspace(1, 1/4, 6), rounded to 6 places
DEPTHS = [1.0, 1.176471, 1.428571, 1.818182, 2.5, 4.0]


@pytest.fixture
def geom() -> MPIGeometry:
    ref = Camera(40, 30, 40.0, 41.0, 20.0, 15.5, np.eye(4))
    return MPIGeometry.from_camera(ref, 6, plane_depths(1.0, 4.0, 6, invz=True))


def info_for(geom: MPIGeometry) -> MPIInfo:
    return MPIInfo.from_geometry(geom, layers=3, sublayers=2, n_basis=2, basis_kind="learned", lut_width=3,
                                 lut_height=2, lut_vx=(-0.5, 0.5), lut_vy=(-0.4, 0.4), ref_c2w=np.eye(4))


def test_sizes_and_values(geom):
    assert (geom.width, geom.height, geom.offset, geom.n_planes) == (40, 30, 6, 6)
    assert (geom.mpi_width, geom.mpi_height) == (52, 42)
    assert all(type(d) is float for d in geom.depths)
    np.testing.assert_allclose(geom.depths, DEPTHS, atol=1e-6)


def test_checkpoint_fingerprint_is_a_hash_of_the_geometry_fields(geom):
    cfg = config_mod.preset("tiny")
    cfg.model.layers, cfg.model.sublayers = 3, 2
    # The settings a checkpoint records, written out from the geometry's values (ints stay ints in JSON).
    expected = {"model": config_mod.to_dict(cfg)["model"], "mpi": [40, 30, 6, 6, DEPTHS]}
    blob = json.dumps(expected, sort_keys=True).encode()
    assert fingerprint(model_settings(cfg, geom)) == hashlib.sha256(blob).hexdigest()[:16]
    # A baked info is a geometry too: the same settings.
    assert fingerprint(model_settings(cfg, info_for(geom))) == fingerprint(model_settings(cfg, geom))


def test_info_is_the_geometry_plus_the_format_fields(geom):
    info = info_for(geom)
    assert isinstance(info, MPIGeometry)
    assert {f.name: getattr(info, f.name) for f in fields(MPIGeometry)} == \
        {f.name: getattr(geom, f.name) for f in fields(MPIGeometry)}
    assert (info.mpi_width, info.mpi_height, info.n_planes) == (geom.mpi_width, geom.mpi_height, 6)
    assert info.ref_camera().K.tolist() == [[40.0, 0.0, 20.0], [0.0, 41.0, 15.5], [0.0, 0.0, 1.0]]


def test_mpi_json_holds_the_geometry_fields(geom, tmp_path):
    info = info_for(geom)
    baked = random_baked(info, np.random.default_rng(0))
    out = write_baked(baked, tmp_path / "baked", max_texture=256, compress_level=1)
    raw = json.loads((out / "mpi.json").read_text())
    cam = {k: v for k, v in raw["reference_camera"].items() if not k.startswith("c2w")}
    assert cam == {"width": 40, "height": 30, "fx": 40.0, "fy": 41.0, "cx": 20.0, "cy": 15.5}
    assert {k: raw["mpi"][k] for k in ("width", "height", "offset", "planes")} == \
        {"width": 52, "height": 42, "offset": 6, "planes": 6}
    assert raw["mpi"]["depths"] == list(geom.depths)
    read = read_layout(out).info
    assert {f.name: getattr(read, f.name) for f in fields(MPIGeometry)} == \
        {f.name: getattr(geom, f.name) for f in fields(MPIGeometry)}
