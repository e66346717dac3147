"""The inner node tree of the **NeX MPI** shader node (the node itself: ``mpi_node``), built here.

The inner tree evaluates a baked MPI plane exactly as ``nex_core.io.baked.reference_render`` does (see its
module docstring and ``nex_core.io.baked``), with plain shader nodes that Cycles and EEVEE both compile:

* the shading point ``P`` in the rig's frame (Texture Coordinate > Object, object = the rig empty; the
  rig sits at the reference camera with Blender camera axes, so OpenCV coordinates are ``(x, -y, -z)``);
* the view ray ``D`` in the rig's frame from Geometry > Incoming (world -> object vector transform; a
  plane has no rotation of its own under the rig), so moving, turning or scaling the rig keeps the
  view dependence right;
* MPI texel coordinates ``px = fx * X / Z + cx + offset`` (likewise ``py``) of ``P`` (alpha, k0) and of the
  point where the ray meets the plane's layer's *first* plane ``Q = P + (d0 - P_z) / D_z * D``
  (coefficients, clamped to the MPI's texel centres as the reference clamps);
* atlas coordinates ``u = px / W_atlas + o_u``, ``v = -py / H_atlas + o_v``: ``o`` is the tile's offset
  in its atlas. One material per MPI *layer*: the layer's k0 and coefficient tiles and its first plane's
  depth are constants of its tree, and the one per-plane value, the alpha tile's offset, is an object
  attribute (custom property ``nex_a`` on the plane; EEVEE allows at most 8 such attributes per
  material), so EEVEE compiles one shader per layer, not one per plane;
* the basis ``H_n`` from the LUT at the unit direction's (vx, vy), clamped to the LUT's range;
* ``colour = clamp(k0 + sum_n (2 c_n - 1) H_n, 0, 1)``; 8-bit textures are read as Non-Color data and
  decoded in the tree (signed: ``v * 2 - 1``);
* optionally converted from the photos' sRGB encoding to scene-linear (so the Standard view transform
  shows the trained colours), and ``alpha``.

The material mixes a Transparent BSDF and an Emission by alpha. The inner tree is an ordinary node group:
a .blend saved with it renders the same in a Blender 5.0 without this add-on (the custom node then shows as
undefined but its group is still evaluated; 4.2 and 4.5 do not evaluate it, see ``compat``);
:func:`make_tree_portable` swaps the custom nodes for plain group nodes for good, in every version. What a tree
is built from (``ShaderSpec``) is plain data made in ``nex_core.io.addon.shading_spec``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import bpy

from . import _core, compat

# What a tree is built from (ShaderSpec, AtlasRef), tile offsets and node positions: plain logic.
_spec = _core.module("addon.shading_spec")

NODE_IDNAME = "ShaderNodeNexMPI"
GROUP_TAG = "nex_mpi_group"  # custom property on inner trees: the spec they were built from (JSON)
FILTERING_ITEMS = (
    ("EXACT", "Exact", "Bilinear filtering computed in the shader from four texel reads: the same pixels in "
                       "Cycles, EEVEE and nex_core (EEVEE's own Linear filtering adds mipmaps)"),
    ("LINEAR", "Linear", "Blender's Linear image filtering: one read per texture (exact in Cycles; EEVEE blurs "
                         "slightly where a plane is near one texel per pixel)"),
)


# --------------------------------------------------------------------------------------------------
# Building node trees


@dataclass
class _Builder:
    tree: Any
    stages: list[int] = field(default_factory=list)
    nodes: list[Any] = field(default_factory=list)

    def node(self, idname: str, stage: int, label: str = "", **props):
        n = self.tree.nodes.new(idname)
        for key, value in props.items():
            setattr(n, key, value)
        if label:
            n.label = label
        self.nodes.append(n)
        self.stages.append(stage)
        return n

    def feed(self, socket, value) -> None:
        if isinstance(value, bpy.types.NodeSocket):
            self.tree.links.new(value, socket)
        else:
            socket.default_value = value

    def math(self, op: str, a, b=None, c=None, stage: int = 0):
        n = self.node("ShaderNodeMath", stage, operation=op)
        for socket, value in zip(n.inputs, (a, b, c)):
            if value is not None:
                self.feed(socket, value)
        return n.outputs[0]

    def scale(self, vector, factor, stage: int, label: str = ""):
        n = self.node("ShaderNodeVectorMath", stage, label, operation="SCALE")
        self.feed(n.inputs[0], vector)
        self.feed(n.inputs["Scale"], factor)
        return n.outputs["Vector"]

    def vmath(self, op: str, a, b=None, c=None, stage: int = 0, label: str = ""):
        n = self.node("ShaderNodeVectorMath", stage, label, operation=op)
        self.feed(n.inputs[0], a)
        if b is not None:
            self.feed(n.inputs[1], b)
        if c is not None:
            self.feed(n.inputs[2], c)
        return n.outputs["Value" if op in ("DOT_PRODUCT", "LENGTH", "DISTANCE") else "Vector"]

    def xyz(self, vector, stage: int):
        n = self.node("ShaderNodeSeparateXYZ", stage)
        self.feed(n.inputs[0], vector)
        return n.outputs

    def combine(self, x, y, z=0.0, stage: int = 0):
        n = self.node("ShaderNodeCombineXYZ", stage)
        for socket, value in zip(n.inputs, (x, y, z)):
            self.feed(socket, value)
        return n.outputs[0]

    def attribute(self, name: str, stage: int):
        return self.node("ShaderNodeAttribute", stage, name, attribute_type="OBJECT", attribute_name=name)

    def image(self, ref: _spec.AtlasRef, uv, stage: int, label: str, interpolation: str = "Linear"):
        n = self.node("ShaderNodeTexImage", stage, label, interpolation=interpolation, extension="EXTEND")
        n.image = bpy.data.images.get(ref.image)
        self.feed(n.inputs["Vector"], uv)
        return n

    def layout(self) -> None:
        for node, (x, y) in zip(self.nodes, _spec.node_positions(self.stages)):
            node.location = (x, y)


def new_tree(name: str):
    tree = bpy.data.node_groups.new(name, "ShaderNodeTree")
    tree.interface.new_socket("Color", in_out="OUTPUT", socket_type="NodeSocketColor")
    tree.interface.new_socket("Alpha", in_out="OUTPUT", socket_type="NodeSocketFloat")
    vd = tree.interface.new_socket("View Dependence", in_out="INPUT", socket_type="NodeSocketFloat")
    vd.default_value, vd.min_value, vd.max_value = 1.0, 0.0, 4.0
    return tree


def _socket(sockets, identifier: str):
    return next(sock for sock in sockets if sock.identifier == identifier)


class _Sampler:
    """Texture reads at one lookup position: continuous texel coordinates ``(px, py, 0)`` in a tile (texel
    k's centre at k + 0.5, py downwards), mapped into each atlas by ``px * (1/W, -1/H) + offset``.

    ``exact``: bilinear filtering done in the tree from four Closest reads at texel centres, so no
    renderer adds anything (EEVEE's Linear filtering always uses mipmaps, which blur where a plane is
    seen at about one texel per pixel, and along triangle edges). Otherwise one Linear read each.
    """

    def __init__(self, b: _Builder, px, stage: int, exact: bool):
        self.b, self.px, self.stage, self.exact = b, px, stage, exact
        if exact:
            shifted = b.vmath("SUBTRACT", px, (0.5, 0.5, 0.0), stage=stage)
            base = b.vmath("FLOOR", shifted, stage=stage + 1, label="texel")
            frac = b.xyz(b.vmath("SUBTRACT", shifted, base, stage=stage + 2, label="bilinear weights"), stage + 3)
            self.wx, self.wy = frac["X"], frac["Y"]
            self.corners = [b.vmath("ADD", base, (0.5 + i, 0.5 + j, 0.0), stage=stage + 2)
                            for j in (0, 1) for i in (0, 1)]

    def read(self, ref: _spec.AtlasRef, offset, stage: int, label: str):
        """The colour of ``ref`` here; ``offset`` is a socket (per-plane attribute) or a constant."""
        b = self.b
        scale = (1.0 / ref.width, -1.0 / ref.height, 0.0)
        if not self.exact:
            return b.image(ref, b.vmath("MULTIPLY_ADD", self.px, scale, offset, stage=stage), stage + 1,
                           label).outputs["Color"]
        taps = [b.image(ref, b.vmath("MULTIPLY_ADD", c, scale, offset, stage=stage), stage + 1, label,
                        interpolation="Closest").outputs["Color"] for c in self.corners]
        top = self._lerp(taps[0], taps[1], self.wx, stage + 2)
        bottom = self._lerp(taps[2], taps[3], self.wx, stage + 2)
        return self._lerp(top, bottom, self.wy, stage + 3)

    def _lerp(self, a, c, w, stage: int):
        mix = self.b.node("ShaderNodeMix", stage, data_type="RGBA", clamp_factor=False)
        self.b.feed(_socket(mix.inputs, "Factor_Float"), w)
        self.b.feed(_socket(mix.inputs, "A_Color"), a)
        self.b.feed(_socket(mix.inputs, "B_Color"), c)
        return _socket(mix.outputs, "Result_Color")


def fill_tree(tree, spec: _spec.ShaderSpec, rig) -> None:
    """(Re)build the inner tree of one NeX MPI material from ``spec``; ``rig`` is the MPI's rig empty."""
    tree.nodes.clear()
    b = _Builder(tree)
    exact = spec.filtering == "EXACT"
    g_in = b.node("NodeGroupInput", 0)
    coords = b.node("ShaderNodeTexCoord", 0, "Rig space", object=rig)
    geometry = b.node("ShaderNodeNewGeometry", 0)
    attr_a = b.attribute("nex_a", 0).outputs["Vector"]

    # P (OpenCV axes, rig frame) and its MPI texel coordinates.
    p = b.vmath("MULTIPLY", coords.outputs["Object"], (1.0, -1.0, -1.0), stage=1, label="P (OpenCV)")
    p_xyz = b.xyz(p, 2)
    inv_z = b.math("DIVIDE", 1.0, p_xyz["Z"], stage=3)
    focal = (spec.fx, spec.fy, 0.0)
    centre = (spec.cx + spec.offset, spec.cy + spec.offset, 0.0)
    p_px = b.vmath("MULTIPLY_ADD", b.scale(p, inv_z, stage=4, label="P / Z"), focal, centre, stage=5,
                   label="texel coords")
    at_p = _Sampler(b, p_px, 6, exact)
    alpha = b.node("ShaderNodeSeparateColor", 14)
    b.feed(alpha.inputs[0], at_p.read(spec.alpha, attr_a, 10, "alpha"))
    k0 = at_p.read(spec.k0, _spec.tile_offset(*spec.k0_tile, spec.k0.width, spec.k0.height), 10, "k0")
    colour = k0

    if spec.view_dependent and spec.n_basis > 0:
        incoming = b.node("ShaderNodeVectorTransform", 1, "Incoming (rig)", vector_type="VECTOR",
                          convert_from="WORLD", convert_to="OBJECT")
        b.feed(incoming.inputs[0], geometry.outputs["Incoming"])
        d = b.vmath("MULTIPLY", incoming.outputs[0], (-1.0, 1.0, 1.0), stage=2, label="D (OpenCV)")
        d_xyz = b.xyz(d, 3)
        # Q: where the ray meets the layer's first plane (z = d0); coefficients are read there,
        # clamped to the MPI's outermost texel centres as the reference renderer clamps.
        t = b.math("DIVIDE", b.math("SUBTRACT", spec.d0, p_xyz["Z"], stage=3), d_xyz["Z"], stage=4)
        q = b.vmath("MULTIPLY_ADD", d, t, p, stage=5, label="Q")
        q_scaled = b.scale(q, 1.0 / spec.d0, stage=6)
        q_px = b.vmath("MULTIPLY_ADD", q_scaled, focal, centre, stage=7)
        q_px = b.vmath("MAXIMUM", q_px, (0.5, 0.5, 0.0), stage=8)
        q_px = b.vmath("MINIMUM", q_px, (spec.mpi_width - 0.5, spec.mpi_height - 0.5, 0.0), stage=9,
                       label="clamped to texel centres")
        at_q = _Sampler(b, q_px, 10, exact)
        # The basis from the LUT at the unit view direction, clamped to the LUT's range.
        v_xyz = b.xyz(b.vmath("NORMALIZE", d, stage=4), 5)
        lut_u = b.node("ShaderNodeMapRange", 6, "LUT x", clamp=True)
        b.feed(lut_u.inputs["Value"], v_xyz["X"])
        lut_u.inputs["From Min"].default_value, lut_u.inputs["From Max"].default_value = spec.lut_vx
        lut_u.inputs["To Min"].default_value, lut_u.inputs["To Max"].default_value = 0.5, spec.lut_width - 0.5
        lut_v = b.node("ShaderNodeMapRange", 6, "LUT y", clamp=True)
        b.feed(lut_v.inputs["Value"], v_xyz["Y"])
        lut_v.inputs["From Min"].default_value, lut_v.inputs["From Max"].default_value = spec.lut_vy
        lut_v.inputs["To Min"].default_value, lut_v.inputs["To Max"].default_value = 0.5, spec.lut_height - 0.5
        at_lut = _Sampler(b, b.combine(lut_u.outputs[0], lut_v.outputs[0], 0.0, stage=7), 8, exact)
        basis = []
        for ref, x, y in spec.lut_tiles:
            sep = b.node("ShaderNodeSeparateColor", 16)
            b.feed(sep.inputs[0], at_lut.read(ref, _spec.tile_offset(x, y, ref.width, ref.height), 12, "basis LUT"))
            basis += [b.math("MULTIPLY_ADD", sep.outputs[k], 2.0, -1.0, stage=17) for k in range(3)]
        basis = basis[:spec.n_basis]
        specular = (0.0, 0.0, 0.0)
        for n, (ref, (x, y)) in enumerate(zip(spec.coeffs, spec.coeff_tiles)):
            tex = at_q.read(ref, _spec.tile_offset(x, y, ref.width, ref.height), 14, f"k{n + 1}")
            decoded = b.vmath("MULTIPLY_ADD", tex, (2.0, 2.0, 2.0), (-1.0, -1.0, -1.0), stage=18)
            specular = b.vmath("MULTIPLY_ADD", decoded, basis[n], specular, stage=19)
        specular = b.scale(specular, g_in.outputs["View Dependence"], stage=20, label="x View Dependence")
        colour = b.vmath("ADD", k0, specular, stage=21, label="k0 + sum k_n H_n")

    colour = b.vmath("MAXIMUM", colour, (0.0, 0.0, 0.0), stage=22)
    colour = b.vmath("MINIMUM", colour, (1.0, 1.0, 1.0), stage=23, label="clamp 0..1")
    if spec.linear_output:
        colour = _srgb_to_linear(b, colour, stage=24)
    g_out = b.node("NodeGroupOutput", 29)
    b.feed(g_out.inputs["Color"], colour)
    b.feed(g_out.inputs["Alpha"], alpha.outputs[0])
    b.layout()
    tree[GROUP_TAG] = spec.to_json()


def _srgb_to_linear(b: _Builder, colour, stage: int):
    """The sRGB transfer function's inverse, per channel (piecewise, exact)."""
    sep = b.node("ShaderNodeSeparateXYZ", stage, "sRGB -> linear")
    b.feed(sep.inputs[0], colour)
    out = []
    for c in sep.outputs:
        low = b.math("DIVIDE", c, 12.92, stage=stage + 1)
        high = b.math("POWER", b.math("DIVIDE", b.math("ADD", c, 0.055, stage=stage + 1), 1.055, stage=stage + 2),
                      2.4, stage=stage + 3)
        pick = b.math("GREATER_THAN", c, 0.04045, stage=stage + 1)
        diff = b.math("SUBTRACT", high, low, stage=stage + 3)
        out.append(b.math("MULTIPLY_ADD", diff, pick, low, stage=stage + 3))
    return b.combine(*out, stage=stage + 4)


def build_material(name: str, group, emission_strength: float = 1.0):
    """A material: NeX MPI node -> Emission / Transparent mix by alpha. Returns (material, node)."""
    mat = compat.new_node_material(name)
    tree = mat.node_tree
    tree.nodes.clear()
    b = _Builder(tree)
    mpi = b.node(NODE_IDNAME, 0, "NeX MPI")
    placeholder = mpi.node_tree
    mpi.node_tree = group
    if placeholder is not None and placeholder != group and placeholder.users == 0:
        bpy.data.node_groups.remove(placeholder)
    emission = b.node("ShaderNodeEmission", 1)
    emission.inputs["Strength"].default_value = emission_strength
    transparent = b.node("ShaderNodeBsdfTransparent", 1)
    mix = b.node("ShaderNodeMixShader", 2)
    out = b.node("ShaderNodeOutputMaterial", 3)
    b.feed(emission.inputs["Color"], mpi.outputs["Color"])
    b.feed(mix.inputs["Fac"], mpi.outputs["Alpha"])
    b.feed(mix.inputs[1], transparent.outputs[0])
    b.feed(mix.inputs[2], emission.outputs[0])
    b.feed(out.inputs["Surface"], mix.outputs[0])
    b.layout()
    mpi.width = 200
    # EEVEE sorts blended planes per object by their origins, which sit at the plane centres.
    compat.use_blended_transparency(mat)
    mat.use_backface_culling = False
    return mat, mpi


def mpi_nodes(material) -> list:
    """The NeX MPI nodes of a material (custom or, after Make Portable / without the add-on, plain)."""
    if material is None or material.node_tree is None:
        return []
    return [n for n in material.node_tree.nodes
            if getattr(n, "node_tree", None) is not None and GROUP_TAG in n.node_tree.keys()]


def shader_trees(data) -> list:
    """Every editable shader node tree of ``data`` (a ``bpy.data``) that can hold a NeX MPI node: those of
    materials, worlds and lights, and shader node groups (not data linked from another .blend)."""
    owners = [o for o in (*data.materials, *data.worlds, *data.lights) if o.library is None]
    trees = [o.node_tree for o in owners if getattr(o, "node_tree", None) is not None]
    return trees + [g for g in data.node_groups if g.bl_idname == "ShaderNodeTree" and g.library is None]


def make_tree_portable(tree) -> int:
    """Replace the tree's custom NeX MPI nodes by plain group nodes with the same inner tree, links and
    input values (a .blend that never needs the add-on again). Returns how many nodes were replaced."""
    count = 0
    for node in [n for n in tree.nodes if n.bl_idname == NODE_IDNAME]:
        plain = tree.nodes.new("ShaderNodeGroup")
        plain.node_tree = node.node_tree
        plain.location, plain.width = node.location, node.width
        plain.label, plain.name = "NeX MPI", node.name + " (plain)"
        plain.parent = node.parent
        for link in list(tree.links):
            if link.from_node == node:
                tree.links.new(plain.outputs[link.from_socket.identifier], link.to_socket)
            elif link.to_node == node:
                tree.links.new(link.from_socket, plain.inputs[link.to_socket.identifier])
        for src, dst in zip(node.inputs, plain.inputs):
            if not src.is_linked and hasattr(src, "default_value"):
                dst.default_value = src.default_value
        tree.nodes.remove(node)
        count += 1
    return count
