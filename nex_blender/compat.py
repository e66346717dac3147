"""What differs between the Blender versions the add-on supports (4.2 LTS, 4.5 LTS, 5.0), in one place.

* EEVEE's engine id is ``BLENDER_EEVEE_NEXT`` in 4.2-4.5 and ``BLENDER_EEVEE`` again in 5.0.
* A new material has no node tree before 5.0 until ``use_nodes`` is set; 5.0 always gives one and
  deprecates ``use_nodes``.
* Blended transparency: ``surface_render_method`` and ``use_transparency_overlap`` (4.2+; the older
  ``blend_method`` / ``show_transparent_back`` are EEVEE Legacy's and not used).
* A .blend saved with NeX MPI nodes, opened without the add-on: 5.0 still evaluates the inner tree of
  the (now undefined) custom group node; 4.2 and 4.5 do not (the planes render wrong), so there the
  file needs the add-on, or *Make Portable* (plain group nodes) before it travels.
* Disabling the add-on with NeX MPI nodes in the open file: 4.2 and 4.5 leave the evaluated (copy-on-
  evaluation) copies of their trees holding nodes whose type is freed with the node class, and freeing
  such a copy later (at the next evaluation or when Blender quits) reads the freed type: a segmentation
  fault at exit, seen in bpy 4.2.23 (``node_free_node`` under ``DEG_graph_free``). There the add-on makes
  the file portable as it is disabled (``mpi_node.release_nodes``), which also keeps it rendering.
* Not a switch but a rule the add-on keeps: bpy 4.2 (seen in 4.2.23, not in 4.5.15) keeps a reference
  to every PropertyGroup class it registers, even after unregistering it. Whatever such a class reaches
  outlives the interpreter; when that includes the ``bpy`` module, Blender's own shutdown (run when the
  module is freed) never happens and the process crashes at exit. So the modules that define
  PropertyGroups (``properties``) do not hold ``bpy`` as a global (addon_tests/test_exit.py checks it).

The node group interface API (``tree.interface.new_socket``), the shader Add menu
(``NODE_MT_shader_node_add_all``), ``ShaderNodeMix`` and the extension install operator are the same in
all three.
"""

from __future__ import annotations

import bpy

HAS_USE_NODES = bpy.app.version < (5, 0, 0)
UNDEFINED_GROUPS_EVALUATED = bpy.app.version >= (5, 0, 0)
DISABLE_MAKES_PORTABLE = bpy.app.version < (5, 0, 0)


def eevee_engine(scene) -> str:
    """The id of EEVEE in this Blender (for ``scene.render.engine``)."""
    ids = {item.identifier for item in type(scene.render).bl_rna.properties["engine"].enum_items}
    return "BLENDER_EEVEE" if "BLENDER_EEVEE" in ids else "BLENDER_EEVEE_NEXT"


def new_node_material(name: str):
    """A new material with its (default) node tree."""
    mat = bpy.data.materials.new(name)
    if HAS_USE_NODES:
        mat.use_nodes = True
    return mat


def use_blended_transparency(mat) -> None:
    """EEVEE: sorted, blended transparency that shows the faces behind (Cycles ignores these)."""
    mat.surface_render_method = "BLENDED"
    mat.use_transparency_overlap = True


def shader_add_menu():
    """The menu type the shader editor's Add menu is built from."""
    return bpy.types.NODE_MT_shader_node_add_all
