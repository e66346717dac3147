"""Reading a baked directory strictly: every field of mpi.json typed and checked, texture paths kept
inside the directory, PNG headers and recorded sha256 digests checked before any pixel is decoded; any
fault is a FormatError that names the file and the field."""

from __future__ import annotations

import hashlib
import io
import json
import math
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from ..errors import FormatError
from .codec import decode_kind
from .constants import (COEFFICIENT_LOOKUP, COMPOSITING_SPACES, FORMAT_NAME, GUTTER, KINDS, MANIFEST, MAX_TEXELS,
                        MAX_TEXTURE_SIDE, READABLE_VERSIONS)
from .layout import BakedLayout, TextureSpec, Tile
from .types import BakedMPI, MPIInfo

_HASH_CHUNK = 1 << 20


def read_layout(baked_dir: Path, verify: bool = True) -> BakedLayout:
    """Read and check ``mpi.json`` (not the pixels): FormatError, naming the file, when anything is off.

    ``verify``: also check every texture file against the sha256 the manifest records for it (bakes
    older than the checksums have none; those textures are not checked).
    """
    root = Path(baked_dir)
    path = root / MANIFEST
    src = str(path)
    if not path.is_file():
        raise FormatError(f"{src}: not found; is {root} a baked MPI directory? Create one with `nex bake RUN`")
    if path.stat().st_size > 64 << 20:
        raise FormatError(f"{src}: implausibly large for a manifest; the file is damaged, bake again")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"{src}: not valid JSON ({exc}); the bake was damaged, bake again") from None
    if not isinstance(raw, dict):
        raise FormatError(f"{src}: not a JSON object; bake again")
    if raw.get("format") != FORMAT_NAME:
        raise FormatError(f"{src}: format {raw.get('format')!r} is not {FORMAT_NAME!r}; this is not a NeX baked "
                          f"MPI (create one with `nex bake RUN`)")
    version = raw.get("version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise FormatError(f"{src}: baked-MPI version {version!r} is not supported (this nex reads versions "
                          f"{', '.join(map(str, READABLE_VERSIONS))}); bake the run again with this nex, or "
                          "update nex")
    r = _Reader(src, raw)
    cam, mpi, basis = r.obj("reference_camera"), r.obj("mpi"), r.obj("basis")
    lut = r.obj("lut", basis, "basis.")
    if r.text("coefficient_lookup", mpi, "mpi.") != COEFFICIENT_LOOKUP:
        raise FormatError(f"{src}: mpi.coefficient_lookup must be {COEFFICIENT_LOOKUP!r}; bake again")
    invz = mpi.get("invz")
    # Version 1 predates the field: those MPIs were trained and rendered compositing sRGB values.
    compositing = "srgb" if version == 1 else r.text("compositing", mpi, "mpi.")
    if compositing not in COMPOSITING_SPACES:
        raise FormatError(f"{src}: mpi.compositing {compositing!r} is not one of {', '.join(COMPOSITING_SPACES)}; "
                          "bake again, or update nex")
    info = MPIInfo(
        width=r.integer("width", cam, "reference_camera."), height=r.integer("height", cam, "reference_camera."),
        fx=r.number("fx", cam, "reference_camera."), fy=r.number("fy", cam, "reference_camera."),
        cx=r.number("cx", cam, "reference_camera."), cy=r.number("cy", cam, "reference_camera."),
        offset=r.integer("offset", mpi, "mpi."), depths=tuple(r.numbers("depths", mpi, "mpi.")),
        layers=r.integer("layers", mpi, "mpi."), sublayers=r.integer("sublayers", mpi, "mpi."),
        n_basis=r.integer("count", basis, "basis."), basis_kind=r.text("kind", basis, "basis."),
        lut_width=r.integer("width", lut, "basis.lut."), lut_height=r.integer("height", lut, "basis.lut."),
        lut_vx=tuple(r.numbers("vx", lut, "basis.lut.", 2)), lut_vy=tuple(r.numbers("vy", lut, "basis.lut.", 2)),
        ref_c2w=r.matrix("c2w_opencv", cam, "reference_camera."),
        invz=invz if isinstance(invz, bool) else None, compositing=compositing,
        metadata=raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {},
    )
    info.check(src)
    for name, value in (("planes", info.n_planes), ("width", info.mpi_width), ("height", info.mpi_height)):
        declared = r.integer(name, mpi, "mpi.")
        if declared != value:
            what = {"planes": "layers x sublayers", "width": "reference width + 2 x offset",
                    "height": "reference height + 2 x offset"}[name]
            raise FormatError(f"{src}: mpi.{name} = {declared} but {what} = {value}; the file is "
                              f"inconsistent, bake again")
    textures = _read_textures(root, r)
    tiles = _read_tiles(r, info, textures)
    layout = BakedLayout(root, info, textures, tiles)
    if verify:
        verify_textures(layout)
    return layout


class _Reader:
    """Typed access to the manifest's fields with FormatErrors that name the file and the field."""

    def __init__(self, src: str, raw: dict):
        self.src, self.raw = src, raw

    def get(self, key: str, parent: dict | None, prefix: str) -> Any:
        parent = self.raw if parent is None else parent
        if key not in parent:
            raise FormatError(f"{self.src}: missing field {prefix}{key}; the file is incomplete, bake again")
        return parent[key]

    def bad(self, key: str, prefix: str, want: str, value: Any) -> FormatError:
        return FormatError(f"{self.src}: field {prefix}{key} should be {want}, got {value!r:.80}; bake again")

    def obj(self, key: str, parent: dict | None = None, prefix: str = "") -> dict:
        v = self.get(key, parent, prefix)
        if not isinstance(v, dict):
            raise self.bad(key, prefix, "an object", v)
        return v

    def integer(self, key: str, parent: dict | None = None, prefix: str = "") -> int:
        v = self.get(key, parent, prefix)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.bad(key, prefix, "an integer", v)
        return v

    def number(self, key: str, parent: dict | None = None, prefix: str = "") -> float:
        v = self.get(key, parent, prefix)
        x = _finite(v)
        if x is None:
            raise self.bad(key, prefix, "a finite number", v)
        return x

    def text(self, key: str, parent: dict | None = None, prefix: str = "") -> str:
        v = self.get(key, parent, prefix)
        if not isinstance(v, str):
            raise self.bad(key, prefix, "a string", v)
        return v

    def numbers(self, key: str, parent: dict | None = None, prefix: str = "", count: int | None = None) -> list[float]:
        v = self.get(key, parent, prefix)
        values = [_finite(x) for x in v] if isinstance(v, list) and len(v) <= 1 << 16 else None
        if values is None or (count is not None and len(values) != count) or None in values:
            raise self.bad(key, prefix, f"a list of {count or 'some'} finite numbers", v)
        return values

    def matrix(self, key: str, parent: dict | None = None, prefix: str = "") -> np.ndarray:
        v = self.get(key, parent, prefix)
        try:
            m = np.array(v, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise self.bad(key, prefix, "a 4x4 matrix", v) from None
        if m.shape != (4, 4) or not np.all(np.isfinite(m)):
            raise self.bad(key, prefix, "a finite 4x4 matrix", v)
        return m


def _finite(v: Any) -> float | None:
    """``v`` as a float if it is a finite JSON number (not a bool, not an integer too large for a float)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        x = float(v)
    except OverflowError:
        return None
    return x if math.isfinite(x) else None


def _safe_relative(root: Path, name: str, src: str) -> Path:
    """``root / name`` if ``name`` is a plain relative path that stays inside ``root`` (symlinks included)."""
    fix = ("texture paths must be relative to the baked directory and stay inside it; the file was edited or "
           "damaged: bake again with `nex bake`")
    if not name or len(name) > 1024 or "\\" in name or any(ord(c) < 32 for c in name) \
            or PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
        raise FormatError(f"{src}: texture path {name!r:.80} is absolute or malformed; {fix}")
    if any(part == ".." for part in PurePosixPath(name).parts):
        raise FormatError(f"{src}: texture path {name!r} escapes the baked directory ('..'); {fix}")
    full = root / name
    try:
        full.resolve().relative_to(root.resolve())
    except ValueError:
        raise FormatError(f"{src}: texture path {name!r} resolves outside the baked directory "
                          f"(a symbolic link?); {fix}") from None
    except (OSError, RuntimeError) as exc:
        raise FormatError(f"{src}: texture path {name!r:.80} cannot be resolved ({exc}); {fix}") from None
    return full


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _digest(item: dict, r: _Reader, prefix: str) -> str | None:
    """The optional ``sha256`` of a texture entry: 64 lowercase hex digits."""
    value = item.get("sha256")
    if value is None:
        return None
    if not (isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)):
        raise r.bad("sha256", prefix, "64 lowercase hexadecimal digits", value)
    return value


def _read_textures(root: Path, r: _Reader) -> list[TextureSpec]:
    items = r.get("textures", None, "")
    if not isinstance(items, list) or not items or len(items) > 1 << 16:
        raise r.bad("textures", "", "a non-empty list", items)
    out, total = [], 0
    for k, item in enumerate(items):
        prefix = f"textures[{k}]."
        if not isinstance(item, dict):
            raise r.bad(f"textures[{k}]", "", "an object", item)
        kind = r.text("kind", item, prefix)
        if kind not in KINDS:
            raise FormatError(f"{r.src}: {prefix}kind {kind!r} is unknown (expected one of {', '.join(KINDS)}); "
                              "bake again")
        channels, w, h = (r.integer(key, item, prefix) for key in ("channels", "width", "height"))
        if channels != KINDS[kind][0]:
            raise FormatError(f"{r.src}: {prefix}channels is {channels}, {kind} textures have {KINDS[kind][0]}; "
                              "bake again")
        if not (1 <= w <= MAX_TEXTURE_SIDE and 1 <= h <= MAX_TEXTURE_SIDE):
            raise FormatError(f"{r.src}: {prefix} size {w}x{h} is absurd (sides 1..{MAX_TEXTURE_SIDE}); bake again")
        total += w * h
        if total > MAX_TEXELS:
            raise FormatError(f"{r.src}: the textures hold more than {MAX_TEXELS:,} texels; the dimensions are "
                              f"absurd or the file is damaged (refusing to allocate): bake it again")
        name = r.text("file", item, prefix)
        if not _is_file(_safe_relative(root, name, r.src)):
            raise FormatError(f"{r.src}: texture {name} is missing; copy the whole baked directory or bake again")
        out.append(TextureSpec(name, kind, channels, w, h, _digest(item, r, prefix)))
    return out


def _read_tiles(r: _Reader, info: MPIInfo, textures: list[TextureSpec]) -> dict[str, list[Tile]]:
    tiles_raw = r.obj("tiles")
    tiles: dict[str, list[Tile]] = {}
    for kind in KINDS:
        items = r.get(kind, tiles_raw, "tiles.")
        count = info.tile_count(kind)
        if not isinstance(items, list) or len(items) != count:
            n = len(items) if isinstance(items, list) else items
            raise FormatError(f"{r.src}: tiles.{kind} lists {n} tiles, the MPI needs {count} "
                              f"(planes = layers x sublayers = {info.n_planes}, layers = {info.layers}, "
                              f"basis = {info.n_basis}); the file is inconsistent, bake again")
        tw, th = info.tile_size(kind)
        out = []
        for k, item in enumerate(items):
            prefix = f"tiles.{kind}[{k}]."
            if not isinstance(item, dict):
                raise r.bad(f"tiles.{kind}[{k}]", "", "an object", item)
            t = Tile(*(r.integer(f, item, prefix) for f in ("texture", "x", "y", "w", "h")))
            if not 0 <= t.texture < len(textures) or textures[t.texture].kind != kind:
                raise FormatError(f"{r.src}: {prefix}texture {t.texture} is not a {kind} texture; bake again")
            if (t.w, t.h) != (tw, th):
                raise FormatError(f"{r.src}: {prefix} size {t.w}x{t.h} differs from the {kind} tile size "
                                  f"{tw}x{th}; bake again")
            tex = textures[t.texture]
            if t.x < GUTTER or t.y < GUTTER or t.x + t.w + GUTTER > tex.width or t.y + t.h + GUTTER > tex.height:
                raise FormatError(f"{r.src}: {prefix} rectangle ({t.x}, {t.y}, {t.w}x{t.h}) with its gutter lies "
                                  f"outside its atlas {tex.file} ({tex.width}x{tex.height}); bake again")
            out.append(t)
        tiles[kind] = out
    return tiles


def _damaged(path: Path, why: str) -> FormatError:
    return FormatError(f"{path}: texture {path.name} is damaged ({why}); re-run `nex bake` to bake the run "
                       f"again, or copy the whole baked directory again")


def _check_digest(path: Path, spec: TextureSpec, digest: str) -> None:
    if spec.sha256 is not None and digest != spec.sha256:
        raise _damaged(path, "its sha256 differs from the one recorded in mpi.json")


def verify_textures(layout: BakedLayout) -> None:
    """Check every texture that has a recorded sha256 against its file (reads the files, decodes nothing)."""
    for spec in layout.textures:
        if spec.sha256 is None:
            continue
        path = layout.path(spec)
        h = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                while chunk := f.read(_HASH_CHUNK):
                    h.update(chunk)
        except OSError as exc:
            raise FormatError(f"{path}: texture listed in {layout.root / MANIFEST} cannot be read ({exc}); "
                              f"copy the whole baked directory or re-run `nex bake`") from None
        _check_digest(path, spec, h.hexdigest())


def _decode_png(data: bytes, spec: TextureSpec, path: Path, src: str) -> np.ndarray:
    """Check the PNG's header against the manifest, then its sha256 (when recorded), then decode it."""
    from PIL import Image, UnidentifiedImageError

    old_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # the manifest's size is checked below, before decoding
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "PNG" or img.size != (spec.width, spec.height):
                raise FormatError(f"{path}: expected a {spec.width}x{spec.height} PNG as {src} says, found "
                                  f"{img.format} {img.size[0]}x{img.size[1]}; bake again")
            want_mode = "L" if spec.channels == 1 else "RGB"
            if img.mode != want_mode:
                raise FormatError(f"{path}: expected an 8-bit {want_mode} PNG, found mode {img.mode}; bake again")
            _check_digest(path, spec, hashlib.sha256(data).hexdigest())
            return np.asarray(img)
    except FormatError:
        raise
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, zlib.error ... for damaged PNGs
        why = "not a PNG file" if isinstance(exc, UnidentifiedImageError) else f"cannot read the PNG: {exc}"
        raise _damaged(path, why) from None
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit


def read_texture(layout: BakedLayout, index: int) -> np.ndarray:
    """One texture's 8-bit codes [height, width, channels], checked against the manifest (size, mode and,
    when recorded, sha256) before decoding."""
    spec = layout.textures[index]
    path = layout.path(spec)
    src = str(layout.root / MANIFEST)
    if not _is_file(path):
        raise FormatError(f"{path}: texture listed in {src} is missing; copy the whole baked directory or bake again")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FormatError(f"{path}: texture listed in {src} cannot be read ({exc}); copy the whole baked "
                          f"directory or re-run `nex bake`") from None
    arr = _decode_png(data, spec, path, src)
    return arr.reshape(spec.height, spec.width, spec.channels)


def read_baked(baked_dir: Path, dtype=np.float32) -> BakedMPI:
    """Read a baked directory into float arrays (``dtype``; float16 halves the memory of large MPIs).

    Each texture's sha256 (when recorded) is checked as it is read.
    """
    layout = read_layout(baked_dir, verify=False)
    info = layout.info
    h, w, n = info.mpi_height, info.mpi_width, info.n_basis
    alpha = np.empty((info.n_planes, h, w), dtype)
    k0 = np.empty((info.layers, h, w, 3), dtype)
    coeffs = np.empty((info.layers, h, w, 3, n), dtype)
    lut = np.empty((n, info.lut_height, info.lut_width), dtype)
    users: dict[int, list[tuple[str, int, Tile]]] = {}
    for kind, tiles in layout.tiles.items():
        for k, t in enumerate(tiles):
            users.setdefault(t.texture, []).append((kind, k, t))
    for tex_index, uses in sorted(users.items()):
        codes = read_texture(layout, tex_index)
        for kind, k, t in uses:
            vals = decode_kind(kind, codes[t.y:t.y + t.h, t.x:t.x + t.w], dtype)
            if kind == "alpha":
                alpha[k] = vals[..., 0]
            elif kind == "k0":
                k0[k] = vals
            elif kind == "coeff":
                coeffs[k // n, ..., k % n] = vals
            else:
                for c in range(3):
                    if 3 * k + c < n:
                        lut[3 * k + c] = vals[..., c]
        del codes
    return BakedMPI(info, alpha, k0, coeffs, lut)
