"""Bounded fuzzing of the file readers with hypothesis.

Property, for every reader: any input either loads into a valid object or raises a NexError subclass
(never a KeyError, TypeError, ValueError, IndexError, ZeroDivisionError ...), within seconds and without
allocating more than a few hundred MB. Inputs: poses_bounds.npy / hwf_cxcy.npy arrays of random shapes
and values (NaN and infinities included) and mutated .npy bytes; random and mutated transforms.json;
random planes.txt; mutated mpi.json (fields deleted, replaced, retyped) and random or damaged PNG bytes.
"""

from __future__ import annotations

import copy
import io
import json
import math
import random
import shutil
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from support.baked import write_small_baked

from nex_core.io.baked import read_baked, read_layout
from nex_core.io.errors import NexError
from nex_core.io.scene.loader import load_cameras, load_scene

N_VIEWS, W, H = 3, 8, 6
MAX_MB = 256
MAX_SECONDS = 5.0
FUZZ = settings(max_examples=120, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def loads_or_refuses(call: Callable[[], Any]) -> Any:
    """``call()``'s result, or None if it raised a NexError; anything else propagates. Checks time and memory."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        try:
            result = call()
        except NexError:
            result = None
        peak = tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - start
    assert peak < MAX_MB, f"allocated {peak:.0f} MB"
    assert elapsed < MAX_SECONDS, f"took {elapsed:.1f} s"
    return result


# --------------------------------------------------------------------------------------------------
# Strategies


KEYS = ("frames", "file_path", "transform_matrix", "camera_angle_x", "camera_angle_y", "fl_x", "fl_y", "cx",
        "cy", "w", "h", "near", "far", "k1", "p1")
scalars = (st.none() | st.booleans() | st.integers() | st.just(10 ** 400) | st.just(-(10 ** 400))
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=5),
                           max_leaves=24)
float_elements = st.floats(allow_nan=True, allow_infinity=True, width=64)
# Values that break careless readers: non-finite and huge numbers, zero, wrong types, empty containers.
NASTY_NUMBERS = (math.nan, math.inf, -math.inf, 0, -1, 10 ** 400, 1e308, 2 ** 63)
NASTY_OTHERS = ("", "nan", "1", "../x.png", "/", "\x00", True, None, [], {}, [[]], {"a": 1})
OPS = ("delete", "replace", "retype", "nasty", "nasty")


def node_paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """The path (keys and indices) of every node of a JSON document, the root included."""
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += node_paths(value, prefix + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += node_paths(value, prefix + (i,))
    return out


def retyped(value: Any, how: int) -> Any:
    """The value as another JSON type."""
    if how == 0:
        return str(value)
    if how == 1:
        return [value]
    if how == 2:
        return {"value": value}
    if how == 3:
        return list(value.values()) if isinstance(value, dict) else None
    return -value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def mutate(doc: Any, data: st.DataObject, skip_inside: tuple[str, ...] = ()) -> Any:
    """Delete, replace or retype one node of ``doc`` below the root (a deep copy is changed and returned).

    Nodes inside fields named in ``skip_inside`` (big matrices and lists) are left alone unless a coin
    says otherwise, so that the other fields get their share of mutations.
    """
    doc = copy.deepcopy(doc)
    deep = data.draw(st.booleans())
    paths = [p for p in node_paths(doc) if p and (deep or not set(skip_inside) & set(p[:-1]))]
    if not paths:
        return data.draw(json_values)
    rnd = random.Random(data.draw(st.integers(0, 2 ** 32)))  # uniform: hypothesis favours the first choices
    path, op = rnd.choice(paths), rnd.choice(OPS)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if op == "delete":
        del parent[key]
    elif op == "replace":
        parent[key] = data.draw(json_values)
    elif op == "retype":
        parent[key] = retyped(parent[key], rnd.randrange(5))
    else:
        parent[key] = copy.deepcopy(rnd.choice(NASTY_NUMBERS if rnd.random() < 0.6 else NASTY_OTHERS))
    return doc


def mutated_bytes(data: st.DataObject, blob: bytes) -> bytes:
    """``blob`` truncated, with bytes overwritten, or with bytes inserted."""
    out = bytearray(blob)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["truncate", "overwrite", "insert"]))
        at = data.draw(st.integers(0, max(0, len(out) - 1)))
        if op == "truncate":
            del out[at:]
        elif op == "overwrite":
            chunk = data.draw(st.binary(min_size=1, max_size=8))
            out[at:at + len(chunk)] = chunk
        else:
            out[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    return bytes(out)


# --------------------------------------------------------------------------------------------------
# Scenes


def valid_rows(n: int = N_VIEWS) -> np.ndarray:
    """LLFF rows of ``n`` cameras side by side looking down +z (OpenCV), photos W x H, focal 8."""
    rows = []
    for i in range(n):
        pose = np.array([[0.0, 1.0, 0.0, 0.2 * i], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0]])  # down, right, back
        hwf = np.array([[H], [W], [8.0]])
        rows.append(np.concatenate([np.hstack([pose, hwf]).ravel(), [1.0, 10.0]]))
    return np.array(rows)


def valid_transforms(n: int = N_VIEWS) -> dict:
    frames = [{"file_path": f"images/v_{i}", "transform_matrix": np.diag([1.0, -1.0, -1.0, 1.0]).tolist(),
               "near": 1.0, "far": 10.0} for i in range(n)]
    for i, frame in enumerate(frames):
        frame["transform_matrix"][0][3] = 0.2 * i
    frames[1]["fl_x"] = 8.5
    return {"camera_angle_x": 0.9, "camera_angle_y": 0.7, "fl_y": 8.0, "cx": 4.0, "cy": 3.0, "w": W, "h": H,
            "k1": 0.0, "frames": frames}


@pytest.fixture(scope="module")
def scene_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz_scene")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_VIEWS):
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(root / "images" / f"v_{i}.png")
    return root


def reset(root: Path) -> None:
    """Remove every pose and planes file from the scene."""
    for name in ("poses_bounds.npy", "hwf_cxcy.npy", "transforms.json", "planes.txt"):
        (root / name).unlink(missing_ok=True)


def check_scene(scene) -> None:
    assert scene.images.dtype == np.float32 and scene.images.ndim == 4 and scene.images.shape[-1] == 3
    assert np.all(np.isfinite(scene.images)) and scene.images.min() >= 0.0 and scene.images.max() <= 1.0
    assert len(scene.cameras) == len(scene.names) == scene.images.shape[0]
    for cam in scene.cameras:
        assert cam.width > 0 and cam.height > 0 and cam.fx > 0 and cam.fy > 0
        assert np.all(np.isfinite(cam.c2w)) and math.isfinite(cam.cx) and math.isfinite(cam.cy)
    p = scene.planes
    assert math.isfinite(p.dmin) and math.isfinite(p.dmax) and 0 < p.dmin < p.dmax


def load_both(root: Path) -> None:
    scene = loads_or_refuses(lambda: load_scene(root, holdout=0, min_images=1))
    if scene is not None:
        check_scene(scene)
    loads_or_refuses(lambda: load_cameras(root, holdout=0, min_images=1))


def arrays(max_dims: int = 3, max_side: int = 20, likely: tuple = ()):
    """float64 arrays of random shapes, or often of one of the ``likely`` shapes."""
    shapes = hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side)
    if likely:
        shapes = st.sampled_from(likely) | shapes
    return hnp.arrays(np.float64, shapes, elements=float_elements)


@FUZZ
@given(poses=arrays(likely=((N_VIEWS, 17), (N_VIEWS, 14), (1, 17), (0, 17))),
       hwf=st.none() | arrays(max_dims=2, max_side=7, likely=((6, 1), (5,), (6,))))
def test_random_llff_arrays(scene_root, poses, hwf):
    reset(scene_root)
    np.save(scene_root / "poses_bounds.npy", poses)
    if hwf is not None:
        np.save(scene_root / "hwf_cxcy.npy", hwf)
    load_both(scene_root)


@FUZZ
@given(data=st.data(), with_hwf=st.booleans())
def test_perturbed_llff_rows(scene_root, data, with_hwf):
    reset(scene_root)
    rows = valid_rows()
    if with_hwf:
        rows = np.concatenate([rows[:, :12], rows[:, -2:]], 1)
        hwf = np.array([H, W, 8.0, 8.0, W / 2, H / 2])
        for _ in range(data.draw(st.integers(0, 2))):
            hwf[data.draw(st.integers(0, 5))] = data.draw(float_elements)
        np.save(scene_root / "hwf_cxcy.npy", hwf.reshape(6, 1))
    for _ in range(data.draw(st.integers(1, 4))):
        rows[data.draw(st.integers(0, rows.shape[0] - 1)), data.draw(st.integers(0, rows.shape[1] - 1))] = \
            data.draw(float_elements)
    np.save(scene_root / "poses_bounds.npy", rows)
    load_both(scene_root)


@FUZZ
@given(data=st.data())
def test_mutated_npy_bytes(scene_root, data):
    reset(scene_root)
    buffer = io.BytesIO()
    np.save(buffer, valid_rows())
    (scene_root / "poses_bounds.npy").write_bytes(mutated_bytes(data, buffer.getvalue()))
    load_both(scene_root)


file_paths = st.sampled_from(["images/v_0", "images/v_1.png", "./images/v_2", "images", "/", ""]) | json_values
camera_keys = {key: json_values for key in KEYS[2:]}
frames = st.fixed_dictionaries({"file_path": file_paths}, optional=camera_keys)
frames_docs = st.fixed_dictionaries({"frames": st.lists(frames, min_size=1, max_size=4)}, optional=camera_keys)


@FUZZ
@given(doc=json_values | frames_docs)
def test_random_transforms_json(scene_root, doc):
    reset(scene_root)
    (scene_root / "transforms.json").write_text(json.dumps(doc), encoding="utf-8")
    load_both(scene_root)


@settings(FUZZ, max_examples=400)
@given(data=st.data())
def test_mutated_transforms_json(scene_root, data):
    reset(scene_root)
    doc = valid_transforms()
    for _ in range(data.draw(st.integers(1, 3))):
        doc = mutate(doc, data, skip_inside=("transform_matrix",))
    (scene_root / "transforms.json").write_text(json.dumps(doc), encoding="utf-8")
    load_both(scene_root)


@FUZZ
@given(text=st.text(max_size=60) | st.lists(st.sampled_from(
    ["1", "0", "-1", "2.5", "40", "1e400", "nan", "inf", "-inf", "true", "x", "#", ",", "\n", "1_0", "0x10"]),
    max_size=8).map(" ".join) | st.binary(max_size=40).map(lambda b: b.decode("latin-1")))
def test_random_planes_txt(scene_root, text):
    reset(scene_root)
    np.save(scene_root / "poses_bounds.npy", valid_rows())
    (scene_root / "planes.txt").write_text(text, encoding="utf-8", errors="surrogateescape")
    load_both(scene_root)


# --------------------------------------------------------------------------------------------------
# The baked reader


@pytest.fixture(scope="module")
def baked_dir(tmp_path_factory) -> Path:
    return write_small_baked(tmp_path_factory.mktemp("fuzz_baked") / "baked", seed=1, max_texture=16)


@pytest.fixture(scope="module")
def work(baked_dir) -> Path:
    """A copy of the baked MPI that tests damage; :func:`restore` undoes the damage."""
    out = baked_dir.parent / "work"
    shutil.copytree(baked_dir, out)
    return out


def restore(work: Path, baked_dir: Path) -> None:
    for original in baked_dir.iterdir():
        copy_ = work / original.name
        if not copy_.is_file() or copy_.read_bytes() != original.read_bytes():
            shutil.copyfile(original, copy_)


def read_both(work: Path) -> None:
    loads_or_refuses(lambda: read_layout(work))
    baked = loads_or_refuses(lambda: read_baked(work))
    if baked is not None:
        baked.check()
        for name in ("alpha", "k0", "coeffs", "basis_lut"):
            assert np.all(np.isfinite(getattr(baked, name))), name


def drop_checksums(manifest: dict) -> None:
    for tex in manifest.get("textures", []):
        if isinstance(tex, dict):
            tex.pop("sha256", None)


@settings(FUZZ, max_examples=700)
@given(data=st.data())
def test_mutated_mpi_json(baked_dir, work, data):
    restore(work, baked_dir)
    manifest = json.loads((work / "mpi.json").read_text(encoding="utf-8"))
    for _ in range(data.draw(st.integers(1, 3))):
        manifest = mutate(manifest, data, skip_inside=("tiles", "textures", "conventions", "encoding", "c2w_blender"))
    (work / "mpi.json").write_text(json.dumps(manifest), encoding="utf-8")
    read_both(work)


@FUZZ
@given(data=st.data(), checksums=st.booleans(), random=st.booleans())
def test_random_and_damaged_pngs(baked_dir, work, data, checksums, random):
    restore(work, baked_dir)
    if not checksums:  # a bake from before the checksums: the PNG decoder sees the damage
        manifest = json.loads((work / "mpi.json").read_text(encoding="utf-8"))
        drop_checksums(manifest)
        (work / "mpi.json").write_text(json.dumps(manifest), encoding="utf-8")
    target = work / data.draw(st.sampled_from(sorted(p.name for p in work.glob("*.png"))))
    blob = data.draw(st.binary(max_size=400)) if random else mutated_bytes(data, target.read_bytes())
    target.write_bytes(blob)
    read_both(work)
