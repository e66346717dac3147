"""Create Environment: the background Python's virtual environment, built beside the current one.

The add-on's user folder holds up to two environment folders (``python-env``, ``python-env-2``) and
``environment.json``, which names the active one. A new environment is built in the other folder: venv,
then torch (from the chosen variant's index), then the project's wheel from the extension zip (its other
dependencies from the package index, or everything from a local wheel folder: ``--no-index --find-links``),
then an import check. Only when every step succeeded does ``environment.json`` switch to it and the old
folder go; a failed or cancelled install removes the half-built folder and leaves the active one as it was.
(Folders are never renamed: a venv's scripts hold their own absolute path.)
"""

from __future__ import annotations

import email.parser
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import bpy

from . import worker

ADDON_ID = __package__
SLOTS = ("python-env", "python-env-2")
POINTER = "environment.json"
PYTORCH_INDEX = "https://download.pytorch.org/whl/"
# CUDA builds of torch, newest first: the first one the driver supports (nvidia-smi's "CUDA Version") wins.
CUDA_TAGS = ((13, 0, "cu130"), (12, 8, "cu128"), (12, 6, "cu126"), (11, 8, "cu118"))
# Approximate downloads (Linux x86_64): torch's wheel (CUDA: with its NVIDIA libraries), and the project's
# other dependencies (numpy, scipy, scikit-image, pycolmap, imageio-ffmpeg, Pillow, rich, ...).
TORCH_DOWNLOAD_MB = {"CPU": 190, "CUDA": 3000}
OTHERS_DOWNLOAD_MB = 180
VARIANTS = (("AUTO", "Automatic", "CUDA when nvidia-smi shows an NVIDIA GPU, else CPU"),
            ("CPU", "CPU", "The CPU build of PyTorch (small download)"),
            ("CUDA", "CUDA", "The CUDA build of PyTorch for the NVIDIA driver nvidia-smi reports"),
            ("CUSTOM", "Custom index", "PyTorch from the index URL given below"))


def user_folder(create: bool = False) -> Path:
    """The add-on's user folder (``bpy.utils.extension_path_user``; never inside Blender's installation)."""
    return Path(bpy.utils.extension_path_user(ADDON_ID, create=create))


def venv_python(root: Path) -> Path:
    return root / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def active_env(folder: Path | None = None) -> Path:
    """The active environment's folder (named by environment.json; the first slot without one)."""
    folder = folder or user_folder()
    try:
        name = json.loads((folder / POINTER).read_text(encoding="utf-8"))["active"]
        if name in SLOTS:
            return folder / name
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return folder / SLOTS[0]


def staging_env(folder: Path) -> Path:
    """Where the next environment is built: the slot that is not the active one (when that one exists)."""
    active = active_env(folder)
    if not venv_python(active).is_file():
        return active
    return folder / next(s for s in SLOTS if s != active.name)


def bundled_wheel() -> Path | None:
    """The project's wheel inside the installed zip (named by _build_info.json), if there is one."""
    info = Path(__file__).with_name("_build_info.json")
    try:
        wheel = Path(__file__).parent / json.loads(info.read_text(encoding="utf-8"))["wheel"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return wheel if wheel.is_file() else None


def torch_requirement(wheel: Path | None) -> str:
    """The wheel's own torch pin (``torch==2.13.0``), read from its METADATA; ``torch`` without one."""
    if wheel is None or wheel.suffix != ".whl":
        return "torch"
    try:
        with zipfile.ZipFile(wheel) as zf:
            meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            requires = email.parser.Parser().parsestr(zf.read(meta).decode("utf-8")).get_all("Requires-Dist") or []
    except (OSError, zipfile.BadZipFile, StopIteration):
        return "torch"
    return next((r.split(";")[0].strip() for r in requires if re.match(r"torch\b(?![-_.\w])", r)), "torch")


_cuda_cache: list = []


def detect_cuda() -> tuple[str, str] | None:
    """(GPU name, torch CUDA tag) when ``nvidia-smi`` shows an NVIDIA GPU, else None (asked once)."""
    if _cuda_cache:
        return _cuda_cache[0]
    found = None
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi], capture_output=True, text=True, timeout=10).stdout
            names = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                   text=True, timeout=10).stdout.strip().splitlines()
        except (OSError, subprocess.SubprocessError):
            out, names = "", []
        version = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", out)
        if version and names:
            major, minor = int(version.group(1)), int(version.group(2))
            tag = next((t for a, b, t in CUDA_TAGS if (major, minor) >= (a, b)), None)
            if tag:
                found = (names[0].strip(), tag)
    _cuda_cache.append(found)
    return found


@dataclass
class Plan:
    """What Create Environment will do: its commands, whether they reach the network, what it downloads."""

    staging: Path
    active: Path
    commands: list[list[str]]
    online: bool
    torch_label: str
    download_mb: int | None  # None: unknown (a custom index); 0: nothing (a local wheel folder)
    notes: list[str] = field(default_factory=list)

    def download_text(self) -> str:
        if not self.online:
            return "installs offline from the local wheel folder (no download)"
        size = "an unknown amount" if self.download_mb is None else _size(self.download_mb)
        what = self.torch_label if "--no-deps" in self.torch_label else \
            f"{self.torch_label} and the project's other dependencies"
        return f"downloads {size}: {what}"


def _size(mb: int) -> str:
    return f"about {mb / 1000:.1f} GB" if mb >= 1000 else f"about {mb} MB"


def plan(prefs) -> Plan:
    """Build the commands from the preferences; raises worker.JobError saying what to fix."""
    folder = user_folder(create=True)
    source = project_source(prefs)
    if not source:
        raise worker.JobError("this add-on carries no project wheel (a source checkout?): set 'Project Source' to "
                              "a wheel or a clone of the NeX for Blender repository")
    extra = prefs.pip_args.split() if prefs is not None else []
    wheel_dir = bpy.path.abspath(prefs.wheel_folder.strip()) if prefs is not None and prefs.wheel_folder.strip() else ""
    if wheel_dir and not Path(wheel_dir).is_dir():
        raise worker.JobError(f"the local wheel folder {wheel_dir} does not exist; choose a folder of .whl files "
                              "(pip download -d DIR nex-blender) or clear the field to use the package index")
    local = ["--no-index", "--find-links", wheel_dir] if wheel_dir else []
    requirement = torch_requirement(Path(source))
    variant = prefs.torch_variant if prefs is not None else "AUTO"
    notes: list[str] = []
    if wheel_dir:
        torch_args, label, size = local, f"{requirement} from {wheel_dir}", 0
    elif "--no-deps" in extra:
        torch_args, label, size = [], "the project alone (--no-deps)", 1
    else:
        torch_args, label, size = _torch_index(prefs, variant, requirement, notes)
    staging = staging_env(folder)
    py = str(venv_python(staging))
    commands = [[base_python(prefs), "-m", "venv", "--clear", str(staging)]]
    if "--no-deps" not in extra:  # (--no-deps: only the project itself, as asked)
        commands.append([py, "-m", "pip", "install", *torch_args, *extra, requirement])
    commands.append([py, "-m", "pip", "install", *local, *extra, source])
    commands.append([py, "-c", "import nex_core.cli"])
    online = not wheel_dir and "--no-index" not in extra
    if size is not None and online and "--no-deps" not in extra:
        size += OTHERS_DOWNLOAD_MB
    return Plan(staging, active_env(folder), commands, online, label, size if online else 0, notes)


def _torch_index(prefs, variant: str, requirement: str, notes: list[str]) -> tuple[list[str], str, int | None]:
    if variant == "CUSTOM":
        url = prefs.torch_index_url.strip()
        if not url:
            raise worker.JobError("'PyTorch' is set to Custom index but 'Index URL' is empty: give the URL of a "
                                  "package index with torch (e.g. https://download.pytorch.org/whl/cu128)")
        return ["--index-url", url], f"{requirement} from {url}", None
    cuda = detect_cuda()
    if variant == "CUDA" and cuda is None:
        raise worker.JobError("'PyTorch' is set to CUDA but nvidia-smi shows no NVIDIA GPU (or a driver too old "
                              "for CUDA 11.8); choose CPU, or Custom index for another build")
    if variant in ("CUDA", "AUTO") and cuda is not None:
        notes.append(f"GPU: {cuda[0]} (torch build {cuda[1]})")
        return ["--index-url", PYTORCH_INDEX + cuda[1]], f"{requirement} ({cuda[1]})", TORCH_DOWNLOAD_MB["CUDA"]
    return ["--index-url", PYTORCH_INDEX + "cpu"], f"{requirement} (CPU)", TORCH_DOWNLOAD_MB["CPU"]


def offline_advice(p: Plan) -> str:
    """Why Create Environment does not start with online access off, and what to do instead."""
    return (f"Online access is off (Preferences > System > Network > Allow Online Access). Create Environment "
            f"{p.download_text()} from pypi.org and download.pytorch.org. Instead: allow online access; or set "
            f"'Python' to an existing interpreter that has nex_core and torch; or set 'Wheel Folder' to a folder "
            f"of wheels (pip download -d DIR nex-blender on a machine that is online) to install offline")


def project_source(prefs) -> str:
    """What is pip-installed: the preference, else the project's wheel inside the zip."""
    if prefs is not None and prefs.project_source.strip():
        return bpy.path.abspath(prefs.project_source.strip())
    wheel = bundled_wheel()
    if wheel is not None:
        return str(wheel)
    here = Path(__file__).resolve().parents[1]  # a source checkout
    if (here / "pyproject.toml").is_file() and (here / "nex_core").is_dir():
        return str(here)
    return ""


def base_python(prefs) -> str:
    """The Python a new environment is made from (3.11, as the project requires)."""
    if prefs is not None and prefs.base_python.strip():
        return bpy.path.abspath(prefs.base_python.strip())
    for name in ("python3.11", "python3", "python"):
        found = shutil.which(name)
        if found:
            return found
    return sys.executable


def job(p: Plan) -> worker.Job:
    """The install job; when it ends it switches to the new environment, or removes the half-built one."""
    if p.staging.exists():  # a leftover of an install that was interrupted
        shutil.rmtree(p.staging, ignore_errors=True)
    # Run in the user folder without PYTHONPATH, so that nothing but the new environment is imported.
    env = {k: v for k, v in worker.worker_env().items() if k != "PYTHONPATH"}
    return worker.Job("env", p.commands, log_path=p.staging.parent / "environment.log", cwd=p.staging.parent,
                      env=env, on_finish=lambda j: finish(j, p))


def finish(j: worker.Job, p: Plan) -> None:
    """Swap to the new environment only on success; otherwise keep the active one and say so."""
    if j.status.succeeded:
        pointer = p.staging.parent / POINTER
        tmp = pointer.with_suffix(".tmp")
        tmp.write_text(json.dumps({"active": p.staging.name}) + "\n", encoding="utf-8")
        os.replace(tmp, pointer)
        if p.active != p.staging:
            _remove_later(p.active)
        j.status.message = f"environment ready in {p.staging}"
        return
    _remove_later(p.staging)
    if venv_python(p.active).is_file() and p.active != p.staging:
        kept = f"the previous environment {p.active} is unchanged"
        if j.status.error:
            j.status.error = f"{j.status.error} ({kept})"
        j.status.message = f"{j.status.message}; {kept}" if j.status.message else kept


def _remove_later(path: Path) -> None:
    """Delete a folder on a helper thread (an environment is thousands of files; Blender need not wait)."""
    threading.Thread(target=shutil.rmtree, args=(path, True), name="nex-env-remove", daemon=True).start()
