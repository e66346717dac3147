"""The add-on leaves nothing behind that breaks Blender's exit: a fresh Python installs the built zip,
enables it, uses it (Import Cameras, Import MPI, a Cycles render, a preview icon, the evaluated depsgraph a
window would hold), optionally disables it (in 4.2/4.5 the file must then render as before: the add-on made it
portable), and exits with code 0. Run in every Blender version CI has (5.0 in the main suite, 4.2 LTS and 4.5 LTS through
``-m smoke``): bpy 4.2 keeps every registered PropertyGroup class alive, and it crashed at exit while a
class of ours could still reach the ``bpy`` module (see ``nex_blender/compat.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types

import pytest
from addon_helpers import ADDON_MODULE, DEMO_SCENE

pytestmark = pytest.mark.smoke

_SCRIPT = textwrap.dedent("""
    import faulthandler, sys
    faulthandler.enable()
    import bpy

    zip_path, baked_dir, scene_dir, out_png, use, disable = sys.argv[1:7]
    module = "bl_ext.user_default.nex_blender"
    assert bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default",
                                                    enable_on_install=True) == {"FINISHED"}
    assert module in bpy.context.preferences.addons, "not enabled after install"
    if use == "1":
        bpy.ops.wm.read_homefile(use_empty=True)
        sc = bpy.context.scene
        sc.render.engine = "CYCLES"
        sc.cycles.samples = 1
        sc.render.resolution_x, sc.render.resolution_y = 16, 12
        assert bpy.ops.nex.import_cameras(directory=scene_dir, background_images=False,
                                          set_resolution=False) == {"FINISHED"}
        assert bpy.ops.nex.import_mpi(directory=baked_dir) == {"FINISHED"}
        sc.camera = next(o for o in sc.objects if o.type == "CAMERA")
        sc.render.filepath = out_png
        bpy.ops.render.render(write_still=True)
        # A training preview shown in the panel (a bpy.utils.previews collection while enabled).
        import glob, importlib
        previews = importlib.import_module(module + ".previews")
        previews.refresh(sorted(glob.glob(scene_dir + "/images/*"))[0])
        assert len(previews._previews) == 1  # (background mode gives no icon ids, only the collection)
        # What a window always has and background mode does not: the view layer's evaluated depsgraph,
        # which holds copies of the NeX MPI node trees (freed at exit, after the add-on is disabled).
        depsgraph = bpy.context.evaluated_depsgraph_get()
        depsgraph.update()
        assert any(isinstance(i, bpy.types.Material) and i.node_tree is not None
                   and any(n.bl_idname == "ShaderNodeNexMPI" for n in i.node_tree.nodes)
                   for i in depsgraph.ids), "the depsgraph holds no evaluated NeX MPI material"
    if disable == "1":
        bpy.ops.preferences.addon_disable(module=module)
        assert module not in bpy.context.preferences.addons, "still enabled after disable"
        if use == "1" and bpy.app.version < (5, 0, 0):
            # 4.2/4.5 make the file portable as the add-on goes (compat.DISABLE_MAKES_PORTABLE): no node
            # of the freed class is left, and the planes render as before.
            kinds = {n.bl_idname for m in bpy.data.materials if m.node_tree for n in m.node_tree.nodes}
            assert not kinds & {"ShaderNodeNexMPI", "NodeUndefined"}, kinds
            first = list(bpy.data.images.load(out_png).pixels)
            sc.render.filepath = out_png + ".after.png"
            bpy.ops.render.render(write_still=True)
            again = list(bpy.data.images.load(out_png + ".after.png").pixels)
            assert max(abs(a - b) for a, b in zip(first, again)) <= 2 / 255, "renders differently after disable"
    print("NEX-EXIT-CHECK: reached the end", flush=True)
""")


@pytest.mark.parametrize("use,disable", [(False, True), (True, True), (True, False)],
                         ids=["enable-disable", "use-disable", "use-still-enabled"])
def test_process_exits_cleanly(extension_zip, tmp_path, use, disable):
    from support.baked import write_small_baked

    baked_dir = write_small_baked(tmp_path / "baked")
    script = tmp_path / "exit_check.py"
    script.write_text(_SCRIPT)
    user = tmp_path / "user"
    user.mkdir()
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(user))
    args = [sys.executable, str(script), str(extension_zip), str(baked_dir), str(DEMO_SCENE),
            str(tmp_path / "render.png"), "1" if use else "0", "1" if disable else "0"]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    tail = (proc.stdout[-1500:] + "\n" + proc.stderr[-3000:]).strip()
    assert "NEX-EXIT-CHECK: reached the end" in proc.stdout, f"the script failed before exiting:\n{tail}"
    assert proc.returncode == 0, f"exit code {proc.returncode} after the script ended:\n{tail}"
    if use:
        assert (tmp_path / "render.png").is_file()


def _bpy_paths(cls: type) -> list[str]:
    """How ``cls`` reaches the ``bpy`` module (what bpy 4.2 then keeps alive past the interpreter's
    shutdown): a walk through functions (their globals and closures), add-on classes (their dict and
    annotations, with the callbacks of bpy.props deferred properties) and containers. Other module objects
    end the walk: the interpreter clears their dicts at shutdown while they are still alive."""
    todo, seen, found = [(cls, cls.__qualname__)], set(), []
    while todo:
        obj, path = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, types.ModuleType):
            if obj.__name__.split(".")[0] == "bpy":
                found.append(path)
        elif isinstance(obj, types.FunctionType):
            todo += [(v, f"{path} -> global {k}") for k, v in obj.__globals__.items()]
            todo += [(c.cell_contents, f"{path} -> closure") for c in obj.__closure__ or ()]
        elif isinstance(obj, (staticmethod, classmethod)):
            todo.append((obj.__func__, path))
        elif isinstance(obj, property):
            todo += [(f, path) for f in (obj.fget, obj.fset, obj.fdel) if f is not None]
        elif isinstance(obj, type):
            if obj.__module__.startswith(ADDON_MODULE):
                todo += [(v, f"{path}.{k}") for k, v in vars(obj).items()]
                todo += [(b, f"{path} base {b.__qualname__}") for b in obj.__bases__]
        elif isinstance(obj, dict):
            todo += [(v, f"{path}[{k!r}]") for k, v in obj.items()]
        elif isinstance(obj, (list, tuple, set, frozenset)):
            todo += [(v, path) for v in obj]
        elif hasattr(obj, "function") and hasattr(obj, "keywords"):  # a bpy.props deferred property
            todo += [(v, f"{path} ({k}=)") for k, v in obj.keywords.items()]
    return found


def test_property_groups_cannot_reach_bpy(addon, bpy_module):
    """What the exit check guards in 4.2, checked in any version: no PropertyGroup class of the add-on
    reaches the ``bpy`` module through its functions' globals."""
    bpy = bpy_module
    groups = [cls for module in vars(addon).values() if isinstance(module, types.ModuleType)
              for cls in getattr(module, "classes", ()) if issubclass(cls, bpy.types.PropertyGroup)]
    assert len(groups) >= 2, "expected the add-on's PropertyGroups (job state, scene settings)"
    for cls in groups:
        paths = _bpy_paths(cls)
        assert not paths, (f"{cls.__qualname__} reaches the bpy module ({paths[0]}): bpy 4.2 keeps PropertyGroup "
                           f"classes alive, and Blender then crashes at exit; import bpy inside the function")
