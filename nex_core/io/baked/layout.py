"""Where a baked MPI's tiles lie: its texture files, the tile rectangles in them, and how tiles are
packed into atlases."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import NexError
from .constants import GUTTER
from .types import MPIInfo


@dataclass(frozen=True)
class TextureSpec:
    """One atlas file as mpi.json lists it."""

    file: str  # relative to the baked directory, posix separators
    kind: str
    channels: int
    width: int
    height: int
    sha256: str | None = None  # hex digest of the PNG file; optional in version 1 (older bakes lack it)


@dataclass(frozen=True)
class Tile:
    """Where one tile lies in its atlas."""

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
        """The file of a texture, given as its index or its spec."""
        spec = self.textures[texture] if isinstance(texture, int) else texture
        return self.root / spec.file

    def texture_bytes(self) -> int:
        """The size of all texture files together, in bytes."""
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
