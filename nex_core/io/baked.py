"""The baked MPI: a trained NeX as plain arrays, and its on-disk form (``mpi.json`` + 8-bit PNG atlases).

Torch-free: numpy only at import time (Pillow is imported when pixels are read or written), so the
Blender add-on can import this module and read :func:`read_layout` without either.

A baked MPI holds, for an MPI of ``D = layers * sublayers`` planes of ``H' x W'`` texels:

* ``alpha`` [D, H', W'] in [0, 1], per plane;
* ``k0`` [L, H', W', 3] in [0, 1], the base colour, per layer;
* ``coeffs`` [L, H', W', 3, N] in [-1, 1], the view-dependent coefficients k_n, per layer;
* ``basis_lut`` [N, lut_h, lut_w] in [-1, 1], the basis H_n(v) tabulated over the view direction's
  (vx, vy) on a rectangle ``lut_vx x lut_vy`` (texel centres on the rectangle's edges: texel ``i`` of
  ``lut_w`` sits at ``vx = vx0 + i * (vx1 - vx0) / (lut_w - 1)``; look-ups clamp to the rectangle).

A plane texel seen along the unit direction ``v`` (reference-camera frame, OpenCV axes) has colour
``clamp(k0 + sum_n coeffs[..., n] * H_n(vx, vy), 0, 1)``; a layer's coefficient images are sampled where
the ray meets the layer's *first* plane (``coefficient_lookup = "layer_first_plane"``), alpha and k0 where
it meets the plane itself. Planes are composited front to back with the over operator.

On disk, values are 8-bit: unsigned data (alpha, k0) as ``v = round(x * 255)``, decoded ``x = v / 255``;
signed data (coefficients, basis) as ``v = round((x + 1) / 2 * 255)``, decoded ``x = v / 255 * 2 - 1``.
Tiles of one kind share atlases no larger than ``max_texture`` per side, each tile surrounded by a
1-texel gutter (zeros for alpha and k0, so a GPU's bilinear filter reproduces zero padding; a copy of the
tile's edge for coefficients and the basis, so it reproduces clamping). See :func:`layout_schema_doc`.

Each texture entry of mpi.json records the ``sha256`` of its PNG file. Readers check it (a damaged
texture is refused with a FormatError that names it); the field is optional in version 1, so bakes made
before it was added still read, unchecked.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Callable

import numpy as np

from .cameras import Camera, opencv_to_opengl, pose_problem
from .errors import FormatError, NexError

FORMAT_NAME = "nex-baked-mpi"
FORMAT_VERSION = 1
MANIFEST = "mpi.json"
COEFFICIENT_LOOKUP = "layer_first_plane"
GUTTER = 1  # texels of padding around every tile
MAX_TEXELS = 1 << 30  # readers refuse more texels than this, summed over all textures
MAX_TEXTURE_SIDE = 65536
_HASH_CHUNK = 1 << 20

# kind -> (channels, signed, gutter mode)
KINDS: dict[str, tuple[int, bool, str]] = {
    "alpha": (1, False, "zero"),
    "k0": (3, False, "zero"),
    "coeff": (3, True, "edge"),
    "basis": (3, True, "edge"),
}


# --------------------------------------------------------------------------------------------------
# 8-bit encoding


def encode_unsigned(x: np.ndarray) -> np.ndarray:
    """[0, 1] -> uint8 ``round(x * 255)`` (clipped; float32 arithmetic, in place on one copy)."""
    y = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    y *= 255.0
    return np.rint(y, out=y).astype(np.uint8)


def decode_unsigned(v: np.ndarray, dtype=np.float32) -> np.ndarray:
    return v.astype(dtype) / dtype(255.0)


def encode_signed(x: np.ndarray) -> np.ndarray:
    """[-1, 1] -> uint8 ``round((x + 1) / 2 * 255)`` (clipped; float32 arithmetic, in place on one copy)."""
    y = np.clip(np.asarray(x, dtype=np.float32), -1.0, 1.0)
    y += 1.0
    y *= 127.5
    return np.rint(y, out=y).astype(np.uint8)


def decode_signed(v: np.ndarray, dtype=np.float32) -> np.ndarray:
    return v.astype(dtype) / dtype(255.0) * dtype(2.0) - dtype(1.0)


def _encode(kind: str, x: np.ndarray) -> np.ndarray:
    return encode_signed(x) if KINDS[kind][1] else encode_unsigned(x)


def _decode(kind: str, v: np.ndarray, dtype=np.float32) -> np.ndarray:
    return decode_signed(v, dtype) if KINDS[kind][1] else decode_unsigned(v, dtype)


# --------------------------------------------------------------------------------------------------
# The in-memory form


@dataclass
class MPIInfo:
    """Everything about a baked MPI except its pixels."""

    width: int  # reference image size (pixels), without padding
    height: int
    fx: float
    fy: float
    cx: float  # pixel-centre convention: pixel (col, row) has its centre at (col + 0.5, row + 0.5)
    cy: float
    offset: int  # MPI padding in pixels on each side
    depths: tuple[float, ...]  # plane depths in the reference frame, nearest first
    layers: int
    sublayers: int
    n_basis: int
    basis_kind: str  # "learned", "sh", "fourier"
    lut_width: int
    lut_height: int
    lut_vx: tuple[float, float]  # (min, max) of the view direction's x the LUT spans
    lut_vy: tuple[float, float]
    ref_c2w: np.ndarray = field(repr=False)  # 4x4 reference camera-to-world, OpenCV axes, scene world frame
    invz: bool | None = None  # how the depths were spaced (informational; ``depths`` is authoritative)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.depths = tuple(float(d) for d in self.depths)
        self.lut_vx = (float(self.lut_vx[0]), float(self.lut_vx[1]))
        self.lut_vy = (float(self.lut_vy[0]), float(self.lut_vy[1]))
        self.ref_c2w = np.asarray(self.ref_c2w, dtype=np.float64).reshape(4, 4)

    @property
    def mpi_width(self) -> int:
        return self.width + 2 * self.offset

    @property
    def mpi_height(self) -> int:
        return self.height + 2 * self.offset

    @property
    def n_planes(self) -> int:
        return self.layers * self.sublayers

    @property
    def n_lut_tiles(self) -> int:
        """RGB basis-LUT tiles: channel k of tile g holds H_{3g+k}."""
        return math.ceil(self.n_basis / 3)

    @property
    def ref_c2w_blender(self) -> np.ndarray:
        """The reference camera-to-world with Blender/OpenGL camera axes (x right, y up, z backward)."""
        return opencv_to_opengl(self.ref_c2w)

    def ref_camera(self) -> Camera:
        return Camera(self.width, self.height, self.fx, self.fy, self.cx, self.cy, self.ref_c2w, "reference")

    def tile_size(self, kind: str) -> tuple[int, int]:
        """(width, height) of one tile of ``kind``."""
        if kind == "basis":
            return self.lut_width, self.lut_height
        return self.mpi_width, self.mpi_height

    def tile_count(self, kind: str) -> int:
        return {"alpha": self.n_planes, "k0": self.layers, "coeff": self.layers * self.n_basis,
                "basis": self.n_lut_tiles}[kind]

    def total_values(self) -> int:
        """Number of array values of the decoded MPI (what reading it allocates, in float32s)."""
        plane = self.mpi_width * self.mpi_height
        return (self.n_planes * plane + self.layers * plane * 3 * (1 + self.n_basis)
                + self.n_basis * self.lut_width * self.lut_height)

    def check(self, source: str = "baked MPI") -> None:
        """Raise FormatError if the numbers do not add up."""
        ints = {"width": self.width, "height": self.height, "offset": self.offset, "layers": self.layers,
                "sublayers": self.sublayers, "n_basis": self.n_basis, "lut_width": self.lut_width,
                "lut_height": self.lut_height}
        for name, value in ints.items():
            low = 0 if name == "offset" else (2 if name.startswith("lut") else 1)
            if not isinstance(value, (int, np.integer)) or value < low or value > MAX_TEXTURE_SIDE:
                raise FormatError(f"{source}: {name} = {value!r} is out of range ({low}..{MAX_TEXTURE_SIDE}); "
                                  f"the file is damaged: bake it again")
        if len(self.depths) != self.n_planes:
            raise FormatError(f"{source}: {len(self.depths)} plane depths for layers x sublayers = "
                              f"{self.layers} x {self.sublayers} = {self.n_planes} planes; bake it again")
        d = np.asarray(self.depths)
        if not (np.all(np.isfinite(d)) and np.all(d > 0) and np.all(np.diff(d) > 0)):
            raise FormatError(f"{source}: plane depths must be positive and increasing (nearest first); bake it again")
        nums = [self.fx, self.fy, self.cx, self.cy, *self.lut_vx, *self.lut_vy]
        if not all(math.isfinite(x) for x in nums) or self.fx <= 0 or self.fy <= 0:
            raise FormatError(f"{source}: camera intrinsics or LUT range are not finite positive numbers; bake it "
                              "again")
        if not (self.lut_vx[0] < self.lut_vx[1] and self.lut_vy[0] < self.lut_vy[1]):
            raise FormatError(f"{source}: empty LUT range vx {self.lut_vx}, vy {self.lut_vy}; bake it again")
        with np.errstate(invalid="ignore", over="ignore"):
            problem = pose_problem(self.ref_c2w)
        if problem:
            raise FormatError(f"{source}: the reference camera pose is unusable: {problem}; bake it again")
        if self.total_values() > 2 * MAX_TEXELS:
            raise FormatError(f"{source}: {self.total_values():,} values is more than this reader allows "
                              f"({2 * MAX_TEXELS:,}); the dimensions are absurd or the file is damaged: bake it "
                              "again")


@dataclass
class BakedMPI:
    """A baked MPI in memory: float32 arrays (see the module docstring) plus its :class:`MPIInfo`."""

    info: MPIInfo
    alpha: np.ndarray  # [D, H', W'] in [0, 1]
    k0: np.ndarray  # [L, H', W', 3] in [0, 1]
    coeffs: np.ndarray  # [L, H', W', 3, N] in [-1, 1]
    basis_lut: np.ndarray  # [N, lut_h, lut_w] in [-1, 1]

    def check(self, source: str = "baked MPI") -> None:
        """Raise FormatError if array shapes disagree with the info."""
        i = self.info
        i.check(source)
        h, w = i.mpi_height, i.mpi_width
        want = {"alpha": (i.n_planes, h, w), "k0": (i.layers, h, w, 3), "coeffs": (i.layers, h, w, 3, i.n_basis),
                "basis_lut": (i.n_basis, i.lut_height, i.lut_width)}
        for name, shape in want.items():
            got = getattr(self, name).shape
            if tuple(got) != shape:
                raise FormatError(f"{source}: {name} has shape {tuple(got)}, expected {shape}")

    def quantized(self) -> "BakedMPI":
        """A copy with every value snapped to its 8-bit code (what a write/read round trip gives)."""
        q = lambda kind, x: _decode(kind, _encode(kind, x))  # noqa: E731
        return replace(self, alpha=q("alpha", self.alpha), k0=q("k0", self.k0), coeffs=q("coeff", self.coeffs),
                       basis_lut=q("basis", self.basis_lut))


# --------------------------------------------------------------------------------------------------
# Texture layout


@dataclass(frozen=True)
class TextureSpec:
    file: str  # relative to the baked directory, posix separators
    kind: str
    channels: int
    width: int
    height: int
    sha256: str | None = None  # hex digest of the PNG file; optional in version 1 (older bakes lack it)


@dataclass(frozen=True)
class Tile:
    texture: int  # index into the texture list
    x: int  # interior rectangle (without the gutter), texels from the atlas's top-left
    y: int
    w: int
    h: int


@dataclass
class BakedLayout:
    """A baked directory's manifest, checked, without its pixels (cheap: what the add-on reads)."""

    root: Path
    info: MPIInfo
    textures: list[TextureSpec]
    tiles: dict[str, list[Tile]]  # kind -> tiles in order (see layout_schema_doc)

    def path(self, texture: int | TextureSpec) -> Path:
        spec = self.textures[texture] if isinstance(texture, int) else texture
        return self.root / spec.file

    def texture_bytes(self) -> int:
        return sum(self.path(t).stat().st_size for t in self.textures)


def plan_atlases(n_tiles: int, tile_w: int, tile_h: int, max_texture: int,
                 gutter: int = GUTTER) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """Grid-pack ``n_tiles`` equal tiles into atlases no larger than ``max_texture`` per side.

    Returns, per atlas, (width, height, interior top-left corner of each of its tiles); tiles fill
    atlases in order, row by row; a partly filled atlas is made about square.
    """
    cell_w, cell_h = tile_w + 2 * gutter, tile_h + 2 * gutter
    cols_max, rows_max = max_texture // cell_w, max_texture // cell_h
    if cols_max < 1 or rows_max < 1:
        raise NexError(f"a {tile_w}x{tile_h} texel tile (plus its {gutter}-texel gutter) does not fit a "
                       f"{max_texture}-texel texture; raise --max-texture or bake a smaller MPI")
    per_atlas = cols_max * rows_max
    atlases = []
    for start in range(0, n_tiles, per_atlas):
        count = min(per_atlas, n_tiles - start)
        # As square as the count allows (a wide strip wastes nothing but is awkward for viewers).
        cols = min(cols_max, count, max(1, math.ceil(math.sqrt(count * cell_h / cell_w))))
        cols = max(cols, math.ceil(count / rows_max))
        rows = math.ceil(count / cols)
        corners = [((k % cols) * cell_w + gutter, (k // cols) * cell_h + gutter) for k in range(count)]
        atlases.append((cols * cell_w, rows * cell_h, corners))
    return atlases


def layout_schema_doc() -> str:
    """What the tile lists of mpi.json mean (also written into the file as ``tile_order``)."""
    return ("alpha: one tile per plane, nearest first (1 channel). k0: one tile per layer (RGB). "
            "coeff: one tile per (layer l, basis n) at index l * N + n, RGB = k_n of the red, green and "
            "blue channel. basis: ceil(N / 3) LUT tiles, channel k of tile g = H_(3g+k); unused channels "
            "hold 128. Rows run top to bottom, tile row 0 is the MPI's top row (reference image y down).")


# --------------------------------------------------------------------------------------------------
# Writing


class _AtlasStream:
    """Tiles of one kind, placed into atlases that are written to PNG as soon as they are full."""

    def __init__(self, root: Path, kind: str, tile_w: int, tile_h: int, n_tiles: int, max_texture: int,
                 save: Callable[[np.ndarray, Path], None]):
        self.root, self.kind, self.save = root, kind, save
        self.channels, _, self.gutter_mode = KINDS[kind]
        self.tile_w, self.tile_h = tile_w, tile_h
        self.plan = plan_atlases(n_tiles, tile_w, tile_h, max_texture)
        self.where: list[tuple[int, int, int]] = [(a, x, y) for a, (_, _, corners) in enumerate(self.plan)
                                                  for x, y in corners]
        self.remaining = [len(c) for _, _, c in self.plan]
        self.buffers: dict[int, np.ndarray] = {}
        self.filled = [False] * n_tiles
        self.files = [f"{kind}_{a:02d}.png" for a in range(len(self.plan))]

    def put(self, index: int, codes: np.ndarray) -> None:
        """Place tile ``index`` (uint8 [tile_h, tile_w, channels])."""
        if self.filled[index]:
            raise ValueError(f"{self.kind} tile {index} written twice")
        a, x, y = self.where[index]
        if a not in self.buffers:
            w, h, _ = self.plan[a]
            self.buffers[a] = np.zeros((h, w, self.channels), np.uint8)
        g = GUTTER
        mode = "edge" if self.gutter_mode == "edge" else "constant"
        self.buffers[a][y - g:y + self.tile_h + g, x - g:x + self.tile_w + g] = np.pad(
            codes, ((g, g), (g, g), (0, 0)), mode=mode)
        self.filled[index] = True
        self.remaining[a] -= 1
        if self.remaining[a] == 0:
            self._flush(a)

    def _flush(self, a: int) -> None:
        self.save(self.buffers.pop(a), self.root / self.files[a])

    def complete(self) -> bool:
        return all(self.filled)

    def records(self, first_texture: int, digests: dict[str, str]) -> tuple[list[TextureSpec], list[Tile]]:
        textures = [TextureSpec(f, self.kind, self.channels, w, h, digests[f])
                    for f, (w, h, _) in zip(self.files, self.plan)]
        tiles = [Tile(first_texture + a, x, y, self.tile_w, self.tile_h) for a, x, y in self.where]
        return textures, tiles


def _save_png(codes: np.ndarray, path: Path, compress_level: int) -> tuple[str, str]:
    """Encode and write one atlas; returns (file name, sha256 hex digest of the file's bytes)."""
    from PIL import Image

    channels = codes.shape[-1]
    img = Image.fromarray(codes[..., 0] if channels == 1 else codes, "L" if channels == 1 else "RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=compress_level)
    data = buf.getvalue()
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return path.name, hashlib.sha256(data).hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BakedWriter:
    """Writes a baked directory piece by piece, holding only the atlases being filled (uint8).

    Full atlases are PNG-encoded on background threads (zlib releases the GIL), at most ``workers`` at a
    time plus as many waiting. Everything goes to a hidden temporary directory beside ``out_dir``;
    :meth:`finish` writes mpi.json last and renames the directory into place, so a crash never leaves a
    directory that looks valid. Use as a context manager: an exception discards the partial output.
    ``compress_level``: zlib level of the PNGs (1 fast .. 9 small; 3 is ~4x faster than 6 for ~10% more bytes).
    """

    def __init__(self, out_dir: Path, info: MPIInfo, max_texture: int = 4096, compress_level: int = 3,
                 workers: int | None = None):
        info.check("baked MPI to write")
        self.out_dir = Path(out_dir)
        self.info = info
        self.max_texture = int(max_texture)
        self.compress_level = int(compress_level)
        if self.out_dir.exists() and not _replaceable(self.out_dir):
            raise NexError(f"{self.out_dir} exists and is not a baked MPI; choose another output directory")
        self.tmp = self.out_dir.with_name(f".{self.out_dir.name}.partial-{uuid.uuid4().hex[:8]}")
        self.streams = {kind: _AtlasStream(self.tmp, kind, *info.tile_size(kind), info.tile_count(kind),
                                           self.max_texture, self._submit) for kind in KINDS}
        self.workers = workers or max(1, min(4, (os.cpu_count() or 2) - 1))
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="nex-png")
        self.pending: deque[Future] = deque()
        self.digests: dict[str, str] = {}
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir()
        self.finished = False

    def _submit(self, codes: np.ndarray, path: Path) -> None:
        while len(self.pending) >= 2 * self.workers:  # bound the atlases held in memory
            self._collect()
        self.pending.append(self.pool.submit(_save_png, codes, path, self.compress_level))

    def _collect(self) -> None:
        name, digest = self.pending.popleft().result()
        self.digests[name] = digest

    def _drain(self) -> None:
        while self.pending:
            self._collect()

    def __enter__(self) -> "BakedWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.finished:
            self.abort()

    def add_alpha(self, plane: int, alpha: np.ndarray) -> None:
        """Alpha of one plane, [H', W'] in [0, 1]."""
        self.streams["alpha"].put(plane, encode_unsigned(alpha)[..., None])

    def add_layer(self, layer: int, k0: np.ndarray, coeffs: np.ndarray) -> None:
        """One layer: k0 [H', W', 3] in [0, 1], coefficients [H', W', 3, N] in [-1, 1]."""
        self.streams["k0"].put(layer, encode_unsigned(k0))
        codes = encode_signed(coeffs)
        n = self.info.n_basis
        for b in range(n):
            self.streams["coeff"].put(layer * n + b, codes[..., b])

    def add_basis_lut(self, lut: np.ndarray) -> None:
        """The basis look-up table [N, lut_h, lut_w] in [-1, 1]."""
        n = self.info.n_basis
        codes = encode_signed(lut)
        for g in range(self.info.n_lut_tiles):
            tile = np.full((self.info.lut_height, self.info.lut_width, 3), 128, np.uint8)
            for k in range(3):
                if 3 * g + k < n:
                    tile[..., k] = codes[3 * g + k]
            self.streams["basis"].put(g, tile)

    def finish(self) -> Path:
        """Write mpi.json and move the directory into place; returns its path."""
        missing = [k for k, s in self.streams.items() if not s.complete()]
        if missing:
            raise ValueError(f"baked MPI incomplete: missing {', '.join(missing)} tiles")
        self._drain()
        self.pool.shutdown()
        textures: list[TextureSpec] = []
        tiles: dict[str, list[Tile]] = {}
        for kind, stream in self.streams.items():
            tex, til = stream.records(len(textures), self.digests)
            textures += tex
            tiles[kind] = til
        manifest = _manifest(self.info, textures, tiles, self.max_texture)
        (self.tmp / MANIFEST).write_text(_compact_json(manifest) + "\n", encoding="utf-8")
        _fsync(self.tmp / MANIFEST)
        old = None
        if self.out_dir.exists():
            old = self.out_dir.with_name(f".{self.out_dir.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(self.out_dir, old)
        os.replace(self.tmp, self.out_dir)
        self.finished = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.out_dir

    def abort(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.finished = True


def _replaceable(path: Path) -> bool:
    """An existing output directory may be replaced if it is empty or holds a baked MPI."""
    return path.is_dir() and not path.is_symlink() and ((path / MANIFEST).is_file() or not any(path.iterdir()))


def _manifest(info: MPIInfo, textures: list[TextureSpec], tiles: dict[str, list[Tile]],
              max_texture: int) -> dict[str, Any]:
    from .. import __version__

    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "generator": f"nex_core {__version__}",
        "reference_camera": {
            "width": info.width, "height": info.height,
            "fx": info.fx, "fy": info.fy, "cx": info.cx, "cy": info.cy,
            "c2w_opencv": info.ref_c2w.tolist(),
            "c2w_blender": info.ref_c2w_blender.tolist(),
        },
        "mpi": {
            "width": info.mpi_width, "height": info.mpi_height, "offset": info.offset,
            "layers": info.layers, "sublayers": info.sublayers, "planes": info.n_planes,
            "depths": list(info.depths), "invz": info.invz,
            "coefficient_lookup": COEFFICIENT_LOOKUP,
        },
        "basis": {
            "count": info.n_basis, "kind": info.basis_kind,
            "lut": {"width": info.lut_width, "height": info.lut_height,
                    "vx": list(info.lut_vx), "vy": list(info.lut_vy)},
        },
        "encoding": {"alpha": "unsigned", "k0": "unsigned", "coeff": "signed", "basis": "signed",
                     "unsigned": "x = v / 255", "signed": "x = v / 255 * 2 - 1"},
        "conventions": {
            "frame": "reference camera, OpenCV axes (x right, y down, z forward); plane i is z = depths[i]",
            "texels": "MPI texel (col, row) has its centre at reference pixel (col - offset + 0.5, "
                      "row - offset + 0.5); outside the MPI alpha and k0 read 0",
            "colour": "clamp(k0 + sum_n coeff_n * H_n(vx, vy), 0, 1), v the unit ray direction in the "
                      "reference frame; over-composited front to back",
            "lut": "texel i of the LUT's width is at vx = vx[0] + i * (vx[1] - vx[0]) / (width - 1) "
                   "(likewise vy down the rows); look-ups clamp to the range",
            "gutter": f"{GUTTER} texel around each tile rectangle: zeros (alpha, k0) or the tile's edge "
                      "texels (coeff, basis)",
            "tile_order": layout_schema_doc(),
        },
        "max_texture": max_texture,
        "textures": [{"file": t.file, "kind": t.kind, "channels": t.channels, "width": t.width,
                      "height": t.height, "sha256": t.sha256} for t in textures],
        "tiles": {kind: [{"texture": t.texture, "x": t.x, "y": t.y, "w": t.w, "h": t.h} for t in ts]
                  for kind, ts in tiles.items()},
        "metadata": _jsonable(info.metadata),
    }


def _compact_json(value: Any, indent: str = "") -> str:
    """Indented JSON that keeps lists of numbers, small matrices and short objects on one line."""
    scalar = lambda v: not isinstance(v, (dict, list))  # noqa: E731
    items = list(value.values()) if isinstance(value, dict) else value if isinstance(value, list) else None
    one_line = json.dumps(value, allow_nan=False, separators=(", ", ": "))
    if items is None or (isinstance(value, list) and all(map(scalar, items))):
        return one_line
    if len(one_line) <= 110 and all(map(scalar, items)):  # a short object of scalars
        return one_line
    if isinstance(value, list) and len(items) <= 4 and all(isinstance(v, list) and all(map(scalar, v))
                                                           for v in items):  # a matrix
        return one_line
    inner = indent + " "
    if isinstance(value, dict):
        body = [f"{inner}{json.dumps(k)}: {_compact_json(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(body) + "\n" + indent + "}"
    body = [inner + _compact_json(v, inner) for v in value]
    return "[\n" + ",\n".join(body) + "\n" + indent + "]"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def write_baked(baked: BakedMPI, out_dir: Path, max_texture: int = 4096, compress_level: int = 3) -> Path:
    """Write a baked MPI to ``out_dir`` (atomically: replaced only once complete); returns the path."""
    baked.check("baked MPI to write")
    with BakedWriter(out_dir, baked.info, max_texture, compress_level) as writer:
        for j in range(baked.info.n_planes):
            writer.add_alpha(j, baked.alpha[j])
        for layer in range(baked.info.layers):
            writer.add_layer(layer, baked.k0[layer], baked.coeffs[layer])
        writer.add_basis_lut(baked.basis_lut)
        return writer.finish()


# --------------------------------------------------------------------------------------------------
# Reading


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
    if raw.get("version") != FORMAT_VERSION or isinstance(raw.get("version"), bool):
        raise FormatError(f"{src}: baked-MPI version {raw.get('version')!r} is not supported (this nex reads "
                          f"version {FORMAT_VERSION}); bake the run again with this nex, or update nex")
    r = _Reader(src, raw)
    cam, mpi, basis = r.obj("reference_camera"), r.obj("mpi"), r.obj("basis")
    lut = r.obj("lut", basis, "basis.")
    if r.text("coefficient_lookup", mpi, "mpi.") != COEFFICIENT_LOOKUP:
        raise FormatError(f"{src}: mpi.coefficient_lookup must be {COEFFICIENT_LOOKUP!r}; bake again")
    invz = mpi.get("invz")
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
        invz=invz if isinstance(invz, bool) else None,
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
            vals = _decode(kind, codes[t.y:t.y + t.h, t.x:t.x + t.w], dtype)
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
