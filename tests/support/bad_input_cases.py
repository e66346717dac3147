"""The bad-input cases: every entry point, as a table (:data:`CASES`), and how one case is run.

Each case builds its input in a fresh folder (small real data: copies of the shipped scene, tiny images
written with Pillow, a tiny baked MPI), calls one entry point, and expects either the *exact* (most
specific) :mod:`nex_core.io.errors` class with a message naming the offending file and saying what to do,
or -- for input that is valid after all -- a correct result. A failed call must leave nothing behind
but the logs its entry point always writes: the case folder is compared before and after, so no partial
``baked/``, ``.glb``, scene or checkpoint appears and earlier results stay byte for byte the same.

``tests/test_bad_input.py`` checks each case; ``tools/bad_input_table.py`` prints them as a markdown table.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import signal
import struct
import tracemalloc
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from nex_core.io.errors import (CheckpointError, ConfigError, DamagedCheckpointError, FormatError, ImageError,
                                NexError, PoseError, SceneError)

from .baked import write_small_baked

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "data" / "scenes" / "shiny_demo"
N_DEMO, DEMO_W, DEMO_H = 20, 160, 120

Call = Callable[[], Any]


@dataclass(frozen=True)
class Case:
    """One bad (or surprising but valid) input and what must happen to it."""

    id: str
    entry: str  # the entry point, as a user meets it
    wrong: str  # what is wrong with the input
    setup: Callable[[Path], Call]  # builds the input under a fresh folder; returns the call to make
    error: type[NexError] | None  # the exact class expected; None: the input must be accepted
    needles: tuple[str, ...] = ()  # substrings the message must contain (file name, fix hint)
    accept: Callable[[Any, Path], None] | None = None  # checks the result of an accepted input
    accepted: str = ""  # how the table describes an accepted input
    may_write: tuple[str, ...] = ()  # globs (relative to the folder) a failing call may still write: its log
    max_alloc_mb: float | None = None  # Python/numpy allocations the call may make at most


@dataclass
class Outcome:
    value: Any
    error: NexError | None
    changes: list[str]  # files the call created, changed or removed (outside ``may_write``)
    peak_mb: float | None


# --------------------------------------------------------------------------------------------------
# Running a case


def snapshot(root: Path) -> dict[str, str]:
    """relative path -> content hash ("dir", or the target of a symbolic link) of everything in ``root``."""
    out: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def changed_paths(before: dict[str, str], after: dict[str, str], allowed: tuple[str, ...]) -> list[str]:
    diff = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    return sorted(k for k in diff if not any(fnmatch.fnmatch(k, pattern) for pattern in allowed))


def _measured(call: Call, measure: bool) -> tuple[Any, NexError | None, float | None]:
    """(result, NexError raised, peak MB traced while calling if ``measure``)."""
    if measure:
        tracemalloc.start()
    try:
        try:
            value, error = call(), None
        except NexError as exc:
            value, error = None, exc
        peak = tracemalloc.get_traced_memory()[1] / 1e6 if measure else None
    finally:
        if measure:
            tracemalloc.stop()
    return value, error, peak


def run_case(case: Case, folder: Path) -> Outcome:
    """Set the case up in ``folder`` and call its entry point; other exceptions than NexError propagate."""
    call = case.setup(folder)
    before = snapshot(folder)
    value, error, peak = _measured(call, case.max_alloc_mb is not None)
    changes = changed_paths(before, snapshot(folder), case.may_write) if error is not None else []
    return Outcome(value, error, changes, peak)


# --------------------------------------------------------------------------------------------------
# Building inputs


def demo_copy(folder: Path, name: str = "scene", llff: bool = True) -> Path:
    """The shipped scene copied to ``folder/name``; without poses_bounds.npy it loads from transforms.json."""
    root = folder / name
    shutil.copytree(DEMO, root)
    if not llff:
        (root / "poses_bounds.npy").unlink()
    return root


def demo_pixels(index: int) -> np.ndarray:
    return np.asarray(Image.open(DEMO / "images" / f"view_{index:03d}.png").convert("RGB"))


def write_png16(path: Path, pixels: np.ndarray) -> None:
    """A 16-bit grayscale or RGB PNG ([H, W, 1 or 3] uint16) written chunk by chunk."""
    h, w, c = pixels.shape
    rows = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 3: 2}[c], 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def write_photos(folder: Path, n: int = 12, size: tuple[int, int] = (48, 36), seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"p_{i:03d}.png")
    return folder


def edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    raw = json.loads(path.read_text(encoding="utf-8"))
    edit(raw)
    path.write_text(json.dumps(raw), encoding="utf-8")


def nex(*argv: Any) -> Call:
    """The `nex` command as the console script runs it, but letting NexError through (main() prints it)."""
    from nex_core.cli import build_parser

    def call() -> Any:
        args = build_parser().parse_args([str(a) for a in argv])
        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            return args.func(args)
        finally:
            for s, handler in handlers.items():
                signal.signal(s, handler)

    return call


# --------------------------------------------------------------------------------------------------
# Scene loaders


def load(root: Path, cameras_only: bool = False, **kw) -> Call:
    from nex_core.io.scene.loader import load_cameras, load_scene

    return (lambda: load_cameras(root, **kw)) if cameras_only else (lambda: load_scene(root, **kw))


def poses_edit(edit: Callable[[np.ndarray], np.ndarray], cameras_only: bool = False) -> Callable[[Path], Call]:
    def setup(folder: Path) -> Call:
        root = demo_copy(folder)
        np.save(root / "poses_bounds.npy", edit(np.load(root / "poses_bounds.npy")))
        return load(root, cameras_only)
    return setup


def far_away(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a[5, 3] = 1e200  # the x of camera 5's centre (the 3x5 pose's last column)
    return a


def with_nan(arr: np.ndarray) -> np.ndarray:
    arr[3, 5] = np.nan
    return arr


def image_edit(edit: Callable[[Path], None], llff: bool = True) -> Callable[[Path], Call]:
    def setup(folder: Path) -> Call:
        root = demo_copy(folder, llff=llff)
        edit(root / "images")
        return load(root)
    return setup


def transforms_edit(edit: Callable[[dict], None]) -> Callable[[Path], Call]:
    def setup(folder: Path) -> Call:
        root = demo_copy(folder, llff=False)
        edit_json(root / "transforms.json", edit)
        return load(root)
    return setup


def transforms_text(text: str) -> Callable[[Path], Call]:
    def setup(folder: Path) -> Call:
        root = demo_copy(folder, llff=False)
        (root / "transforms.json").write_text(text, encoding="utf-8")
        return load(root)
    return setup


def planes(text: str) -> Callable[[Path], Call]:
    def setup(folder: Path) -> Call:
        root = demo_copy(folder)
        (root / "planes.txt").write_text(text, encoding="utf-8")
        return load(root)
    return setup


def missing_folder(folder: Path) -> Call:
    return load(folder / "no_such_scene")


def empty_folder(folder: Path) -> Call:
    (folder / "empty_scene").mkdir()
    return load(folder / "empty_scene")


def photos_without_poses(folder: Path) -> Call:
    root = folder / "unposed"
    shutil.copytree(DEMO / "images", root / "images")
    return load(root)


def too_few_images(folder: Path) -> Call:
    root = demo_copy(folder)
    for path in sorted((root / "images").iterdir())[5:]:
        path.unlink()
    np.save(root / "poses_bounds.npy", np.load(root / "poses_bounds.npy")[:5])
    return load(root)


def lying_npy_header(folder: Path) -> Call:
    """A poses_bounds.npy whose header announces 10^9 rows: refused without allocating them."""
    from numpy.lib import format as npy_format

    root = demo_copy(folder)
    path = root / "poses_bounds.npy"
    with open(path, "wb") as f:
        npy_format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (10 ** 9, 17)})
        f.write(np.zeros((20, 17)).tobytes())
    return load(root)


def not_npy(folder: Path) -> Call:
    root = demo_copy(folder)
    (root / "poses_bounds.npy").write_text("these are not poses\n")
    return load(root)


def bad_hwf(folder: Path) -> Call:
    root = demo_copy(folder)
    arr = np.load(root / "poses_bounds.npy")
    np.save(root / "poses_bounds.npy", np.concatenate([arr[:, :12], arr[:, -2:]], 1))  # 14-value rows
    np.save(root / "hwf_cxcy.npy", np.array([120.0, 160.0, 150.0, 150.0]))
    return load(root)


def case_duplicates(folder: Path) -> Call:
    root = demo_copy(folder, llff=False)
    shutil.copy(root / "images" / "view_003.png", root / "images" / "view_003.PNG")

    def add_frame(meta: dict) -> None:
        frame = dict(meta["frames"][3])
        frame["file_path"] = "images/view_003.PNG"
        meta["frames"].append(frame)

    edit_json(root / "transforms.json", add_frame)
    return load(root)


def listed_twice(meta: dict) -> None:
    meta["frames"].append(dict(meta["frames"][0]))


def unicode_path(folder: Path) -> Call:
    return load(demo_copy(folder / "scène démo ü", "my scene ü"))


def unicode_cameras(folder: Path) -> Call:
    return load(demo_copy(folder / "scène démo ü", "my scene ü", llff=False), cameras_only=True)


def check_demo_scene(scene, folder: Path) -> None:
    assert scene.n_views == N_DEMO and scene.images.shape == (N_DEMO, DEMO_H, DEMO_W, 3)
    assert scene.images.dtype == np.float32 and 0.0 <= scene.images.min() and scene.images.max() <= 1.0
    np.testing.assert_allclose(scene.images[0], demo_pixels(0) / 255.0, atol=1e-6)


def check_demo_cameras(views, folder: Path) -> None:
    assert len(views.cameras) == N_DEMO and views.size == (DEMO_W, DEMO_H) and views.format == "blender"


def colmap_model(folder: Path) -> Path:
    """The shipped scene as a binary COLMAP model (PINHOLE, no points) in ``folder/scene/sparse/0``."""
    import pycolmap

    from nex_core.io.cameras import invert_pose
    from nex_core.io.scene.loader import load_cameras

    views = load_cameras(DEMO)
    rec = pycolmap.Reconstruction()
    camera = pycolmap.Camera.create_from_model_name(1, "PINHOLE", 150.0, DEMO_W, DEMO_H)
    camera.params = [150.0, 150.0, 80.0, 60.0]
    rec.add_camera_with_trivial_rig(camera)
    for i, (name, cam) in enumerate(zip(views.names, views.cameras)):
        image = pycolmap.Image(name=Path(name).name, camera_id=1, image_id=i + 1, keypoints=np.zeros((0, 2)))
        rec.add_image_with_trivial_frame(image, pycolmap.Rigid3d(invert_pose(cam.c2w)[:3, :4]))
    root = folder / "scene"
    shutil.copytree(DEMO / "images", root / "images")
    model = root / "sparse" / "0"
    model.mkdir(parents=True)
    rec.write_binary(str(model))
    return root


def colmap_empty(folder: Path) -> Call:
    root = folder / "scene"
    shutil.copytree(DEMO / "images", root / "images")
    model = root / "sparse" / "0"
    model.mkdir(parents=True)
    for name in ("cameras.txt", "images.txt", "points3D.txt"):
        (model / name).write_text("# empty\n")
    return load(root)


def colmap_truncated(folder: Path) -> Call:
    root = colmap_model(folder)
    truncate(root / "sparse" / "0" / "images.bin")
    return load(root)


# --------------------------------------------------------------------------------------------------
# Image modes that are accepted and converted


def replace_view(mode: str) -> Callable[[Path], None]:
    """Replace images/view_003.png by the same photo in another PNG mode."""
    def edit(images: Path) -> None:
        rgb = demo_pixels(3)
        path = images / "view_003.png"
        if mode == "gray":
            Image.fromarray(rgb).convert("L").save(path)
        elif mode == "rgba":
            alpha = np.random.default_rng(1).integers(0, 256, rgb.shape[:2], dtype=np.uint8)
            Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(path)
        elif mode == "gray16":
            write_png16(path, (np.asarray(Image.fromarray(rgb).convert("L"), np.uint16) * 256 + 77)[..., None])
        elif mode == "rgb16":
            write_png16(path, rgb.astype(np.uint16) * 256 + 77)
        elif mode == "palette":
            Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(path)
    return edit


def expected_view3(mode: str) -> np.ndarray:
    rgb = demo_pixels(3)
    gray = np.asarray(Image.fromarray(rgb).convert("L"), np.float64)
    if mode == "gray":
        return np.repeat(gray[..., None] / 255.0, 3, 2)
    if mode == "gray16":
        return np.repeat((gray[..., None] * 256 + 77) / 65535.0, 3, 2)
    if mode == "palette":
        palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
        return np.asarray(palette.convert("RGB")) / 255.0
    return rgb / 255.0  # rgba: alpha dropped; rgb16: Pillow keeps the high byte, which is the 8-bit photo


def converted(mode: str) -> Callable[[Any, Path], None]:
    def check(scene, folder: Path) -> None:
        assert scene.images.dtype == np.float32 and scene.images.shape == (N_DEMO, DEMO_H, DEMO_W, 3)
        assert 0.0 <= scene.images.min() and scene.images.max() <= 1.0
        assert Path(scene.names[3]).name == "view_003.png"
        np.testing.assert_allclose(scene.images[3], expected_view3(mode), atol=1e-6)
        np.testing.assert_allclose(scene.images[2], demo_pixels(2) / 255.0, atol=1e-6)
    return check


def mode_case(mode: str, wrong: str) -> Case:
    return Case(f"image-{mode}", "load_scene", wrong, image_edit(replace_view(mode)), None,
                accept=converted(mode), accepted="accepted: converted to float RGB in [0, 1]")


# --------------------------------------------------------------------------------------------------
# nex prepare (only as far as its photo checks: no structure from motion runs)


PREPARE_LOG = ("scene", "scene/events.jsonl")


def prepare_photos(edit: Callable[[Path], None], existing_scene: bool = False) -> Callable[[Path], Call]:
    def setup(folder: Path) -> Call:
        photos = write_photos(folder / "photos")
        edit(photos)
        args = ["prepare", photos, "--out", folder / "scene", "--quiet"]
        if existing_scene:
            demo_copy(folder, "scene")
            args.append("--force")
        return nex(*args)
    return setup


def remove_all_but(n: int) -> Callable[[Path], None]:
    def edit(photos: Path) -> None:
        for path in sorted(photos.iterdir())[n:]:
            path.unlink()
    return edit


def zero_byte_photo(photos: Path) -> None:
    (photos / "p_004.png").write_bytes(b"")


def truncated_photo(photos: Path) -> None:
    truncate(photos / "p_005.png", 0.4)


def portrait_photo(photos: Path) -> None:
    Image.fromarray(np.zeros((48, 36, 3), np.uint8)).save(photos / "p_006.png")


def cropped_photo(photos: Path) -> None:
    Image.fromarray(np.zeros((36, 40, 3), np.uint8)).save(photos / "p_007.png")


def no_photos(photos: Path) -> None:
    for path in photos.iterdir():
        path.unlink()
    (photos / "notes.txt").write_text("holiday")


def prepare_missing_folder(folder: Path) -> Call:
    return nex("prepare", folder / "no_photos_here", "--out", folder / "scene", "--quiet")


# --------------------------------------------------------------------------------------------------
# nex train (only as far as its input checks)


TRAIN_LOG = ("run", "run/config.toml", "run/events.jsonl")


def train_scene(make_scene: Callable[[Path], Path]) -> Callable[[Path], Call]:
    def setup(folder: Path) -> Call:
        return nex("train", make_scene(folder), "--preset", "tiny", "--out", folder / "run", "--quiet", "--no-eval")
    return setup


def scene_with_few_images(folder: Path) -> Path:
    too_few_images(folder)
    return folder / "scene"


def train_flags(*flags: str) -> Callable[[Path], Call]:
    def setup(folder: Path) -> Call:
        return nex("train", demo_copy(folder), "--preset", "tiny", "--out", folder / "run", "--quiet", *flags)
    return setup


def train_config(text: str) -> Callable[[Path], Call]:
    def setup(folder: Path) -> Call:
        (folder / "my config.toml").write_text(text, encoding="utf-8")
        return nex("train", "--config", folder / "my config.toml", "--out", folder / "run", "--quiet")
    return setup


def resume_checkpoint(payload: Callable[[], dict], damage: Callable[[Path], None] | None = None):
    """A run directory of the tiny preset holding one checkpoint (``payload``), then `nex train --resume`."""
    def setup(folder: Path) -> Call:
        from nex_core.io import config as config_mod
        from nex_core.runtime.checkpoint import list_checkpoints, save_checkpoint

        cfg = config_mod.preset("tiny")
        cfg.data.scene = str(demo_copy(folder))
        run = folder / "run"
        run.mkdir()
        config_mod.save(cfg, run / "config.toml")
        save_checkpoint(run, 50, payload())
        if damage is not None:
            damage(list_checkpoints(run)[-1][1])
        return nex("train", "--resume", run, "--quiet", "--no-eval")
    return setup


def other_config_payload() -> dict:
    from nex_core.runtime.checkpoint import fingerprint

    return {"fingerprint": fingerprint({"model": "another one"}), "settings": {"model": "another one"}, "model": {}}


def other_version_payload() -> dict:
    payload = other_config_payload()
    payload["version"] = 99  # save_checkpoint stamps its own version unless the payload overrides it
    return payload


def load_damaged_checkpoint(folder: Path) -> Call:
    from nex_core.runtime.checkpoint import load_checkpoint, save_checkpoint

    path = save_checkpoint(folder / "run", 50, other_config_payload())
    truncate(path)
    return lambda: load_checkpoint(path)


# --------------------------------------------------------------------------------------------------
# The baked reader and nex export --gltf


def read(baked: Path, layout_only: bool = False) -> Call:
    from nex_core.io.baked import read_baked, read_layout

    return (lambda: read_layout(baked)) if layout_only else (lambda: read_baked(baked))


def baked_manifest(edit: Callable[[dict], None], layout_only: bool = False) -> Callable[[Path], Call]:
    def setup(folder: Path) -> Call:
        baked = write_small_baked(folder / "baked")
        edit_json(baked / "mpi.json", edit)
        return read(baked, layout_only)
    return setup


def baked_files(edit: Callable[[Path], None], layout_only: bool = False) -> Callable[[Path], Call]:
    def setup(folder: Path) -> Call:
        baked = write_small_baked(folder / "baked")
        edit(baked)
        return read(baked, layout_only)
    return setup


def set_texture(name: str) -> Callable[[dict], None]:
    def edit(raw: dict) -> None:
        raw["textures"][0]["file"] = name
    return edit


def huge(raw: dict) -> None:
    raw["reference_camera"].update(width=60000, height=60000)
    raw["mpi"].update(width=60002, height=60002)


def unknown_version(raw: dict) -> None:
    raw["version"] = 7


def drop_checksums(raw: dict) -> None:
    for tex in raw["textures"]:
        tex.pop("sha256")


def symlink_out(baked: Path) -> None:
    outside = baked.parent / "outside.png"
    (baked / "alpha_00.png").rename(outside)
    (baked / "alpha_00.png").symlink_to(outside)


def missing_texture(baked: Path) -> None:
    (baked / "coeff_00.png").unlink()


def truncated_texture(baked: Path) -> None:
    truncate(baked / "k0_00.png", 0.6)


def old_bake_truncated(baked: Path) -> None:
    edit_json(baked / "mpi.json", drop_checksums)
    truncated_texture(baked)


def flipped_byte(baked: Path) -> None:
    path = baked / "basis_00.png"
    data = bytearray(path.read_bytes())
    data[-20] ^= 0x01
    path.write_bytes(bytes(data))


def no_manifest(baked: Path) -> None:
    (baked / "mpi.json").unlink()


def broken_json(baked: Path) -> None:
    (baked / "mpi.json").write_text('{"format": "nex-baked-mpi", "version": 1,', encoding="utf-8")


def bad_checksum_field(raw: dict) -> None:
    raw["textures"][1]["sha256"] = "not a digest"


def unicode_baked(folder: Path) -> Call:
    return read(write_small_baked(folder / "bäked dïr ü" / "baked"))


def old_bake(folder: Path) -> Call:
    baked = write_small_baked(folder / "baked")
    edit_json(baked / "mpi.json", drop_checksums)
    return read(baked)


def check_small_baked(baked, folder: Path) -> None:
    from nex_core.io.baked import read_baked

    reference = read_baked(write_small_baked(folder / "reference"))
    for name in ("alpha", "k0", "coeffs", "basis_lut"):
        np.testing.assert_array_equal(getattr(baked, name), getattr(reference, name))


def export(edit: Callable[[Path], None] | None = None, earlier_glb: bool = False) -> Callable[[Path], Call]:
    def setup(folder: Path) -> Call:
        baked = write_small_baked(folder / "baked")
        out = folder / "out.glb"
        if earlier_glb:
            out.write_bytes(b"glTF an earlier, good export")
        if edit is not None:
            edit(baked)
        return nex("export", baked, "--gltf", out)
    return setup


def export_to(name: str) -> Callable[[Path], Call]:
    def setup(folder: Path) -> Call:
        return nex("export", write_small_baked(folder / "baked"), "--gltf", folder / name)
    return setup


def export_missing_run(folder: Path) -> Call:
    return nex("export", folder / "no_such_run", "--gltf", folder / "out.glb")


def export_unbaked_run(folder: Path) -> Call:
    run = folder / "run"
    run.mkdir()
    (run / "config.toml").write_text("", encoding="utf-8")
    return nex("export", run, "--gltf", folder / "out.glb", "--no-bake")


def unicode_export(folder: Path) -> Call:
    out = folder / "ëxport ü" / "my mpi.glb"
    return nex("export", write_small_baked(folder / "bäked ü"), "--gltf", out)


def check_glb(code, folder: Path) -> None:
    out = folder / "ëxport ü" / "my mpi.glb"
    assert code == 0 and out.read_bytes()[:4] == b"glTF"


# --------------------------------------------------------------------------------------------------
# The table


CASES: list[Case] = [
    # --- scene loaders: folders and photos
    Case("missing-scene", "load_scene", "scene folder does not exist", missing_folder, SceneError,
         ("no_such_scene", "check the path")),
    Case("empty-scene", "load_scene", "scene folder holds nothing", empty_folder, ImageError,
         ("empty_scene", "nex prepare")),
    Case("photos-no-poses", "load_scene", "photos but no poses file", photos_without_poses, PoseError,
         ("unposed", "nex prepare")),
    Case("too-few-images", "load_scene", "5 photos and 5 poses (12 needed)", too_few_images, SceneError,
         ("poses_bounds.npy", "Take more")),
    Case("truncated-image", "load_scene", "a photo cut off halfway",
         image_edit(lambda d: truncate(d / "view_011.png")), ImageError, ("view_011.png", "re-export")),
    Case("zero-byte-image", "load_scene", "a photo of 0 bytes",
         image_edit(lambda d: (d / "view_004.png").write_bytes(b"")), ImageError, ("view_004.png", "re-export")),
    Case("mixed-sizes", "load_scene", "one photo 150x120 among 160x120",
         image_edit(lambda d: Image.fromarray(demo_pixels(5)[:, :150]).save(d / "view_005.png")), ImageError,
         ("view_005.png", "view_000.png", "re-export")),
    mode_case("gray", "8-bit grayscale PNG"),
    mode_case("rgba", "RGBA PNG (alpha channel)"),
    mode_case("gray16", "16-bit grayscale PNG"),
    mode_case("rgb16", "16-bit RGB PNG"),
    mode_case("palette", "palette (indexed) PNG"),
    Case("case-duplicate", "load_scene", "view_003.png and view_003.PNG both listed", case_duplicates, ImageError,
         ("view_003.PNG", "rename")),
    Case("listed-twice", "load_scene", "transforms.json lists one photo twice", transforms_edit(listed_twice),
         PoseError, ("transforms.json", "view_000.png", "remove the duplicate")),
    Case("unicode-path", "load_scene", "spaces and accents in the path", unicode_path, None,
         accept=check_demo_scene, accepted="accepted: loads (20 views)"),
    Case("unicode-cameras", "load_cameras", "spaces and accents in the path (transforms.json)", unicode_cameras,
         None, accept=check_demo_cameras, accepted="accepted: loads (20 cameras)"),
    # --- LLFF poses
    Case("poses-nan", "load_scene", "poses_bounds.npy row 3 holds NaN", poses_edit(with_nan), PoseError,
         ("poses_bounds.npy", "view_003.png", "nex prepare")),
    Case("poses-nan-cameras", "load_cameras", "poses_bounds.npy row 3 holds NaN", poses_edit(with_nan, True),
         PoseError, ("poses_bounds.npy", "view_003.png", "nex prepare")),
    Case("poses-far-away", "load_scene", "camera 5 at 1e200 units from the origin", poses_edit(far_away),
         PoseError, ("poses_bounds.npy", "view_005.png", "damaged", "nex prepare")),
    Case("poses-shape", "load_scene", "poses_bounds.npy rows of 15 values", poses_edit(lambda a: a[:, :15]),
         PoseError, ("poses_bounds.npy", "(20, 15)", "nex prepare")),
    Case("poses-count", "load_scene", "19 poses for 20 photos", poses_edit(lambda a: a[:19]), PoseError,
         ("poses_bounds.npy", "19 poses", "nex prepare")),
    Case("poses-lying-header", "load_scene", "npy header announces 10^9 rows", lying_npy_header, PoseError,
         ("poses_bounds.npy", "nex prepare"), max_alloc_mb=64),
    Case("poses-not-npy", "load_scene", "poses_bounds.npy is a text file", not_npy, PoseError,
         ("poses_bounds.npy", "nex prepare")),
    Case("hwf-wrong-size", "load_scene", "hwf_cxcy.npy holds 4 values", bad_hwf, PoseError,
         ("hwf_cxcy.npy", "Re-create it")),
    # --- planes.txt
    Case("planes-dmin-dmax", "load_scene (planes.txt)", "dmin >= dmax", planes("5.0 2.0\n"), SceneError,
         ("planes.txt", "dmin < dmax", "Fix")),
    Case("planes-negative", "load_scene (planes.txt)", "negative dmin", planes("-1 10\n"), SceneError,
         ("planes.txt", "Fix")),
    Case("planes-garbage", "load_scene (planes.txt)", "garbage text", planes("near far away\n"), SceneError,
         ("planes.txt", "expected one line")),
    Case("planes-bad-offset", "load_scene (planes.txt)", "offset of -3.5 pixels", planes("1 10 1 -3.5\n"),
         SceneError, ("planes.txt", "whole number", "fix the file")),
    # --- transforms.json
    Case("transforms-invalid-json", "load_scene", "transforms.json is not JSON",
         transforms_text('{"frames": [ {"file_path": '), PoseError, ("transforms.json", "line 1", "fix")),
    Case("transforms-no-frames", "load_scene", "transforms.json without \"frames\"",
         transforms_edit(lambda m: m.pop("frames")), PoseError, ("transforms.json", "frames", "expected")),
    Case("transforms-no-matrix", "load_scene", "a frame without \"transform_matrix\"",
         transforms_edit(lambda m: m["frames"][2].pop("transform_matrix")), PoseError,
         ("transforms.json", "transform_matrix", "re-export")),
    Case("transforms-no-fov", "load_scene", "neither \"camera_angle_x\" nor \"fl_x\"",
         transforms_edit(lambda m: [m.pop(k) for k in ("fl_x", "fl_y", "camera_angle_x")]), PoseError,
         ("transforms.json", "camera_angle_x", "add the horizontal field of view")),
    Case("transforms-nan-width", "load_scene", "\"w\": NaN",
         transforms_edit(lambda m: m.update(w=float("nan"))), PoseError, ("transforms.json", "\"w\"", "re-export")),
    Case("transforms-zero-fov", "load_scene", "\"camera_angle_x\": 0 (no fl_x)",
         transforms_edit(lambda m: [m.pop("fl_x"), m.pop("fl_y"), m.update(camera_angle_x=0)]), PoseError,
         ("transforms.json", "camera_angle_x", "re-export")),
    # --- COLMAP
    Case("colmap-empty", "load_scene", "sparse/0 with empty model files", colmap_empty, PoseError,
         ("sparse/0", "nex prepare")),
    Case("colmap-truncated", "load_scene", "sparse/0/images.bin cut off halfway", colmap_truncated, PoseError,
         ("images.bin", "nex prepare")),
    # --- nex prepare
    Case("prepare-missing-folder", "nex prepare", "photo folder does not exist", prepare_missing_folder,
         SceneError, ("no_photos_here", "check the path"), may_write=PREPARE_LOG),
    Case("prepare-no-photos", "nex prepare", "folder holds only a text file", prepare_photos(no_photos),
         ImageError, ("photos", "notes.txt", "put at least 12"), may_write=PREPARE_LOG),
    Case("prepare-too-few", "nex prepare", "5 photos", prepare_photos(remove_all_but(5)), ImageError,
         ("p_004.png", "take more"), may_write=PREPARE_LOG),
    Case("prepare-zero-byte", "nex prepare", "a photo of 0 bytes", prepare_photos(zero_byte_photo), ImageError,
         ("p_004.png", "re-export"), may_write=PREPARE_LOG),
    Case("prepare-truncated", "nex prepare --force", "a truncated photo; an earlier scene in --out",
         prepare_photos(truncated_photo, existing_scene=True), ImageError, ("p_005.png", "re-export"),
         may_write=PREPARE_LOG),
    Case("prepare-orientation", "nex prepare", "one portrait photo among landscape ones",
         prepare_photos(portrait_photo), ImageError, ("p_006.png", "remove the odd ones"), may_write=PREPARE_LOG),
    Case("prepare-aspect", "nex prepare", "one cropped photo", prepare_photos(cropped_photo), ImageError,
         ("p_007.png", "uncropped originals"), may_write=PREPARE_LOG),
    # --- nex train
    Case("train-missing-scene", "nex train", "scene folder does not exist",
         train_scene(lambda f: f / "no_such_scene"), SceneError, ("no_such_scene", "check the path"),
         may_write=TRAIN_LOG),
    Case("train-too-few", "nex train", "scene of 5 photos", train_scene(scene_with_few_images), SceneError,
         ("poses_bounds.npy", "Take more"), may_write=TRAIN_LOG),
    Case("train-dmin-dmax", "nex train", "--dmin 5 --dmax 2", train_flags("--dmin", "5", "--dmax", "2"),
         ConfigError, ("data.dmin", "smaller")),
    Case("config-invalid-toml", "nex train --config", "config file is not TOML", train_config("[data\nwidth = "),
         ConfigError, ("my config.toml", "fix or delete")),
    Case("config-version", "nex train --config", "config version 99", train_config("version = 99\n"),
         ConfigError, ("my config.toml", "re-create")),
    Case("config-unknown-key", "nex train --config", "unknown setting [model] depth",
         train_config('preset = "tiny"\n[model]\ndepth = 3\n'), ConfigError, ("my config.toml", "depth", "spelling")),
    Case("checkpoint-other-config", "nex train --resume", "checkpoint from another configuration",
         resume_checkpoint(other_config_payload), CheckpointError,
         ("step_00000050.pt", "different model or scene configuration", "new run"), may_write=TRAIN_LOG),
    Case("checkpoint-other-version", "nex train --resume", "checkpoint of format version 99",
         resume_checkpoint(other_version_payload), CheckpointError, ("step_00000050.pt", "version 99", "new run"),
         may_write=TRAIN_LOG),
    Case("checkpoint-truncated", "nex train --resume", "the only checkpoint cut off halfway",
         resume_checkpoint(other_config_payload, truncate), DamagedCheckpointError, ("checkpoints", "new run"),
         may_write=TRAIN_LOG),
    Case("checkpoint-truncated-load", "load_checkpoint", "checkpoint cut off halfway", load_damaged_checkpoint,
         DamagedCheckpointError, ("step_00000050.pt", "Delete it")),
    # --- baked reader
    Case("baked-unknown-version", "read_baked", "mpi.json version 7", baked_manifest(unknown_version), FormatError,
         ("mpi.json", "version 7", "bake the run again")),
    Case("baked-huge", "read_baked", "60000 x 60000 reference image", baked_manifest(huge), FormatError,
         ("mpi.json", "bake it again"), max_alloc_mb=64),
    Case("baked-parent-path", "read_baked", "texture path ../x.png", baked_manifest(set_texture("../x.png")),
         FormatError, ("mpi.json", "../x.png", "escapes", "nex bake")),
    Case("baked-absolute-path", "read_layout", "absolute texture path", baked_manifest(set_texture("/etc/passwd"),
                                                                                       True),
         FormatError, ("mpi.json", "/etc/passwd", "absolute", "nex bake")),
    Case("baked-symlink-out", "read_layout", "texture is a symbolic link out of the folder",
         baked_files(symlink_out, True), FormatError, ("mpi.json", "alpha_00.png", "resolves outside")),
    Case("baked-missing-texture", "read_baked", "coeff_00.png deleted", baked_files(missing_texture), FormatError,
         ("coeff_00.png", "missing", "bake again")),
    Case("baked-truncated-texture", "read_baked", "k0_00.png cut off", baked_files(truncated_texture),
         FormatError, ("k0_00.png", "damaged", "nex bake")),
    Case("baked-truncated-layout", "read_layout", "k0_00.png cut off (checksum check)",
         baked_files(truncated_texture, True), FormatError, ("k0_00.png", "damaged", "nex bake")),
    Case("baked-old-truncated", "read_baked", "k0_00.png cut off, bake without checksums",
         baked_files(old_bake_truncated), FormatError, ("k0_00.png", "damaged", "nex bake")),
    Case("baked-flipped-bit", "read_baked", "one bit of basis_00.png flipped", baked_files(flipped_byte),
         FormatError, ("basis_00.png", "sha256", "nex bake")),
    Case("baked-bad-checksum-field", "read_layout", "textures[1].sha256 is not a digest",
         baked_manifest(bad_checksum_field, True), FormatError, ("mpi.json", "sha256", "bake again")),
    Case("baked-invalid-json", "read_baked", "mpi.json cut off", baked_files(broken_json), FormatError,
         ("mpi.json", "bake again")),
    Case("baked-no-manifest", "read_baked", "folder without mpi.json", baked_files(no_manifest), FormatError,
         ("mpi.json", "nex bake")),
    Case("baked-without-checksums", "read_baked", "bake from before the checksums", old_bake, None,
         accept=check_small_baked, accepted="accepted: reads (no checksums to check)"),
    Case("baked-unicode-path", "read_baked", "spaces and accents in the path", unicode_baked, None,
         accept=check_small_baked, accepted="accepted: reads"),
    # --- nex export --gltf
    Case("gltf-unknown-version", "nex export --gltf", "mpi.json version 7",
         export(lambda b: edit_json(b / "mpi.json", unknown_version)), FormatError, ("mpi.json", "version 7")),
    Case("gltf-damaged-texture", "nex export --gltf", "truncated texture; an earlier out.glb",
         export(truncated_texture, earlier_glb=True), FormatError, ("k0_00.png", "damaged", "nex bake")),
    Case("gltf-escaping-texture", "nex export --gltf", "texture path ../x.png",
         export(lambda b: edit_json(b / "mpi.json", set_texture("../x.png"))), FormatError, ("../x.png", "escapes")),
    Case("gltf-wrong-suffix", "nex export --gltf", "output named .gltf, not .glb", export_to("out.gltf"),
         ConfigError, ("out.gltf", ".glb")),
    Case("gltf-missing-run", "nex export --gltf", "run folder does not exist", export_missing_run, ConfigError,
         ("no_such_run", "check the path")),
    Case("gltf-unbaked-run", "nex export --gltf --no-bake", "run without a baked MPI", export_unbaked_run,
         FormatError, ("mpi.json", "nex bake")),
    Case("gltf-unicode-path", "nex export --gltf", "spaces and accents in both paths", unicode_export, None,
         accept=check_glb, accepted="accepted: writes the .glb"),
]
