"""mpi.json as the writer makes it: the document (the format's conventions spelled out in it too) and
its compact JSON text."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from .constants import COEFFICIENT_LOOKUP, FORMAT_NAME, FORMAT_VERSION, GUTTER
from .layout import TextureSpec, Tile, layout_schema_doc
from .types import MPIInfo


def manifest(info: MPIInfo, textures: list[TextureSpec], tiles: dict[str, list[Tile]],
             max_texture: int) -> dict[str, Any]:
    """The mpi.json document of a bake."""
    from ... import __version__

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
            "coefficient_lookup": COEFFICIENT_LOOKUP, "compositing": info.compositing,
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
            "compositing": "srgb: the colours above are over-composited as they are (sRGB-encoded values); "
                           "linear: each is decoded from sRGB to linear light, composited, and the result "
                           "encoded to sRGB",
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


def compact_json(value: Any, indent: str = "") -> str:
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
        body = [f"{inner}{json.dumps(k)}: {compact_json(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(body) + "\n" + indent + "}"
    body = [inner + compact_json(v, inner) for v in value]
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
