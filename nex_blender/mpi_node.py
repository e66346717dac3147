"""The **NeX MPI** shader node (a ``ShaderNodeCustomGroup``) whose inner tree ``shading`` builds, its
options (view dependence, scene-linear colour, filtering, rig) that rebuild the tree, and its Add menu entry."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, PointerProperty, StringProperty

from . import compat, shading
from .shading import FILTERING_ITEMS, GROUP_TAG, NODE_IDNAME, _spec, fill_tree, new_tree


_suspended = [0]


class suspend_rebuild:
    """Within this block, changing a NeX MPI node's options does not rebuild its tree (the importer
    sets them on nodes whose tree it has just built)."""

    def __enter__(self):
        _suspended[0] += 1

    def __exit__(self, *exc):
        _suspended[0] -= 1


def _rebuild(node, context) -> None:
    if not _suspended[0]:
        node.rebuild()


class ShaderNodeNexMPI(bpy.types.ShaderNodeCustomGroup):
    """Colour and alpha of a baked NeX MPI plane, seen along the view ray (view-dependent basis)"""

    bl_idname = NODE_IDNAME
    bl_label = "NeX MPI"
    bl_width_default = 200

    view_dependent: BoolProperty(name="View Dependent", default=True, update=_rebuild,
                                 description="Evaluate the basis (reflections, refractions); off: base colour "
                                             "k0 only, a cheaper shader")
    linear_output: BoolProperty(name="Scene-Linear Colour", default=True, update=_rebuild,
                                description="Convert the trained (sRGB-encoded) colours to scene-linear, so the "
                                            "Standard view transform shows them as photographed")
    filtering: EnumProperty(name="Filtering", items=FILTERING_ITEMS, default="EXACT", update=_rebuild)
    rig: PointerProperty(name="Rig", type=bpy.types.Object, update=_rebuild,
                         description="The MPI's rig empty: the frame the view direction is measured in")
    source: StringProperty(name="Baked MPI", subtype="DIR_PATH", description="The baked MPI folder it came from")

    @classmethod
    def poll(cls, ntree):
        return ntree.bl_idname == "ShaderNodeTree"

    def init(self, context):
        # The tree is given by the importer (it needs the baked MPI); an empty one until then.
        self.node_tree = new_tree("NeX MPI (empty)")

    def copy(self, node):
        self.node_tree = node.node_tree  # share: the spec and textures are the same

    def free(self):
        tree = self.node_tree
        if tree is not None and tree.users <= 1 and GROUP_TAG not in tree.keys():
            bpy.data.node_groups.remove(tree)

    def rebuild(self) -> None:
        tree = self.node_tree
        if tree is None or GROUP_TAG not in tree.keys():
            return
        spec = _spec.ShaderSpec.from_json(tree[GROUP_TAG])
        spec.view_dependent, spec.linear_output = self.view_dependent, self.linear_output
        spec.filtering = self.filtering
        fill_tree(tree, spec, self.rig)

    def draw_buttons(self, context, layout):
        if self.node_tree is None or GROUP_TAG not in self.node_tree.keys():
            layout.label(text="Use NeX > Import MPI", icon="INFO")
            return
        layout.prop(self, "view_dependent")
        layout.prop(self, "linear_output")
        layout.prop(self, "filtering", text="")
        layout.prop(self, "rig")

    def draw_label(self):
        return "NeX MPI" if self.view_dependent else "NeX MPI (base colour)"


def new_group(name: str, spec: _spec.ShaderSpec, rig):
    tree = new_tree(name)
    fill_tree(tree, spec, rig)
    return tree


def _add_menu(self, context):
    if context.space_data.tree_type == "ShaderNodeTree":
        self.layout.operator("node.add_node", text="NeX MPI").type = NODE_IDNAME


classes = (ShaderNodeNexMPI,)


def release_nodes(data) -> int:
    """Swap every NeX MPI node in ``data`` (a ``bpy.data``) for a plain group node, then re-evaluate each
    existing depsgraph so that no evaluated copy still holds a node of this class when it is unregistered
    (see ``compat.DISABLE_MAKES_PORTABLE``). Returns how many nodes were swapped."""
    count = sum(shading.make_tree_portable(tree) for tree in shading.shader_trees(data))
    if count:
        for scene in data.scenes:
            for layer in scene.view_layers:
                if layer.depsgraph is not None:  # only the depsgraphs that exist; none is made here
                    layer.depsgraph.update()
    return count


def register() -> None:
    compat.shader_add_menu().append(_add_menu)


def unregister() -> None:
    compat.shader_add_menu().remove(_add_menu)
    data = bpy.data
    if compat.DISABLE_MAKES_PORTABLE and hasattr(data, "materials"):  # (no data while Blender starts up)
        try:
            count = release_nodes(data)
        except Exception as exc:  # disabling must go on: a half-unregistered add-on is worse
            print(f"NeX: could not make the open file portable before disabling ({exc}); run Make Portable "
                  "before saving it")
            return
        if count:
            print(f"NeX: the add-on was disabled: {count} NeX MPI node(s) replaced by plain node groups, as "
                  "Make Portable does (Blender before 5.0 cannot keep them without the add-on)")
