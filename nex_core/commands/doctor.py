"""``nex doctor``: what this Python has for running nex (packages, nex_core, the device), as text or, with
``--json``, as the answer the Blender add-on reads (:mod:`nex_core.io.answers.doctor`).

It imports each package for real (a package that is installed but fails to import counts as missing)
and never lets an import failure escape: a missing package is an entry in the report."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from pathlib import Path

# (distribution, module, required, needed for)
PACKAGES = (
    ("torch", "torch", True, "training, baking and rendering"),
    ("numpy", "numpy", True, "every command"),
    ("pillow", "PIL", True, "reading photos"),
    ("rich", "rich", True, "progress output"),
    ("tomli-w", "tomli_w", True, "writing config.toml"),
    ("imageio", "imageio", True, "evaluation images and videos"),
    ("scikit-image", "skimage", True, "SSIM in the evaluation"),
    ("pycolmap", "pycolmap", False, "`nex prepare` and COLMAP scenes"),
    ("imageio-ffmpeg", "imageio_ffmpeg", False, "MP4 videos (`nex render`)"),
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "doctor", help="check this Python: nex_core, torch and the other packages, the device",
        description="Import every package nex uses and report its version, or why it cannot be imported, and "
        "the device training would use. Exit code 0 when every required package is there, 1 otherwise.")
    p.add_argument("--json", action="store_true", help="print the report as JSON (what the Blender add-on reads)")
    p.set_defaults(func=cmd_doctor)


def _import_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def package_status(name: str, module: str, required: bool, needed_for: str):
    """The :class:`PackageStatus` of one package, found by importing it."""
    from ..io.answers.doctor import PackageStatus

    status = PackageStatus(name, module, required, needed_for)
    try:
        imported = importlib.import_module(module)
    except Exception as exc:  # anything an import can raise: the package is unusable
        status.error = _import_error(exc)
        return status
    try:
        status.version = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        status.version = str(getattr(imported, "__version__", "?"))
    return status


def torch_device() -> tuple[bool, str]:
    """(CUDA available, device name) as training's ``auto`` device would see it."""
    try:
        import torch

        if torch.cuda.is_available():
            return True, torch.cuda.get_device_name(0)
    except Exception:  # torch missing or broken: already in the package list
        pass
    return False, "CPU"


def automatic_network() -> str:
    """The field ``model.field = "auto"`` (the fast preset's) trains here on the auto device ("": no torch)."""
    try:
        from ..runtime.device import preferred_field, resolve_device

        return preferred_field(resolve_device("auto"), "auto")
    except Exception:  # torch missing or broken: already in the package list
        return ""


def examine():
    """The :class:`DoctorReport` of this Python."""
    import nex_core

    from ..io.answers.doctor import DoctorReport

    packages = [package_status(*entry) for entry in PACKAGES]
    cuda, device = torch_device() if packages[0].present else (False, "CPU")
    return DoctorReport(python=sys.version.split()[0], executable=sys.executable,
                        nex_core=getattr(nex_core, "__version__", "?"),
                        nex_core_path=str(Path(nex_core.__file__).resolve().parent), packages=packages,
                        cuda=cuda, device=device, network=automatic_network() if packages[0].present else "")


def cmd_doctor(args: argparse.Namespace) -> int:
    report = examine()
    if args.json:
        print(report.encode())
        return 0 if report.ok else 1
    print(f"Python {report.python} ({report.executable})")
    print(f"nex_core {report.nex_core} ({report.nex_core_path})")
    for p in report.packages:
        kind = "required" if p.required else "optional"
        state = p.version if p.present else f"MISSING ({p.error})"
        print(f"  {p.name:15s} {state}  [{kind}: {p.needed_for}]")
    print(f"device: {f'CUDA, {report.device}' if report.cuda else 'CPU (no CUDA)'}")
    if report.network:
        print(f"network: {report.network} (what --field auto, the fast preset's, trains on this machine)")
    print("ok" if report.ok else f"missing: {', '.join(report.missing)}: pip install them, or the project")
    return 0 if report.ok else 1
