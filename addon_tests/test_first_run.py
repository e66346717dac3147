"""The whole first run, as docs/blender.md tells a new user, in a fresh Blender user folder with no
repository on any path: install the built zip, Create Environment (offline, from a local wheel folder
standing in for the package index; it pip-installs nex_core from the wheel inside the zip), Prepare on a
folder of photos, Train (tiny), Bake, Import MPI and render, compared with the numpy renderer.

Blender runs in a subprocess (its own ``BLENDER_USER_RESOURCES``, the checkout and its editable install
taken off ``sys.path`` before ``bpy`` is imported); each step's time is printed and kept as a test property.
``NEX_TEST_ONLINE=1`` runs the same first run against the real package index (online access on, CPU torch
from download.pytorch.org): minutes and about 370 MB.

Also here: a dataset made by the add-on's Render Dataset trains with ``nex train``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from addon_helpers import REPO, psnr

from nex_core.io.baked import read_baked
from nex_core.io.baked.reference_render import render_baked

ONLINE = os.environ.get("NEX_TEST_ONLINE") == "1"
GRID, SIZE = (4, 4), (320, 240)


def _base_python() -> str:
    """The interpreter this test's venv was made from (a new environment is made from it too)."""
    base = getattr(sys, "_base_executable", "") or sys.executable
    return base if Path(base).is_file() else sys.executable


@pytest.fixture(scope="session")
def wheelhouse(request, extension_zip, tmp_path_factory) -> Path:
    """The project's dependencies as wheels (torch included), fetched once and kept in pytest's cache (in a
    temporary folder under ``-p no:cacheprovider``); the project's own wheel is left out, so that only the
    zip can provide nex_core."""
    import zipfile

    cache = getattr(request.config, "cache", None)
    folder = (Path(cache.mkdir("nex_first_run_wheels")) if cache is not None
              else tmp_path_factory.mktemp("nex_first_run_wheels"))
    with zipfile.ZipFile(extension_zip) as zf:
        wheel_name = json.loads(zf.read("_build_info.json"))["wheel"]
        staged = folder.parent / Path(wheel_name).name
        staged.write_bytes(zf.read(wheel_name))
    if not list(folder.glob("torch-*.whl")):
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary", ":all:",
                               "--dest", str(folder), str(staged)], capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for own in folder.glob("nex_blender-*.whl"):
        own.unlink()
    staged.unlink()
    return folder


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Path:
    """A folder of photos: the matte textured scene of tools/render_sfm_scene.py, 4 x 4 views."""
    out = tmp_path_factory.mktemp("first_run_photos")
    subprocess.run([sys.executable, str(REPO / "tools" / "render_sfm_scene.py"), "--out", str(out), "--grid",
                    *map(str, GRID), "--size", *map(str, SIZE)], check=True, cwd=REPO, timeout=900,
                   capture_output=True)
    return out / "images"


SCRIPT = textwrap.dedent('''
    import importlib.util, json, os, sys, time
    repo, zip_path, work, base, wheels, online = sys.argv[1:7]
    # No repository on any path: drop the checkout and its editable install before Blender starts.
    prefix = os.path.realpath(sys.prefix)  # (the venv may live inside the checkout, as in CI)
    sys.path[:] = [p for p in sys.path if p and "__editable__" not in p
                   and (not os.path.realpath(p).startswith(repo) or os.path.realpath(p).startswith(prefix))]
    sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
    sys.path_importer_cache.clear()
    assert importlib.util.find_spec("nex_core") is None, "nex_core is still importable"
    os.environ["BLENDER_USER_RESOURCES"] = os.path.join(work, "user")
    import bpy

    times, out = {}, {}
    def step(name, fn):
        t0 = time.time(); result = fn(); times[name] = round(time.time() - t0, 1); return result

    def wait(key, timeout):
        job = addon.worker.get(key)
        end = time.time() + timeout
        while job.status.running and time.time() < end:
            addon.worker.poll_step(); time.sleep(0.2)
        if job.status.running:
            job.kill(); raise AssertionError(f"{job.kind} still running after {timeout} s")
        addon.worker.poll_step()
        assert job.status.succeeded, f"{job.kind}: {job.status.error}\\n" + addon.worker.read_tail(job.log_path)
        return job

    # 1. Install the zip (Edit > Preferences > Get Extensions > Install from Disk).
    step("install", lambda: bpy.ops.extensions.package_install_files(
        filepath=zip_path, repo="user_default", enable_on_install=True))
    import bl_ext.user_default.nex_blender as addon
    out["vendored"] = addon._core.PACKAGE
    prefs = bpy.context.preferences.addons[addon.__name__].preferences

    # 2. Create Environment (offline: a local wheel folder; or online with access allowed).
    prefs.base_python = base
    if online == "1":
        bpy.context.preferences.system.use_online_access = True
        prefs.torch_variant = "CPU"
    else:
        prefs.wheel_folder = wheels
    plan = addon.environment.plan(prefs)
    out["plan"] = plan.download_text()
    out["env_commands"] = plan.commands
    def create():
        assert bpy.ops.nex.create_environment() == {"FINISHED"}
        return wait(addon.worker.ENV_JOB, 1800)
    step("create_environment", create)
    env = addon.prefs.env_dir()
    out["env"] = str(env)
    assert bpy.ops.nex.check_python() == {"FINISHED"}
    out["check"] = [prefs.check_ok, prefs.check_summary]
    out["background_python"] = addon.prefs.background_python()

    # 3. Prepare on the folder of photos.
    bpy.ops.wm.read_homefile(use_empty=True)
    sc = bpy.context.scene
    settings = sc.nex
    settings.photos_dir = os.path.join(work, "photos")
    settings.scene_dir = os.path.join(work, "scene")
    def prepare():
        assert bpy.ops.nex.prepare() == {"FINISHED"}
        wait(sc.name, 900)
    step("prepare", prepare)

    # 4. Train (the tiny preset), 5. Bake.
    settings.preset = "tiny"
    settings.run_dir = os.path.join(work, "run")
    def train():
        assert bpy.ops.nex.train() == {"FINISHED"}
        wait(sc.name, 900)
    step("train", train)
    def bake():
        assert bpy.ops.nex.bake() == {"FINISHED"}
        wait(sc.name, 600)
    step("bake", bake)

    # 6. Import MPI and render from its reference camera.
    baked = os.path.join(work, "run", "baked")
    step("import_mpi", lambda: bpy.ops.nex.import_mpi(directory=baked, set_view_transform=True))
    sc.world = bpy.data.worlds.new("black"); sc.world.color = (0.0, 0.0, 0.0)
    for node in (sc.world.node_tree.nodes if sc.world.node_tree else ()):
        if node.type == "BACKGROUND":
            node.inputs["Strength"].default_value = 0.0
    sc.render.engine = "CYCLES"; sc.cycles.device = "CPU"; sc.cycles.samples = 1
    sc.cycles.use_adaptive_sampling = False; sc.cycles.use_denoising = False
    sc.cycles.pixel_filter_type = "BOX"; sc.cycles.filter_width = 0.01
    sc.render.dither_intensity = 0.0; sc.render.threads_mode = "FIXED"; sc.render.threads = 2
    sc.render.image_settings.file_format = "PNG"; sc.render.image_settings.color_mode = "RGB"
    sc.render.image_settings.color_depth = "16"; sc.render.film_transparent = False
    step("render", lambda: bpy.ops.nex.render_reference(filepath=os.path.join(work, "render.png")))
    out["view_transform"] = sc.view_settings.view_transform
    out["torch_in_blender"] = sorted(m for m in sys.modules if m.split(".")[0] == "torch")
    out["times"] = times
    print("FIRST_RUN " + json.dumps(out))
''')


def _first_run(tmp_path: Path, extension_zip: Path, photos: Path, wheelhouse: Path | None) -> dict:
    work = tmp_path / "first_run"
    work.mkdir()
    shutil.copytree(photos, work / "photos")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BLENDER_USER_RESOURCES")}
    args = [sys.executable, "-c", SCRIPT, str(REPO.resolve()), str(extension_zip), str(work), _base_python(),
            str(wheelhouse or ""), "1" if wheelhouse is None else "0"]
    t0 = time.time()
    proc = subprocess.run(args, capture_output=True, text=True, cwd=work, env=env, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("FIRST_RUN "))
    out = json.loads(line[len("FIRST_RUN "):])
    out["times"]["total"] = round(time.time() - t0, 1)
    out["work"] = work
    return out


def _check(out: dict, record_property) -> None:
    work = out["work"]
    for name, seconds in out["times"].items():
        record_property(f"seconds_{name}", seconds)
    print("first run, seconds per step:", out["times"])
    assert out["vendored"] == "bl_ext.user_default.nex_blender._vendor.nex_core"
    assert out["torch_in_blender"] == []
    ok, summary = out["check"]
    assert ok and "nex_core 0.1.0" in summary and "torch 2.13.0" in summary, summary
    env = Path(out["env"])
    assert out["background_python"].startswith(str(env))
    # nex_core came from the wheel inside the installed zip (pip records where it installed from).
    direct_url = next(env.glob("lib/python*/site-packages/nex_blender-0.1.0.dist-info/direct_url.json"))
    url = json.loads(direct_url.read_text())["url"]
    assert url.startswith("file://") and url.endswith("/extensions/user_default/nex_blender/wheel/"
                                                      "nex_blender-0.1.0-py3-none-any.whl"), url
    assert str(REPO) not in url
    # The render matches nex_core's numpy renderer of the baked MPI: Import MPI's defaults (scene-linear
    # colours, the Standard view transform it sets) over-composite in linear light.
    import imageio.v3 as iio

    baked = read_baked(work / "run" / "baked")
    img = iio.imread(work / "render.png")
    got = img[..., :3].astype(np.float64) / (65535.0 if img.dtype == np.uint16 else 255.0)
    assert out["view_transform"] == "Standard"
    want = render_baked(baked, baked.info.ref_camera(), linear_light=True)[..., :3]
    value = psnr(got, want)
    record_property("psnr_db", value)
    print(f"first run: render vs numpy renderer {value:.2f} dB ({out['view_transform']})")
    assert value >= 40.0


@pytest.mark.slow
def test_first_run_offline(tmp_path, extension_zip, photos, wheelhouse, record_property):
    out = _first_run(tmp_path, extension_zip, photos, wheelhouse)
    assert out["plan"] == "installs offline from the local wheel folder (no download)"
    assert all("--no-index" in c for c in out["env_commands"] if "pip" in c)
    _check(out, record_property)


@pytest.mark.slow
@pytest.mark.skipif(not ONLINE, reason="downloads about 370 MB from the package index: set NEX_TEST_ONLINE=1")
def test_first_run_online(tmp_path, extension_zip, photos, record_property):
    out = _first_run(tmp_path, extension_zip, photos, None)
    assert "downloads about 370 MB" in out["plan"]
    assert any("https://download.pytorch.org/whl/cpu" in c for c in out["env_commands"])
    _check(out, record_property)


# --------------------------------------------------------------------------------------------------
# Render Dataset -> nex train


def _checker_scene(bpy, sc):
    """A checkered emissive wall and two boxes (no lights: clean at 2 samples), and a camera facing them."""
    import math

    def material(name, colour):
        mat = bpy.data.materials.new(name)
        if bpy.app.version < (5, 0, 0):
            mat.use_nodes = True
        nodes, links = mat.node_tree.nodes, mat.node_tree.links
        nodes.clear()
        tex = nodes.new("ShaderNodeTexChecker")
        tex.inputs["Scale"].default_value = 8.0
        tex.inputs["Color1"].default_value = (*colour, 1.0)
        tex.inputs["Color2"].default_value = (*[0.2 * c for c in colour], 1.0)
        em = nodes.new("ShaderNodeEmission")
        links.new(tex.outputs["Color"], em.inputs["Color"])
        links.new(em.outputs[0], nodes.new("ShaderNodeOutputMaterial").inputs[0])
        return mat

    bpy.ops.mesh.primitive_plane_add(size=10, location=(0, 6, 1), rotation=(math.pi / 2, 0, 0))
    bpy.context.active_object.data.materials.append(material("wall", (0.9, 0.8, 0.6)))
    for x, y, colour in ((-0.8, 3.0, (0.9, 0.2, 0.1)), (0.9, 2.4, (0.1, 0.7, 0.9))):
        bpy.ops.mesh.primitive_cube_add(size=0.9, location=(x, y, 0.3))
        bpy.context.active_object.data.materials.append(material(f"box{x}", colour))
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    cam.data.lens = 30.0
    sc.collection.objects.link(cam)
    cam.location, cam.rotation_euler = (0.0, -2.0, 0.6), (math.radians(85), 0.0, 0.0)
    sc.camera = cam
    sc.render.resolution_x, sc.render.resolution_y, sc.render.resolution_percentage = 64, 48, 100
    sc.cycles.samples = 2


@pytest.mark.slow
def test_render_dataset_trains_with_nex_train(scene, bpy_module, tmp_path):
    """The scene folder Render Dataset writes is one ``nex train`` takes as it is (tiny preset, 30 steps),
    and the run's cameras are the dataset's."""
    from nex_core.io.events import read_events
    from nex_core.io.scene.loader import load_cameras

    bpy = bpy_module
    _checker_scene(bpy, scene)
    data = tmp_path / "dataset"
    assert bpy.ops.nex.render_dataset(directory=str(data), cols=4, rows=3, jitter=0.2, seed=1) == {"FINISHED"}
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "nex_core.cli", "train", str(data), "--preset", "tiny",
                           "--steps", "30", "--out", str(run), "--no-eval", "--quiet"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    events = read_events(run / "events.jsonl")
    losses = [e["loss"] for e in events if "loss" in e]
    assert any(e.get("step") == 30 for e in events) and losses and all(np.isfinite(losses))
    assert list((run / "checkpoints").glob("step_*.pt"))
    views = load_cameras(data)
    assert len(views.cameras) == 12 and (views.cameras[0].width, views.cameras[0].height) == (64, 48)
