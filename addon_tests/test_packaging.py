"""The extension zip: built by Blender's tool, valid, installable, self-contained and free of torch."""

from __future__ import annotations

import ast
import email.parser
import os
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import build_extension
import numpy as np
from addon_helpers import ADDON_MODULE, DEMO_SCENE, REPO
from support.baked import random_baked

OPERATORS = ("prepare", "train", "resume", "cancel", "bake", "export", "import_cameras", "import_mpi",
             "render_reference", "mpi_options", "make_portable", "render_dataset", "check_python",
             "create_environment", "cancel_environment", "poll_jobs")


def _blender_ext() -> Path:
    return build_extension.find_blender_ext()


def test_zip_layout(extension_zip):
    names = zipfile.ZipFile(extension_zip).namelist()
    for required in ("blender_manifest.toml", "__init__.py", "worker.py", "shading.py", "mpi_import.py",
                     "_vendor/nex_core/io/baked/__init__.py", "_vendor/nex_core/io/baked/reader.py",
                     "_vendor/nex_core/io/baked/reference_render.py", "_vendor/nex_core/io/mpi_geometry.py",
                     "_vendor/nex_core/io/cameras.py", "_vendor/nex_core/io/events.py", "_vendor/nex_core/io/config.py",
                     "_vendor/nex_core/io/scene/loader.py", "wheel/nex_blender-0.1.0-py3-none-any.whl"):
        assert required in names, required
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    # Only torch-free modules are vendored, and nothing in the zip imports torch.
    assert not [n for n in names if n.startswith("_vendor/nex_core/") and Path(n).stem in
                ("model", "train", "mpi", "render", "bake", "checkpoint", "run")]
    with zipfile.ZipFile(extension_zip) as zf:
        for name in names:
            if name.endswith(".py"):
                tree = ast.parse(zf.read(name).decode("utf-8"))
                imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
                imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree)
                             if isinstance(n, ast.ImportFrom) and not n.level}
                assert "torch" not in imported, name
                assert "nex_core" not in imported or not name.startswith("_vendor/"), \
                    f"{name}: vendored modules must import each other relatively"


def test_manifest_validates(extension_zip):
    proc = subprocess.run([sys.executable, str(_blender_ext()), "validate", str(extension_zip)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The manifest lives at the repository's top level and the build stages it into the package.
    assert not (REPO / "nex_blender" / "blender_manifest.toml").exists()
    manifest = tomllib.loads((REPO / "blender_manifest.toml").read_text())
    with zipfile.ZipFile(extension_zip) as zf:
        assert tomllib.loads(zf.read("blender_manifest.toml").decode()) == manifest
    assert manifest["type"] == "add-on" and manifest["blender_version_min"] == "4.2.0"
    assert set(manifest["permissions"]) == {"files", "network"}
    assert "PyTorch" in manifest["permissions"]["network"]
    assert "wheels" not in manifest  # the project's wheel is for the background Python, not Blender's
    assert "__pycache__/" in manifest["build"]["paths_exclude_pattern"]


def test_zip_carries_the_projects_wheel(extension_zip, tmp_path):
    """The wheel Create Environment installs: all of nex_core (torch parts included) with its data files
    and the torch pin, named in _build_info.json."""
    import json

    with zipfile.ZipFile(extension_zip) as zf:
        info = json.loads(zf.read("_build_info.json"))
        assert info["wheel"] == "wheel/nex_blender-0.1.0-py3-none-any.whl" and "source" not in info
        (tmp_path / "w.whl").write_bytes(zf.read(info["wheel"]))
    with zipfile.ZipFile(tmp_path / "w.whl") as whl:
        names = set(whl.namelist())
        metadata = email.parser.Parser().parsestr(whl.read("nex_blender-0.1.0.dist-info/METADATA").decode())
        entry_points = whl.read("nex_blender-0.1.0.dist-info/entry_points.txt").decode()
    wanted = {p.relative_to(REPO).as_posix() for p in (REPO / "nex_core").rglob("*")
              if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    assert wanted <= names, sorted(wanted - names)[:10]
    assert "torch==2.13.0" in metadata.get_all("Requires-Dist")
    assert "nex = nex_core.cli:main" in entry_points


def _build_machine_paths(extension_zip: Path) -> list[str]:
    paths = {str(REPO), str(REPO.resolve()), str(extension_zip.parent), os.path.expanduser("~"),
             "/tmp/nex_ext_", "/tmp/pip-"}
    return sorted(p for p in paths if len(p) > 4)


def test_zip_has_no_build_machine_paths(extension_zip):
    """Grep every file of the zip, and every member of the wheel inside it, for the checkout's path, the
    build's temporary folders and the home folder."""
    import io

    needles = [p.encode() for p in _build_machine_paths(extension_zip)]
    with zipfile.ZipFile(extension_zip) as zf:
        members = [(n, zf.read(n)) for n in zf.namelist()]
    for name, data in list(members):
        if name.endswith(".whl"):
            with zipfile.ZipFile(io.BytesIO(data)) as whl:
                members += [(f"{name}!{n}", whl.read(n)) for n in whl.namelist()]
    assert len(members) > 100
    hits = [f"{name}: {needle.decode()}" for name, data in members for needle in needles if needle in data]
    assert not hits, hits


def test_build_tool_rejects_build_machine_paths(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "wheel").mkdir(parents=True)
    (pkg / "a.py").write_text("X = 1\n")
    with zipfile.ZipFile(pkg / "wheel" / "x.whl", "w") as whl:
        whl.writestr("x/info.json", '{"source": "/home/builder/nex"}')
    build_extension.check_no_build_paths(pkg, ["/elsewhere"])
    try:
        build_extension.check_no_build_paths(pkg, ["/home/builder"])
    except build_extension.BuildError as exc:
        assert "wheel/x.whl!x/info.json contains /home/builder" in str(exc)
    else:
        raise AssertionError("a wheel member holding a build path was accepted")


def test_installed_and_registered(addon, bpy_module):
    bpy = bpy_module
    assert bpy.context.preferences.addons[ADDON_MODULE].preferences is not None
    for name in OPERATORS:
        assert getattr(bpy.ops.nex, name).get_rna_type().identifier, name
    assert hasattr(bpy.types.Scene, "nex")
    assert bpy.types.Node.bl_rna_get_subclass_py("ShaderNodeNexMPI") is not None
    assert addon._core.VENDORED and addon._core.PACKAGE == f"{ADDON_MODULE}._vendor.nex_core"
    panels = {cls.__name__ for cls in addon.ui.classes}
    assert {"NEX_PT_main", "NEX_PT_mpi_object", "NEX_PT_dataset"} <= panels


def test_fresh_blender_never_imports_torch_or_pillow(extension_zip, tmp_path):
    """Enable the add-on in a fresh process, import cameras and an MPI, render: no torch, no Pillow
    (Blender's own Python has neither); then disable and enable again cleanly."""
    from nex_core.io.baked import MPIInfo, write_baked

    info = MPIInfo(width=16, height=12, fx=15.0, fy=15.0, cx=8.0, cy=6.0, offset=2, depths=(2.0, 3.0, 4.0, 6.0),
                   layers=2, sublayers=2, n_basis=4, basis_kind="learned", lut_width=8, lut_height=8,
                   lut_vx=(-0.6, 0.6), lut_vy=(-0.5, 0.5), ref_c2w=np.eye(4))
    write_baked(random_baked(info, np.random.default_rng(0)), tmp_path / "baked")
    script = textwrap.dedent(f"""
        import os, sys
        os.environ["BLENDER_USER_RESOURCES"] = {str(tmp_path / "user")!r}
        import bpy
        assert bpy.ops.extensions.package_install_files(filepath={str(extension_zip)!r}, repo="user_default",
                                                         enable_on_install=True) == {{"FINISHED"}}
        bpy.ops.wm.read_homefile(use_empty=True)
        bpy.ops.nex.import_cameras(directory={str(DEMO_SCENE)!r}, background_images=False)
        bpy.ops.nex.import_mpi(directory={str(tmp_path / "baked")!r})
        sc = bpy.context.scene
        sc.render.engine = "CYCLES"; sc.cycles.samples = 1
        bpy.ops.nex.render_reference(filepath={str(tmp_path / "r.png")!r})
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "PIL"))
        print("HEAVY", bad)
        bpy.ops.preferences.addon_disable(module={ADDON_MODULE!r})
        assert not hasattr(bpy.types.Scene, "nex")
        assert bpy.types.Node.bl_rna_get_subclass_py("ShaderNodeNexMPI") is None
        bpy.ops.preferences.addon_enable(module={ADDON_MODULE!r})
        assert hasattr(bpy.types.Scene, "nex")
        assert bpy.types.Node.bl_rna_get_subclass_py("ShaderNodeNexMPI") is not None
        print("OK")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "HEAVY []" in proc.stdout and "OK" in proc.stdout, proc.stdout[-3000:]
    assert (tmp_path / "r.png").is_file()


def test_build_tool_rejects_torch_in_vendored_modules(tmp_path, monkeypatch):
    fake = tmp_path / "nex_core"
    for rel in build_extension.VENDORED:
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake / rel).write_text("import numpy\n")
    (fake / "io" / "baked" / "reader.py").write_text("def f():\n    import torch\n")
    try:
        build_extension.check_vendored(fake)
    except build_extension.BuildError as exc:
        assert "baked/reader.py:2 imports torch" in str(exc)
    else:
        raise AssertionError("a vendored module importing torch was accepted")
    assert build_extension.relativize("from nex_core.io.cameras import Camera\n", "io/scene/loader.py") == \
        "from ...io.cameras import Camera\n"


def test_a_users_own_nex_core_does_not_collide(extension_zip, tmp_path):
    """A different nex_core importable in Blender's Python (a user's own, an older copy) stays what it is,
    and the add-on keeps using its vendored copy; disable + enable (a reload) keeps it so."""
    own = tmp_path / "site" / "nex_core"
    own.mkdir(parents=True)
    (own / "__init__.py").write_text('__version__ = "9.9-users-own"\n')
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(own.parent)!r})
        os.environ["BLENDER_USER_RESOURCES"] = {str(tmp_path / "user")!r}
        import nex_core
        import bpy
        assert bpy.ops.extensions.package_install_files(filepath={str(extension_zip)!r}, repo="user_default",
                                                         enable_on_install=True) == {{"FINISHED"}}
        import importlib
        for attempt in range(2):
            core = importlib.import_module({ADDON_MODULE!r} + "._core")
            assert core.PACKAGE == {ADDON_MODULE!r} + "._vendor.nex_core", core.PACKAGE
            assert core.module("cameras").__file__.startswith(os.environ["BLENDER_USER_RESOURCES"])
            assert sys.modules["nex_core"] is nex_core and nex_core.__version__ == "9.9-users-own"
            bpy.ops.wm.read_homefile(use_empty=True)
            assert bpy.ops.nex.import_cameras(directory={str(DEMO_SCENE)!r}, background_images=False) == {{"FINISHED"}}
            bpy.ops.preferences.addon_disable(module={ADDON_MODULE!r})
            bpy.ops.preferences.addon_enable(module={ADDON_MODULE!r})
        print("OK")
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
