"""What one NeX MPI material's node tree is built from (:class:`ShaderSpec`, plain data with a JSON
round trip, stored on the tree), made from a baked MPI's layout; atlas offsets and node positions.

One material per MPI *layer* and alpha atlas: the layer's k0 and coefficient tiles and its first plane's
depth are constants of the tree; each plane's alpha tile offset is an object attribute (see
:func:`tile_offset`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Sequence


@dataclass
class AtlasRef:
    image: str  # bpy.data.images name
    width: int
    height: int


@dataclass
class ShaderSpec:
    """Everything the inner node tree depends on, apart from per-plane object attributes."""

    fx: float
    fy: float
    cx: float
    cy: float
    offset: int
    mpi_width: int
    mpi_height: int
    n_basis: int
    lut_vx: tuple[float, float]
    lut_vy: tuple[float, float]
    lut_width: int
    lut_height: int
    lut_tiles: list[tuple[AtlasRef, int, int]]  # (atlas, x, y) of each LUT tile (channel k of tile g = H_3g+k)
    alpha: AtlasRef  # the planes' alpha atlas (each plane's tile offset is its ``nex_a`` attribute)
    k0: AtlasRef
    k0_tile: tuple[int, int]  # interior top-left texel of the layer's k0 tile
    coeffs: list[AtlasRef]  # atlas of coefficient n of the layer
    coeff_tiles: list[tuple[int, int]]
    d0: float  # depth of the layer's first plane, where its coefficients are read
    view_dependent: bool = True
    linear_output: bool = True
    filtering: str = "EXACT"  # "EXACT" (bilinear in the tree, 4 Closest reads) or "LINEAR" (Blender's)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ShaderSpec":
        raw = json.loads(text)
        raw["alpha"] = AtlasRef(**raw["alpha"])
        raw["k0"] = AtlasRef(**raw["k0"])
        raw["coeffs"] = [AtlasRef(**c) for c in raw["coeffs"]]
        raw["k0_tile"] = tuple(raw["k0_tile"])
        raw["coeff_tiles"] = [tuple(t) for t in raw["coeff_tiles"]]
        raw["lut_tiles"] = [(AtlasRef(**a), x, y) for a, x, y in raw["lut_tiles"]]
        raw["lut_vx"], raw["lut_vy"] = tuple(raw["lut_vx"]), tuple(raw["lut_vy"])
        return cls(**raw)


def tile_offset(x: int, y: int, atlas_width: int, atlas_height: int) -> tuple[float, float, float]:
    """The per-plane attribute for a tile whose interior top-left texel is (x, y) in its atlas: atlas
    coordinates are ``(px / W + o_u, -py / H + o_v)`` for MPI texel coordinates (px, py), px = 0 at the
    MPI's left edge, py = 0 at its top edge (Blender images have v = 0 at the bottom row)."""
    return (x / atlas_width, 1.0 - y / atlas_height, 0.0)


def shader_spec(layout, key: tuple[int, int], images: dict[int, str], view_dependent: bool = True,
                linear_output: bool = True, filtering: str = "EXACT") -> ShaderSpec:
    """The spec of the material ``key`` (layer, alpha atlas; see ``planes.material_key``) of a baked
    layout (:func:`nex_core.io.baked.read_layout`); ``images`` names each atlas's loaded image."""
    info = layout.info
    layer, alpha_texture = key
    n = info.n_basis

    def ref(index: int) -> AtlasRef:
        t = layout.textures[index]
        return AtlasRef(images[index], t.width, t.height)

    k0 = layout.tiles["k0"][layer]
    coeffs = [layout.tiles["coeff"][layer * n + b] for b in range(n)]
    return ShaderSpec(
        fx=info.fx, fy=info.fy, cx=info.cx, cy=info.cy, offset=info.offset, mpi_width=info.mpi_width,
        mpi_height=info.mpi_height, n_basis=n, lut_vx=info.lut_vx, lut_vy=info.lut_vy,
        lut_width=info.lut_width, lut_height=info.lut_height,
        lut_tiles=[(ref(t.texture), t.x, t.y) for t in layout.tiles["basis"]],
        alpha=ref(alpha_texture), k0=ref(k0.texture), k0_tile=(k0.x, k0.y),
        coeffs=[ref(t.texture) for t in coeffs], coeff_tiles=[(t.x, t.y) for t in coeffs],
        d0=float(info.depths[layer * info.sublayers]),
        view_dependent=view_dependent, linear_output=linear_output, filtering=filtering)


def node_positions(stages: Sequence[int], dx: float = 220.0, dy: float = -180.0) -> list[tuple[float, float]]:
    """Grid positions for nodes given each node's stage (column): left to right by stage, top to bottom
    in creation order within a stage."""
    rows: dict[int, int] = defaultdict(int)
    out = []
    for stage in stages:
        out.append((stage * dx, rows[stage] * dy))
        rows[stage] += 1
    return out
