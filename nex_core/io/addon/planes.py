"""A baked MPI as planes in front of its reference camera: each plane's rectangle, quad and UVs, which
planes share a material, each plane's attributes, and how opaque the MPI is from its reference view.

The rig sits at the reference camera with Blender camera axes (the MPI looks down its -Z); plane j is a
quad at z = -depth_j exactly covering the MPI's frustum rectangle (the reference image plus ``offset``
texels on every side), with its origin at its centre (EEVEE sorts blended surfaces per object by origin).
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np

from ..errors import ConfigError
from .shading_spec import tile_offset

OPACITY_BUDGET = 1 << 24  # alpha texels read back to measure the opacity (larger MPIs are not measured)


def plane_rectangle(info, depth: float) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1): the MPI plane at ``depth`` in the reference frame, OpenCV axes (y down); the
    outer edges of the MPI's texels (reference pixels -offset .. W + offset)."""
    x0 = (-info.offset - info.cx) / info.fx * depth
    x1 = (info.width + info.offset - info.cx) / info.fx * depth
    y0 = (-info.offset - info.cy) / info.fy * depth
    y1 = (info.height + info.offset - info.cy) / info.fy * depth
    return x0, x1, y0, y1


def plane_mesh_data(info, depth: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre [3], vertices [4, 3] relative to it, uvs [4, 2]) of a plane, rig frame (Blender axes).

    The quad faces the reference camera (+Z); its UVs are the MPI's normalised texel coordinates (u to
    the right, v up, as Blender images are stored bottom row first)."""
    x0, x1, y0, y1 = plane_rectangle(info, depth)
    # Blender axes: y up = -y(OpenCV); counter-clockwise seen from +Z.
    corners = np.array([[x0, -y1, -depth], [x1, -y1, -depth], [x1, -y0, -depth], [x0, -y0, -depth]])
    uvs = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    centre = corners.mean(0)
    return centre, corners - centre, uvs


def material_key(layout, plane: int) -> tuple[int, int]:
    """Planes with equal keys share a material: the same layer (k0, coefficients, first-plane depth are
    constants of the material) and the same alpha atlas (the tile offset is a per-plane attribute)."""
    return plane // layout.info.sublayers, layout.tiles["alpha"][plane].texture


def plane_attributes(layout, plane: int) -> dict[str, object]:
    """The custom properties a plane's material reads: its alpha tile's offset in the atlas."""
    tile = layout.tiles["alpha"][plane]
    spec = layout.textures[tile.texture]
    return {"nex_a": list(tile_offset(tile.x, tile.y, spec.width, spec.height))}


def reference_camera_json(info) -> str:
    """The reference camera's intrinsics, as stored on the rig."""
    return json.dumps({"width": info.width, "height": info.height, "fx": info.fx, "fy": info.fy,
                       "cx": info.cx, "cy": info.cy})


def faithful_view_transform(linear_output: bool) -> str:
    """The view transform under which the MPI's pixels come out as trained."""
    return "Standard" if linear_output else "Raw"


def opacity_atlases(layout) -> list[int] | None:
    """The alpha atlases :func:`reference_opacity` reads, or None when they are too large to read back."""
    used = sorted({t.texture for t in layout.tiles["alpha"]})
    if sum(layout.textures[i].width * layout.textures[i].height for i in used) > OPACITY_BUDGET:
        return None
    return used


def reference_opacity(layout, alpha: dict[int, np.ndarray]) -> float:
    """Mean accumulated alpha of the MPI seen from its reference camera, from the alpha atlases
    (``alpha[index]``: [H, W], top row first). There every plane's texel (col, row) lies on the same ray,
    so it is 1 - prod_j (1 - alpha_j) per texel, over the reference image (the padding left out)."""
    transmittance = 1.0
    for t in layout.tiles["alpha"]:
        transmittance = transmittance * (1.0 - alpha[t.texture][t.y:t.y + t.h, t.x:t.x + t.w])
    info = layout.info
    inner = transmittance[info.offset:info.offset + info.height, info.offset:info.offset + info.width]
    return float(1.0 - inner.mean())


# --------------------------------------------------------------------------------------------------
# Merged planes: fewer, cheaper planes for Blender (the import's "Merge Planes" option)
#
# k consecutive sublayers of one layer become one plane. A layer's k0 and coefficients are per layer in
# the baked format already, so from the reference view the k planes have one colour per texel and merging
# them is exact: alpha 1 - prod(1 - a_i) (premultiplied over of equal colours). Off the reference view the
# parallax between the k planes is lost: the merged plane sits at their mean inverse depth.


def merge_groups(info, k: int) -> list[list[int]]:
    """The planes each merged plane replaces, nearest first: k consecutive sublayers of one layer."""
    if k < 1 or info.sublayers % k:
        divisors = [d for d in range(1, info.sublayers + 1) if info.sublayers % d == 0]
        raise ConfigError(f"merge planes {k}: choose a number that divides the MPI's {info.sublayers} planes per "
                          f"layer ({', '.join(map(str, divisors))})")
    return [list(range(j, j + k)) for j in range(0, info.n_planes, k)]


def merged_depth(depths) -> float:
    """Where a merged plane sits: the mean inverse depth of the planes it replaces."""
    return float(1.0 / np.mean(1.0 / np.asarray(depths, dtype=np.float64)))


def merged_info(info, k: int):
    """The MPIInfo of the merged MPI: ``sublayers / k`` planes per layer at their groups' depths."""
    groups = merge_groups(info, k)
    meta = {**info.metadata, "merged_planes": k, "planes_before_merging": info.n_planes}
    return replace(info, sublayers=info.sublayers // k, metadata=meta,
                   depths=tuple(merged_depth([info.depths[j] for j in g]) for g in groups))


def merged_layout(layout, k: int):
    """The layout the merged planes are built from: the merged info, and as each merged plane's alpha tile
    the tile of its group's first plane (which :func:`merge_alpha_atlases` fills with the merged alpha)."""
    groups = merge_groups(layout.info, k)
    tiles = {**layout.tiles, "alpha": [layout.tiles["alpha"][g[0]] for g in groups]}
    return replace(layout, info=merged_info(layout.info, k), tiles=tiles)


def merge_alpha(alphas) -> np.ndarray:
    """The alpha of planes seen through each other, front to back: 1 - prod(1 - a_i)."""
    transmittance = np.ones_like(np.asarray(alphas[0], dtype=np.float32))
    for a in alphas:
        transmittance = transmittance * (1.0 - a)
    return 1.0 - transmittance


def merged_alpha_textures(layout, k: int) -> list[int]:
    """The alpha atlases that hold a merged plane's tile (its group's first tile); no merged plane reads
    the others, so an import can drop them."""
    tiles = layout.tiles["alpha"]
    return sorted({tiles[group[0]].texture for group in merge_groups(layout.info, k)})


def merge_alpha_atlases(layout, alpha: dict[int, np.ndarray], k: int) -> dict[int, np.ndarray]:
    """New alpha atlases whose group-first tiles hold the merged alpha, snapped to 8-bit codes, in [0, 1].

    ``alpha[index]``: [H, W] top row first, for every alpha atlas of ``layout``, either 8-bit codes (uint8)
    or values in [0, 1]. Only the atlases of :func:`merged_alpha_textures` are returned; their other tiles
    are left as they were (no merged plane reads them). Tiles are converted one at a time, so memory
    stays near the 8-bit inputs plus the atlases returned."""
    tiles = layout.tiles["alpha"]
    out = {index: _unit(alpha[index]) for index in merged_alpha_textures(layout, k)}
    for group in merge_groups(layout.info, k):
        first = tiles[group[0]]
        parts = [_unit(alpha[t.texture][t.y:t.y + t.h, t.x:t.x + t.w]) for t in (tiles[j] for j in group)]
        out[first.texture][first.y:first.y + first.h, first.x:first.x + first.w] = \
            np.round(merge_alpha(parts) * 255.0) / 255.0
    return out


def _unit(values: np.ndarray) -> np.ndarray:
    """8-bit codes (uint8) or values in [0, 1] -> a float32 copy in [0, 1]."""
    if values.dtype == np.uint8:
        return values.astype(np.float32) / np.float32(255.0)
    return np.array(values, dtype=np.float32, copy=True)


def merged_baked(baked, k: int):
    """The merged MPI as a BakedMPI (to measure what merging costs with the reference renderer)."""
    groups = merge_groups(baked.info, k)
    alpha = np.stack([merge_alpha([baked.alpha[j] for j in g]) for g in groups]).astype(np.float32)
    return replace(baked, info=merged_info(baked.info, k), alpha=alpha)
