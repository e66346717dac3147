"""A baked MPI as glTF 2.0 binary (.glb) for game engines and any glTF viewer. numpy + Pillow only.

What the file holds (see docs/engines.md):

* One quad per MPI plane, ordered back to front in the node list, each with its own unlit
  (``KHR_materials_unlit``), alpha-blended (``alphaMode: BLEND``), double-sided material whose base-colour
  texture is an RGBA PNG: RGB = the MPI's colour as the reference view sees it,
  ``clamp(k0 + sum_n k_n H_n(v), 0, 1)`` with ``v`` the reference camera's ray through the texel, and
  A = the plane's alpha. Any glTF viewer therefore shows the MPI correctly from (and near) the reference
  view with no custom code. Samplers are bilinear without mipmaps, clamped to the edge.
* Node ``NeX_MPI`` (the root) converts the scene's world frame, taken as Z-up (Blender's convention; the
  add-on imports MPIs into that frame), to glTF's Y-up: a -90 degree rotation about X, i.e.
  glTF (x, y, z) = world (x, z, -y) — what Blender's own glTF exporter does.
* Its child ``NeX_reference`` carries the reference camera's pose (camera-to-world with OpenGL camera
  axes: x right, y up, z backward — glTF's camera convention) as translation + rotation. Its children:
  the camera ``NeX_reference_camera`` (identity transform, the reference intrinsics as a glTF perspective
  camera) and the planes ``NeX_plane_NNN``, each translated to the centre of its quad at z = -depth.
  Each plane node's centre is in front of the camera at its depth, so engines that sort transparent
  objects by their origin's distance draw them back to front.
* ``EXT_nex_mpi`` on the ``NeX_reference`` node (listed in ``extensionsUsed`` only): everything an engine
  needs for the full view-dependent colour (k0 and coefficient textures per layer, the basis LUT and its
  range, plane depths, layer/sublayer layout, intrinsics). Schema: :data:`EXTENSION_DOC` and
  docs/engines.md; engine shaders: ``nex_core/export/shaders/nex_mpi.glsl`` and ``nex_mpi.hlsl``.

Colour spaces: the MPI's colours are display (sRGB-encoded) values; the bake's ``compositing`` says where
they are over-composited. The base colour textures are sRGB as glTF defines them: a viewer that decodes
them and blends in linear light (Blender, engines with a linear HDR pipeline) shows an MPI composited in
"linear" light exactly, and one composited in "srgb" values slightly differently where planes are
semi-transparent; three.js rendering straight to the canvas blends the encoded values, the other way
round. The extension's textures are data (linear, not colour): sample them without sRGB decoding.
"""

from __future__ import annotations

import io
import json
import math
import struct
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..io.baked import BakedMPI, read_baked, read_layout
from ..io.baked.codec import encode_signed, encode_unsigned
from ..io.baked.reference_render import basis_from_lut
from ..io.errors import NexError
from ..io.output_paths import check_output_file, replacing_file

GLB_WHAT = "glTF file"
EXTENSION = "EXT_nex_mpi"
EXTENSION_VERSION = 2  # 2: the compositing field (version 1 blends sRGB values)
UNLIT = "KHR_materials_unlit"
LINEAR, CLAMP_TO_EDGE = 9729, 33071
FLOAT, UNSIGNED_SHORT = 5126, 5123
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
# Blender / Z-up world -> glTF Y-up: rotation of -90 degrees about X (glTF (x, y, z) = world (x, z, -y)).
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
_CV_TO_GL = np.diag([1.0, -1.0, -1.0])

EXTENSION_DOC = (
    "EXT_nex_mpi (on the node whose local frame is the reference camera, OpenGL axes: x right, y up, "
    "z backward; the MPI's own OpenCV reference frame is this with y and z negated). Plane i lies at "
    "z = -depths[i] (nearest first); planes[i] is its node; its alpha is the alpha channel of its base "
    "colour texture. MPI texel (col, row) of a W' x H' plane texture has its centre at reference pixel "
    "(col - offset + 0.5, row - offset + 0.5), i.e. at OpenCV (x, y) = ((col - offset + 0.5 - cx) / fx, "
    "(row - offset + 0.5 - cy) / fy) * depth; texture coordinates (0, 0) = the top-left corner of texel "
    "(0, 0). Plane i belongs to layer floor(i / sublayers). Colour of a plane point seen along the unit "
    "direction v (camera centre to point, in the OpenCV reference frame) = clamp(k0 + sum_n coeff_n * "
    "H_n(v.x, v.y), 0, 1): k0 from k0Textures[layer] at the point (unsigned: x = v / 255, zero outside "
    "the quad), coeff_n from coefficientTextures[layer][n] where the ray meets the layer's first plane "
    "(coefficientLookup = layer_first_plane; signed: x = v / 255 * 2 - 1, clamped to the edge), H_n from "
    "channel n % 3 of basis.lutTextures[n / 3] (signed) at texel coordinates ((clamp(vx) - vx[0]) / "
    "(vx[1] - vx[0]) * (lutWidth - 1), likewise vy down the rows), clamped to the range. Planes are "
    "over-composited (back to front: premultiplied colour, ONE, ONE_MINUS_SRC_ALPHA) where compositing "
    "says: \"srgb\": the display (sRGB-encoded) values as they are; \"linear\": each decoded to linear "
    "light, blended, and the result encoded to sRGB for display. The extension's textures are data: "
    "sample them bilinearly without sRGB decoding."
)


# --------------------------------------------------------------------------------------------------
# Helpers


def _png(codes: np.ndarray, compress_level: int) -> bytes:
    from PIL import Image

    mode = {1: "L", 3: "RGB", 4: "RGBA"}[codes.shape[-1]]
    img = Image.fromarray(codes[..., 0] if codes.shape[-1] == 1 else codes, mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def rotation_to_quaternion(r: np.ndarray) -> list[float]:
    """A proper rotation matrix -> unit quaternion [x, y, z, w] (glTF's order), w >= 0."""
    r = np.asarray(r, dtype=np.float64)
    tr = np.trace(r)
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        q = [(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, 0.25 * s]
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = math.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2]) * 2
        q = [0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s, (r[2, 1] - r[1, 2]) / s]
    elif r[1, 1] > r[2, 2]:
        s = math.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2]) * 2
        q = [(r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s, (r[0, 2] - r[2, 0]) / s]
    else:
        s = math.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1]) * 2
        q = [(r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s, (r[1, 0] - r[0, 1]) / s]
    q = np.array(q)
    q /= np.linalg.norm(q)
    if q[3] < 0:
        q = -q
    return [float(x) for x in q]


def _orthonormalised(r: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(r)
    out = u @ vt
    if np.linalg.det(out) < 0:
        u[:, -1] *= -1
        out = u @ vt
    return out


def reference_colours(baked: BakedMPI, layer: int, basis: np.ndarray | None) -> np.ndarray:
    """The layer's colour from the reference view, per texel: clamp(k0 + sum_n k_n H_n(v_texel), 0, 1)
    -> [H', W', 3]. ``basis``: H_n at every texel's reference ray [H' * W', N] (None: k0 only)."""
    info = baked.info
    colour = baked.k0[layer].astype(np.float32)
    if basis is not None:
        k = baked.coeffs[layer].reshape(-1, 3, info.n_basis)
        spec = np.einsum("rcn,rn->rc", k, basis).reshape(info.mpi_height, info.mpi_width, 3)
        colour = colour + spec
    return np.clip(colour, 0.0, 1.0)


def texel_basis(baked: BakedMPI) -> np.ndarray:
    """H_n along the reference camera's ray through every MPI texel centre -> [H' * W', N]."""
    info = baked.info
    rows, cols = np.divmod(np.arange(info.mpi_width * info.mpi_height, dtype=np.float64), info.mpi_width)
    dirs = np.stack([(cols - info.offset + 0.5 - info.cx) / info.fx, (rows - info.offset + 0.5 - info.cy) / info.fy,
                     np.ones_like(rows)], -1)
    return basis_from_lut(baked, dirs).astype(np.float32)


class _GLB:
    """Accumulates the JSON document and the binary chunk."""

    def __init__(self):
        self.doc: dict[str, Any] = {
            "asset": {"version": "2.0", "generator": ""},
            "scene": 0, "scenes": [], "nodes": [], "meshes": [], "materials": [], "textures": [],
            "images": [], "samplers": [], "accessors": [], "bufferViews": [], "buffers": [], "cameras": [],
        }
        self.bin = bytearray()

    def view(self, data: bytes, target: int | None = None, name: str | None = None) -> int:
        while len(self.bin) % 4:
            self.bin.append(0)
        v: dict[str, Any] = {"buffer": 0, "byteOffset": len(self.bin), "byteLength": len(data)}
        if target is not None:
            v["target"] = target
        if name:
            v["name"] = name
        self.bin += data
        self.doc["bufferViews"].append(v)
        return len(self.doc["bufferViews"]) - 1

    def accessor(self, array: np.ndarray, kind: str, target: int, minmax: bool = False) -> int:
        comp = UNSIGNED_SHORT if array.dtype == np.uint16 else FLOAT
        a: dict[str, Any] = {"bufferView": self.view(array.tobytes(), target), "componentType": comp,
                             "count": int(array.shape[0]), "type": kind}
        if minmax:
            a["min"] = [float(x) for x in array.min(0)]
            a["max"] = [float(x) for x in array.max(0)]
        self.doc["accessors"].append(a)
        return len(self.doc["accessors"]) - 1

    def image(self, png: bytes, name: str) -> int:
        self.doc["images"].append({"bufferView": self.view(png, name=name), "mimeType": "image/png", "name": name})
        self.doc["textures"].append({"sampler": 0, "source": len(self.doc["images"]) - 1, "name": name})
        return len(self.doc["textures"]) - 1

    def node(self, node: dict[str, Any]) -> int:
        self.doc["nodes"].append(node)
        return len(self.doc["nodes"]) - 1

    def write(self, path: Path) -> int:
        doc = {k: v for k, v in self.doc.items() if v != []}
        doc["buffers"] = [{"byteLength": len(self.bin)}]
        js = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("utf-8")
        js += b" " * (-len(js) % 4)
        binary = bytes(self.bin) + b"\0" * (-len(self.bin) % 4)
        total = 12 + 8 + len(js) + 8 + len(binary)
        if total >= 1 << 32:
            raise NexError(f"{path}: the .glb would be {total / 1e9:.1f} GB, over glTF's 4 GB limit; bake a "
                           "smaller MPI")
        with replacing_file(Path(path), GLB_WHAT) as tmp:
            with open(tmp, "wb") as f:
                f.write(struct.pack("<4sII", b"glTF", 2, total))
                f.write(struct.pack("<I4s", len(js), b"JSON"))
                f.write(js)
                f.write(struct.pack("<I4s", len(binary), b"BIN\0"))
                f.write(binary)
        return total


# --------------------------------------------------------------------------------------------------
# Export


def export_glb(source: BakedMPI | Path, out: Path, extension: bool = True, compress_level: int = 6,
               progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Write a baked MPI (a directory or an in-memory :class:`BakedMPI`) as ``out`` (.glb).

    ``extension``: include ``EXT_nex_mpi`` and its textures (the full view-dependent data); without it
    the file holds only the reference-view planes. Returns a summary (sizes, counts).
    """
    from .. import __version__

    check_output_file(Path(out), GLB_WHAT)  # before the textures are encoded
    if isinstance(source, BakedMPI):
        baked = source
    else:
        # float16 halves the memory of a large MPI and still round-trips every 8-bit code exactly.
        big = read_layout(Path(source), verify=False).info.total_values() > 200_000_000  # read_baked verifies
        baked = read_baked(Path(source), dtype=np.float16 if big else np.float32)
    baked.check("baked MPI to export")
    info = baked.info
    g = _GLB()
    g.doc["asset"]["generator"] = f"nex_core {__version__} (NeX for Blender)"
    g.doc["samplers"].append({"magFilter": LINEAR, "minFilter": LINEAR, "wrapS": CLAMP_TO_EDGE,
                              "wrapT": CLAMP_TO_EDGE})
    steps = info.n_planes + (info.layers * (1 + info.n_basis) + info.n_lut_tiles if extension else 0)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, steps)

    # Geometry shared by every quad: texture coordinates (glTF: (0, 0) = the image's top-left) and indices.
    # Corners: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right; counter-clockwise seen from the camera.
    uv = g.accessor(np.array([[0, 0], [1, 0], [0, 1], [1, 1]], np.float32), "VEC2", ARRAY_BUFFER)
    indices = g.accessor(np.array([2, 3, 1, 2, 1, 0], np.uint16), "SCALAR", ELEMENT_ARRAY_BUFFER)

    # The reference-view colour of every layer, then one RGBA texture per plane.
    basis = texel_basis(baked)
    colours: dict[int, np.ndarray] = {}
    plane_nodes: list[int | None] = [None] * info.n_planes
    w_mpi, h_mpi = info.mpi_width, info.mpi_height
    ox, oy = info.offset + info.cx, info.offset + info.cy
    for j in reversed(range(info.n_planes)):  # back to front
        layer = j // info.sublayers
        if layer not in colours:
            colours = {layer: encode_unsigned(reference_colours(baked, layer, basis))}
        rgba = np.concatenate([colours[layer], encode_unsigned(baked.alpha[j])[..., None]], -1)
        tex = g.image(_png(rgba, compress_level), f"plane_{j:03d}")
        tick()
        g.doc["materials"].append({
            "name": f"NeX_plane_{j:03d}",
            "pbrMetallicRoughness": {"baseColorTexture": {"index": tex}, "metallicFactor": 0.0,
                                     "roughnessFactor": 1.0},
            "alphaMode": "BLEND", "doubleSided": True, "extensions": {UNLIT: {}}})
        d = info.depths[j]
        # Corners in the reference frame with OpenGL axes (y up, z backward): MPI pixel (u, v) at
        # x = (u - offset - cx) / fx * d, y = -(v - offset - cy) / fy * d, z = -d.
        xs = np.array([0.0, w_mpi, 0.0, w_mpi]) - ox
        ys = np.array([0.0, 0.0, h_mpi, h_mpi]) - oy
        corners = np.stack([xs / info.fx * d, -ys / info.fy * d, np.full(4, -d)], -1)
        centre = corners.mean(0)
        pos = g.accessor((corners - centre).astype(np.float32), "VEC3", ARRAY_BUFFER, minmax=True)
        g.doc["meshes"].append({"name": f"NeX_plane_{j:03d}", "primitives": [{
            "attributes": {"POSITION": pos, "TEXCOORD_0": uv}, "indices": indices,
            "material": len(g.doc["materials"]) - 1}]})
        plane_nodes[j] = g.node({"name": f"NeX_plane_{j:03d}", "mesh": len(g.doc["meshes"]) - 1,
                                 "translation": [float(x) for x in centre]})
    del colours, basis

    # The camera at the reference view.
    aspect = (info.width / info.fx) / (info.height / info.fy)
    g.doc["cameras"].append({"name": "NeX_reference", "type": "perspective", "perspective": {
        "yfov": 2.0 * math.atan(info.height / (2.0 * info.fy)), "aspectRatio": aspect,
        "znear": 0.05 * info.depths[0], "zfar": 100.0 * info.depths[-1]}})
    camera_node = g.node({"name": "NeX_reference_camera", "camera": 0})

    # The reference camera's pose, OpenGL camera axes, in the scene's world frame.
    c2w_gl = info.ref_c2w.copy()
    c2w_gl[:3, :3] = _orthonormalised(c2w_gl[:3, :3] @ _CV_TO_GL)
    rig: dict[str, Any] = {
        "name": "NeX_reference",
        "translation": [float(x) for x in c2w_gl[:3, 3]],
        "rotation": rotation_to_quaternion(c2w_gl[:3, :3]),
        "children": [camera_node] + [plane_nodes[j] for j in reversed(range(info.n_planes))],
    }
    g.doc["extensionsUsed"] = [UNLIT]
    if extension:
        g.doc["extensionsUsed"].append(EXTENSION)
        rig["extensions"] = {EXTENSION: _extension_block(g, baked, plane_nodes, compress_level, tick)}
    rig_node = g.node(rig)
    root = g.node({"name": "NeX_MPI", "rotation": rotation_to_quaternion(Z_UP_TO_Y_UP), "children": [rig_node],
                   "extras": {"nex": "the scene's world frame (Z-up, as in Blender) turned into glTF's Y-up"}})
    g.doc["scenes"].append({"name": "NeX MPI", "nodes": [root]})
    size = g.write(Path(out))
    return {"path": str(out), "bytes": size, "planes": info.n_planes, "textures": len(g.doc["textures"]),
            "extension": extension}


def _extension_block(g: _GLB, baked: BakedMPI, plane_nodes: list, compress_level: int,
                     tick: Callable[[], None]) -> dict[str, Any]:
    info = baked.info
    k0_textures, coeff_textures = [], []
    for layer in range(info.layers):
        k0_textures.append(g.image(_png(encode_unsigned(baked.k0[layer]), compress_level), f"k0_{layer:02d}"))
        tick()
        codes = encode_signed(baked.coeffs[layer])  # [H', W', 3, N]
        row = []
        for n in range(info.n_basis):
            row.append(g.image(_png(np.ascontiguousarray(codes[..., n]), compress_level), f"coeff_{layer:02d}_{n}"))
            tick()
        coeff_textures.append(row)
    lut_codes = encode_signed(baked.basis_lut)  # [N, h, w]
    lut_textures = []
    for t in range(info.n_lut_tiles):
        tile = np.full((info.lut_height, info.lut_width, 3), 128, np.uint8)
        for c in range(3):
            if 3 * t + c < info.n_basis:
                tile[..., c] = lut_codes[3 * t + c]
        lut_textures.append(g.image(_png(tile, compress_level), f"basis_lut_{t}"))
        tick()
    block: dict[str, Any] = {
        "version": EXTENSION_VERSION,
        "frame": "this node: the reference camera, OpenGL axes (x right, y up, z backward); "
                 "OpenCV reference frame = (x, -y, -z) of it",
        "referenceCamera": {"width": info.width, "height": info.height, "fx": info.fx, "fy": info.fy,
                            "cx": info.cx, "cy": info.cy},
        "mpiWidth": info.mpi_width, "mpiHeight": info.mpi_height, "offset": info.offset,
        "layers": info.layers, "sublayers": info.sublayers,
        "depths": [float(d) for d in info.depths],
        "planes": [int(n) for n in plane_nodes],
        "coefficientLookup": "layer_first_plane",
        "compositing": info.compositing,
        "k0Textures": k0_textures,
        "coefficientTextures": coeff_textures,
        "basis": {"count": info.n_basis, "kind": info.basis_kind, "lutTextures": lut_textures,
                  "lutWidth": info.lut_width, "lutHeight": info.lut_height,
                  "vx": [float(x) for x in info.lut_vx], "vy": [float(x) for x in info.lut_vy]},
        "encoding": {"planeAlpha": "base colour texture alpha, x = v / 255",
                     "k0": "unsigned, x = v / 255", "coefficients": "signed, x = v / 255 * 2 - 1",
                     "basis": "signed, x = v / 255 * 2 - 1"},
        "colour": "clamp(k0 + sum_n coefficient_n * H_n(vx, vy), 0, 1), display (sRGB-encoded) values",
        "doc": EXTENSION_DOC,
    }
    span = info.metadata.get("camera_span")
    if isinstance(span, dict) and "min" in span and "max" in span:
        # The training cameras' centres, OpenCV reference frame: where the MPI looks right.
        block["cameraSpan"] = {"min": [float(x) for x in span["min"]], "max": [float(x) for x in span["max"]],
                               "frame": "OpenCV reference frame (x right, y down, z forward)"}
    return block
