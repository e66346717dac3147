"""Writing a baked directory: tiles streamed into 8-bit PNG atlases, mpi.json last, the directory
moved into place only once complete."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from ..output_paths import check_output_dir, os_errors_as_output_errors, swap_into_place, temp_sibling
from .codec import encode_signed, encode_unsigned
from .constants import GUTTER, KINDS, MANIFEST
from .layout import TextureSpec, Tile, plan_atlases
from .manifest import compact_json, manifest
from .types import BakedMPI, MPIInfo


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
    ``compress_level``: zlib level of the PNGs (1 fast .. 9 small).
    """

    def __init__(self, out_dir: Path, info: MPIInfo, max_texture: int = 4096, compress_level: int = 3,
                 workers: int | None = None):
        info.check("baked MPI to write")
        self.out_dir = Path(out_dir)
        self.info = info
        self.max_texture = int(max_texture)
        self.compress_level = int(compress_level)
        check_baked_output(self.out_dir)
        self.tmp = temp_sibling(self.out_dir)
        self.streams = {kind: _AtlasStream(self.tmp, kind, *info.tile_size(kind), info.tile_count(kind),
                                           self.max_texture, self._submit) for kind in KINDS}
        self.workers = workers or max(1, min(4, (os.cpu_count() or 2) - 1))
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="nex-png")
        self.pending: deque[Future] = deque()
        self.digests: dict[str, str] = {}
        self.finished = False
        try:
            with self._os_errors():
                self.out_dir.parent.mkdir(parents=True, exist_ok=True)
                self.tmp.mkdir()
        except BaseException:
            self.abort()
            raise

    def _os_errors(self):
        return os_errors_as_output_errors(self.out_dir, BAKED_WHAT)

    def _submit(self, codes: np.ndarray, path: Path) -> None:
        while len(self.pending) >= 2 * self.workers:  # bound the atlases held in memory
            self._collect()
        self.pending.append(self.pool.submit(_save_png, codes, path, self.compress_level))

    def _collect(self) -> None:
        with self._os_errors():
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
        document = manifest(self.info, textures, tiles, self.max_texture)
        with self._os_errors():
            (self.tmp / MANIFEST).write_text(compact_json(document) + "\n", encoding="utf-8")
            _fsync(self.tmp / MANIFEST)
            swap_into_place(self.tmp, self.out_dir)
        self.finished = True
        return self.out_dir

    def abort(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.finished = True


BAKED_WHAT = "baked MPI folder"


def _replaceable(path: Path) -> bool:
    """An existing output directory may be replaced if it is empty or holds a baked MPI."""
    return path.is_dir() and not path.is_symlink() and ((path / MANIFEST).is_file() or not any(path.iterdir()))


def check_baked_output(path: Path) -> Path:
    """Check up front that a baked MPI can be written to (or replace) the folder ``path``."""
    return check_output_dir(Path(path), BAKED_WHAT, _replaceable)


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
