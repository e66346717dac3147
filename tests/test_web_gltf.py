"""The real-time outputs of a baked MPI: the WebGL2 viewer (`nex view`) and the glTF export (`nex export`).

Browser tests run the system's Chromium headless (SwiftShader WebGL2) through playwright-core, and the
glTF checks run the Khronos validator and three.js, all from tools/js/node_modules (`npm ci` there;
.ci/run installs Chromium, Node and glslang and runs it). Without them those tests skip, saying why —
except under CI (CI=true), where a missing tool is a failure, so a green CI always ran them.
Every picture is compared with nex_core/io/baked/reference_render.py, the reference renderer of a baked
MPI.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import struct
import subprocess
import sys
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
from support.images import psnr
from support.models import random_model

from nex_core.export.bake import bake_model, camera_span
from nex_core.export.gltf import EXTENSION, Z_UP_TO_Y_UP, export_glb
from nex_core.export.webview import SHADER_DIR, ViewerServer, viewer_config
from nex_core.io.baked import read_baked, write_baked
from nex_core.io.baked.reference_render import render_baked
from nex_core.io.cameras import Camera

REPO = Path(__file__).resolve().parents[1]
JS = REPO / "tools" / "js"
BROWSER_TIMEOUT_S = 120


# --------------------------------------------------------------------------------------------------
# Tools


def _missing(what: str) -> None:
    message = f"{what}; install it as .ci/run does"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run this test: {message}")
    pytest.skip(message)


def need_node() -> str:
    node = shutil.which("node")
    if node is None:
        _missing("Node.js (`node`) is not installed")
    if not (JS / "node_modules" / "three").is_dir() or not (JS / "node_modules" / "playwright-core").is_dir() \
            or not (JS / "node_modules" / "gltf-validator").is_dir():
        _missing(f"the npm packages are not installed (run `npm ci` in {JS})")
    return node


def need_chromium() -> str:
    path = os.environ.get("NEX_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        _missing("Chromium is not installed (Debian: apt-get install chromium)")
    return path


def run_browser(job: dict) -> dict:
    """tools/js/browser.mjs: open job['url'] in headless Chromium, wait for the page's title, screenshot."""
    node = need_node()
    job = {"width": 640, "height": 480, "chromium": need_chromium(), "timeout_ms": BROWSER_TIMEOUT_S * 900, **job}
    result = subprocess.run([node, str(JS / "browser.mjs"), json.dumps(job)], capture_output=True, text=True,
                            timeout=BROWSER_TIMEOUT_S, cwd=JS)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert "error" not in out, out
    assert out["title"] in ("rendered", "bench done"), out
    return out


def read_png(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB")).astype(np.float32) / 255.0


def camera_json(cam: Camera) -> str:
    return json.dumps({"c2w": cam.c2w.tolist(), "fx": cam.fx, "fy": cam.fy, "cx": cam.cx, "cy": cam.cy,
                       "width": cam.width, "height": cam.height})


# --------------------------------------------------------------------------------------------------
# A tiny baked MPI: a random-weight model (3 layers x 2 sublayers, 8 basis functions), atlases split over
# several textures (max_texture 120) so tile rectangles across atlases are exercised.


def _tiny_bake(tmp_path_factory, compositing: str) -> dict:
    model, geom, ref, cams = random_model(sublayers=2, seed=0, compositing=compositing)
    baked = bake_model(model, geom, ref, cams + [ref], lut_size=64,
                       metadata={"camera_span": camera_span(ref, cams), "scene": "random"})
    root = tmp_path_factory.mktemp("web")
    out = write_baked(baked, root / "baked", max_texture=120)
    glb = root / "tiny.glb"
    export_glb(out, glb)
    return {"dir": out, "baked": read_baked(out), "ref": ref, "held_out": cams, "glb": glb, "root": root}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _tiny_bake(tmp_path_factory, "srgb")


@pytest.fixture(scope="module")
def tiny_linear(tmp_path_factory):
    """The same MPI trained to composite in linear light (model.compositing = "linear")."""
    return _tiny_bake(tmp_path_factory, "linear")


# --------------------------------------------------------------------------------------------------
# The server


def _get(port: int, path: str, host: str | None = None, method: str = "GET") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host or f"127.0.0.1:{port}")
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_server_binds_loopback_and_serves_only_the_baked_mpi(tiny, tmp_path):
    secret = b"not for the browser"
    (tiny["root"] / "secret.txt").write_bytes(secret)
    (tiny["dir"] / "notes.txt").write_bytes(secret)  # inside the baked directory, but not part of the MPI
    with ViewerServer(tiny["dir"], config=viewer_config(tiny["dir"])) as server:
        host, port = server.address
        assert host == "127.0.0.1" and server.url == f"http://127.0.0.1:{port}/"
        for path in ("/", "/viewer.js", "/mpi.frag", "/baked/mpi.json", "/baked/alpha_00.png", "/config.json"):
            status, body = _get(port, path)
            assert status == 200 and body, path
        status, body = _get(port, "/")
        assert b"viewer.js" in body
        config = json.loads(_get(port, "/config.json")[1])
        assert config["camera_span"]["min"][0] <= 0 <= config["camera_span"]["max"][0]
        attempts = ["/../secret.txt", "/baked/../secret.txt", "/baked/../../secret.txt", "/baked/%2e%2e/secret.txt",
                    "/baked/..%2fsecret.txt", "/baked/%2E%2E%2F%2E%2E%2Fsecret.txt", "/baked/..%5csecret.txt",
                    "/baked/..\\secret.txt", "//etc/passwd", "/etc/passwd", "/baked//etc/passwd",
                    "/baked/%2fetc%2fpasswd", "/baked/notes.txt", "/baked/./mpi.json", "/baked/mpi.json%00.png",
                    "/viewer.js/../baked/notes.txt", "/../../../../etc/passwd", "/baked/%c0%ae%c0%ae/secret.txt",
                    "/nex_core/export/webview.py", "/webview.py", "/baked", "http://example.com/baked/mpi.json"]
        for path in attempts:
            status, body = _get(port, path)
            assert status in (400, 404), (path, status)
            assert secret not in body and b"root:" not in body, path
        # Another site's page reaching this server through DNS rebinding names another host.
        assert _get(port, "/baked/mpi.json", host="attacker.example:80")[0] == 403
        assert _get(port, "/baked/mpi.json", host=f"localhost:{port}")[0] == 200
        assert _get(port, "/baked/mpi.json", method="POST")[0] == 501
        assert _get(port, "/baked/mpi.json", method="PUT")[0] == 501


def test_nex_view_prints_the_url_and_serves(tiny, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "nex_core.cli", "view", str(tiny["dir"]), "--no-browser",
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        url = next(w for line in lines for w in line.split() if w.startswith("http://"))
        parsed = urllib.parse.urlsplit(url)
        assert parsed.hostname == "127.0.0.1"
        status, body = _get(parsed.port, "/baked/mpi.json")
        assert status == 200 and json.loads(body)["format"] == "nex-baked-mpi"
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
    # A run without a baked MPI, not to be baked: a clear message.
    (tmp_path / "run").mkdir()
    result = subprocess.run([sys.executable, "-m", "nex_core.cli", "view", str(tmp_path / "run"), "--no-browser",
                             "--no-bake"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 2 and "nex bake" in result.stderr


# --------------------------------------------------------------------------------------------------
# The web viewer in Chromium


def _viewer_shot(tiny, cam: Camera, tmp_path: Path, vd: bool = True) -> np.ndarray:
    with ViewerServer(tiny["dir"], config=viewer_config(tiny["dir"])) as server:
        url = f"{server.url}?once=1&vd={int(vd)}#camera={urllib.parse.quote(camera_json(cam))}"
        shot = tmp_path / "viewer.png"
        out = run_browser({"url": url, "screenshot": str(shot), "read": "window.nexViewer.textureBytes"})
        assert out["value"] > 0
    return read_png(shot)


@pytest.mark.parametrize("index", [0, 3])
def test_web_viewer_matches_the_reference_renderer_at_held_out_views(tiny, tmp_path, index):
    cam = tiny["held_out"][index]
    got = _viewer_shot(tiny, cam, tmp_path)
    expected = render_baked(tiny["baked"], cam)[..., :3]
    assert got.shape == expected.shape
    value = psnr(got, expected)
    assert value >= 40.0, value
    # The view-dependent part is really drawn: k0 alone is far from it.
    assert psnr(render_baked(tiny["baked"], cam, view_dependent=False)[..., :3], expected) < value - 5


def test_web_viewer_composites_a_linear_light_mpi_in_linear_light(tiny_linear, tmp_path):
    """An MPI trained with compositing "linear": the viewer decodes, blends in its fp16 target and encodes,
    as the numpy reference does; compositing the encoded values instead would be visibly off."""
    cam = tiny_linear["held_out"][1]
    got = _viewer_shot(tiny_linear, cam, tmp_path)
    expected = render_baked(tiny_linear["baked"], cam)[..., :3]
    value = psnr(got, expected)
    assert value >= 40.0, value
    wrong = render_baked(tiny_linear["baked"], cam, linear_light=False)[..., :3]
    assert psnr(got, wrong) < value - 5


def test_web_viewer_toggle_renders_k0_only(tiny, tmp_path):
    cam = tiny["held_out"][1]
    got = _viewer_shot(tiny, cam, tmp_path, vd=False)
    assert psnr(got, render_baked(tiny["baked"], cam, view_dependent=False)[..., :3]) >= 40.0


# --------------------------------------------------------------------------------------------------
# glTF


def read_glb(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", data)
    assert magic == b"glTF" and version == 2 and length == len(data)
    n_json, kind = struct.unpack_from("<I4s", data, 12)
    assert kind == b"JSON" and n_json % 4 == 0
    doc = json.loads(data[20:20 + n_json])
    n_bin, kind = struct.unpack_from("<I4s", data, 20 + n_json)
    assert kind == b"BIN\0"
    return doc, data[28 + n_json:28 + n_json + n_bin]


def _quat_matrix(q) -> np.ndarray:
    x, y, z, w = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _node_matrix(node: dict) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = _quat_matrix(node.get("rotation", [0, 0, 0, 1]))
    m[:3, 3] = node.get("translation", [0, 0, 0])
    return m


def test_glb_structure_places_the_planes_in_the_scene(tiny):
    doc, binary = read_glb(tiny["glb"])
    info = tiny["baked"].info
    assert doc["asset"]["version"] == "2.0"
    assert "KHR_materials_unlit" in doc["extensionsUsed"] and EXTENSION in doc["extensionsUsed"]
    assert EXTENSION not in doc.get("extensionsRequired", [])
    nodes = doc["nodes"]
    root = nodes[doc["scenes"][0]["nodes"][0]]
    rig_index = root["children"][0]
    rig = nodes[rig_index]
    ext = rig["extensions"][EXTENSION]
    planes = [n for n in rig["children"] if "mesh" in nodes[n]]
    assert planes == list(reversed(ext["planes"]))  # back to front
    assert ext["depths"] == list(info.depths) and ext["layers"] == info.layers
    assert len(ext["coefficientTextures"]) == info.layers and len(ext["coefficientTextures"][0]) == info.n_basis
    for j, n in enumerate(ext["planes"]):
        mat = doc["materials"][doc["meshes"][nodes[n]["mesh"]]["primitives"][0]["material"]]
        assert mat["alphaMode"] == "BLEND" and "KHR_materials_unlit" in mat["extensions"]
    # World = (Z-up -> Y-up) x reference pose x plane offset: the quad corners project onto the
    # reference image's MPI rectangle.
    to_world = np.eye(4)
    to_world[:3, :3] = Z_UP_TO_Y_UP.T  # back from glTF's Y-up to the scene's world
    to_rig = to_world @ _node_matrix(root) @ _node_matrix(rig)
    ref = info.ref_camera()
    for j in (0, info.n_planes - 1):
        node = nodes[ext["planes"][j]]
        acc = doc["accessors"][doc["meshes"][node["mesh"]]["primitives"][0]["attributes"]["POSITION"]]
        view = doc["bufferViews"][acc["bufferView"]]
        corners = np.frombuffer(binary, np.float32, 12, view["byteOffset"]).reshape(4, 3).astype(np.float64)
        world = (to_rig @ _node_matrix(node) @ np.c_[corners, np.ones(4)].T).T[:, :3]
        pix = ref.project(world)
        o = info.offset
        want = np.array([[-o, -o], [info.width + o, -o], [-o, info.height + o], [info.width + o, info.height + o]])
        np.testing.assert_allclose(pix, want, atol=1e-3)
        depth = (ref.w2c @ np.c_[world, np.ones(4)].T)[2]
        np.testing.assert_allclose(depth, info.depths[j], rtol=1e-5)
    # The camera node sits at the reference camera.
    cam_node = nodes[rig["children"][0]]
    assert cam_node.get("camera") == 0 and "translation" not in cam_node
    yfov = doc["cameras"][0]["perspective"]["yfov"]
    assert yfov == pytest.approx(2 * np.arctan(info.height / (2 * info.fy)))


def test_glb_passes_the_khronos_validator(tiny, tmp_path):
    node = need_node()
    small = tmp_path / "small.glb"
    export_glb(tiny["dir"], small, extension=False)
    for path in (tiny["glb"], small):
        result = subprocess.run([node, str(JS / "validate_gltf.mjs"), str(path)], capture_output=True, text=True,
                                timeout=120, cwd=JS)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        issues = report["issues"]
        errors = [m for m in issues["messages"] if m["severity"] == 0]
        assert issues["numErrors"] == 0 and not errors, errors
        assert issues["numWarnings"] == 0, [m for m in issues["messages"] if m["severity"] == 1]
        assert report["info"]["drawCallCount"] == tiny["baked"].info.n_planes


def _three_shot(tiny, tmp_path: Path, mode: str, cam: Camera, vd: bool = True, linear: bool = False) -> np.ndarray:
    files = {"/gltf_view.html": JS / "gltf_view.html", "/gltf_view.js": JS / "gltf_view.js",
             "/model.glb": tiny["glb"], "/shaders/nex_mpi.glsl": SHADER_DIR / "nex_mpi.glsl"}
    with ViewerServer(extra_files=files, mounts={"/three/": JS / "node_modules" / "three"}) as server:
        url = (f"{server.url}gltf_view.html?glb=/model.glb&mode={mode}&width={cam.width}&height={cam.height}"
               f"&vd={int(vd)}&linear={int(linear)}#camera={urllib.parse.quote(camera_json(cam))}")
        shot = tmp_path / f"three_{mode}.png"
        run_browser({"url": url, "screenshot": str(shot)})
    return read_png(shot)


def test_glb_in_threejs_shows_the_reference_view(tiny, tmp_path):
    """Plain three.js (GLTFLoader, the file's own camera, no custom code) against the baked MPI's RGBA."""
    ref = tiny["ref"]
    got = _three_shot(tiny, tmp_path, "core", ref)
    expected = render_baked(tiny["baked"], ref)[..., :3]
    assert got.shape == expected.shape
    assert psnr(got, expected) >= 40.0, psnr(got, expected)


@pytest.mark.parametrize("index", [2, 5])
def test_engine_glsl_shader_with_the_extension_matches_held_out_views(tiny, tmp_path, index):
    """EXT_nex_mpi + nex_core/export/shaders/nex_mpi.glsl in three.js: the full view-dependent colour."""
    cam = tiny["held_out"][index]
    got = _three_shot(tiny, tmp_path, "ext", cam)
    expected = render_baked(tiny["baked"], cam)[..., :3]
    value = psnr(got, expected)
    assert value >= 40.0, value
    assert psnr(render_baked(tiny["baked"], cam, view_dependent=False)[..., :3], expected) < value - 5


@pytest.mark.parametrize("mode", ["core", "ext"])
def test_linear_light_mpi_in_a_linear_threejs_pipeline(tiny_linear, tmp_path, mode):
    """A linear-light MPI in three.js rendering into a half-float target (an engine's linear pipeline):
    plain GLTFLoader materials ("core", the reference view) and the engine shader with NEX_LINEAR_OUTPUT
    ("ext", a held-out view) both match the numpy reference."""
    cam = tiny_linear["ref"] if mode == "core" else tiny_linear["held_out"][2]
    got = _three_shot(tiny_linear, tmp_path, mode, cam, linear=True)
    expected = render_baked(tiny_linear["baked"], cam)[..., :3]
    value = psnr(got, expected)
    assert value >= 40.0, value
    assert psnr(render_baked(tiny_linear["baked"], cam, linear_light=False)[..., :3], expected) < value - 5


def test_engine_shaders_compile(tmp_path):
    glslang = shutil.which("glslangValidator")
    if glslang is None:
        _missing("glslangValidator is not installed (Debian: apt-get install glslang-tools)")
    src = (SHADER_DIR / "nex_mpi.glsl").read_text()
    for stage, define in (("vert", "NEX_VERTEX"), ("frag", "NEX_FRAGMENT")):
        for basis in (8, 5, 12):
            path = tmp_path / f"nex_{basis}.{stage}"
            path.write_text(f"#version 300 es\n#define {define}\n#define NEX_HOST_DECLARATIONS\n"
                            f"#define NEX_BASIS {basis}\n{src}")
            result = subprocess.run([glslang, str(path)], capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stdout + result.stderr
    for basis in (8, 4):
        result = subprocess.run([glslang, "-D", "-S", "frag", "-e", "main", "-DNEX_SELFTEST", f"-DNEX_BASIS={basis}",
                                 "-V", "-o", str(tmp_path / "hlsl.spv"), str(SHADER_DIR / "nex_mpi.hlsl")],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------------------------------
# The commands


def test_nex_export_writes_a_glb_from_a_baked_directory(tiny, tmp_path, capsys):
    from nex_core.cli import main

    out = tmp_path / "scene.glb"
    assert main(["export", str(tiny["dir"]), "--gltf", str(out), "--compress-level", "1"]) == 0
    assert "6 planes" in capsys.readouterr().err
    doc, _ = read_glb(out)
    assert EXTENSION in doc["extensionsUsed"]
    assert main(["export", str(tiny["dir"]), "--gltf", str(tmp_path / "x.gltf")]) == 2
    assert main(["export", str(tmp_path / "nothing"), "--gltf", str(out)]) == 2


# --------------------------------------------------------------------------------------------------
# A briefly trained model of the shipped scene, through the commands


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    from nex_core.io import config as config_mod
    from nex_core.training.trainer import Trainer

    cfg = config_mod.preset("tiny")
    cfg.data.scene = str(REPO / "data" / "scenes" / "shiny_demo")
    cfg.train.steps = 40
    cfg.train.checkpoint_every = 1000
    run_dir = tmp_path_factory.mktemp("webrun") / "run"
    Trainer(cfg, run_dir).train()
    return run_dir


def test_trained_run_exports_and_views(trained_run, tmp_path):
    """`nex export` bakes a run without a baked MPI (recording the training cameras' span), writes a valid
    .glb, and the viewer matches the reference renderer at a held-out view of the real scene."""
    from nex_core.cli import main
    from nex_core.runtime.run import open_run

    out = tmp_path / "demo.glb"
    assert main(["export", str(trained_run), "--gltf", str(out), "--compress-level", "1"]) == 0
    baked = read_baked(trained_run / "baked")
    span = baked.info.metadata["camera_span"]
    assert all(lo <= 0 <= hi for lo, hi in zip(span["min"], span["max"]))
    assert max(h - lo for lo, h in zip(span["min"], span["max"])) > 0  # the cameras do move
    doc, _ = read_glb(out)
    rig = next(n for n in doc["nodes"] if EXTENSION in n.get("extensions", {}))
    assert rig["extensions"][EXTENSION]["cameraSpan"]["min"] == span["min"]
    run = open_run(trained_run)
    cam = run.scene.cameras[run.scene.test_ids[0]]
    with ViewerServer(trained_run / "baked", config=viewer_config(trained_run / "baked")) as server:
        url = f"{server.url}?once=1#camera={urllib.parse.quote(camera_json(cam))}"
        shot = tmp_path / "demo.png"
        run_browser({"url": url, "screenshot": str(shot)})
    got = read_png(shot)
    value = psnr(got, render_baked(baked, cam)[..., :3])
    assert value >= 40.0, value
