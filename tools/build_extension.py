"""Build the installable Blender extension zip of the NeX add-on.

Stages, in a temporary folder:

- ``nex_blender/`` (the extension package) with the top-level ``blender_manifest.toml``;
- the torch-free folder ``nex_core/io/`` (with the package's ``__init__.py``) whole as
  ``_vendor/nex_core`` (absolute ``nex_core.`` imports rewritten to relative ones), checked to import no
  torch, bpy or nex_core module outside the folder: what Blender's own Python imports;
- the project's wheel (``pip wheel`` of this repository) as ``wheel/nex_blender-<version>-py3-none-any.whl``:
  what *Create Environment* pip-installs into the background Python, with torch and the other
  dependencies from the package index (or a local wheel folder);

checks that no staged file (the wheel's members included) holds a path of the build machine, then
validates and builds the zip with Blender's own extension tool (``blender_ext.py`` from the ``bpy`` wheel,
or ``--blender-ext PATH``).

The wheel is deliberately *not* listed in the manifest's ``wheels = [...]``: Blender would extract it into
the site-packages shared by all extensions, where its top-level ``nex_core`` would collide with a user's
own nex_core in Blender's Python (or another version from a second copy of the extension), and its torch
modules would be importable but broken. The vendored copy lives inside the extension's own package
(``bl_ext.<repo>.nex_blender._vendor.nex_core``), so it cannot collide and reloads with the add-on.

Usage (from the repository root)::

    .venv/bin/python tools/build_extension.py                # -> dist/nex_blender-<version>.zip
    .venv/bin/python tools/build_extension.py --out /tmp/ext --validate-only

Install the zip in Blender with Edit > Preferences > Get Extensions > Install from Disk, or
``blender --command extension install-file -r user_default -e dist/nex_blender-<version>.zip``.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
ADDON_DIR = REPO_ROOT / "nex_blender"
CORE_DIR = REPO_ROOT / "nex_core"
MANIFEST = REPO_ROOT / "blender_manifest.toml"
WHEEL_FOLDER = "wheel"  # inside the staged package
# What the wheel is built from (copied to a temporary folder first, so the checkout stays clean).
WHEEL_SOURCES = ("pyproject.toml", "README.md", "nex_core")

# The torch-free folder the add-on vendors whole, and the package file above it (paths below nex_core/).
TORCH_FREE_DIR = "io"


def vendored_files(core_dir: Path = CORE_DIR) -> tuple[str, ...]:
    """``__init__.py`` and every module below ``nex_core/io/``, as paths relative to ``nex_core/``."""
    below = sorted(p.relative_to(core_dir).as_posix() for p in (core_dir / TORCH_FREE_DIR).rglob("*.py"))
    return ("__init__.py", *below)


VENDORED = vendored_files()
# Imports allowed in vendored modules besides the standard library and other vendored modules. Pillow
# and tomli_w are imported lazily by functions the add-on does not call (it reads pixels with Blender).
ALLOWED_THIRD_PARTY = {"numpy", "PIL", "tomli_w", "pycolmap"}
FORBIDDEN = {"torch", "torchvision", "bpy"}
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "_vendor", "*.zip", ".*")


class BuildError(Exception):
    pass


def find_blender_ext() -> Path:
    """``blender_ext.py`` inside the installed ``bpy`` wheel (found without importing bpy)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("the bpy module is not installed; pass --blender-ext PATH/TO/blender_ext.py "
                         "(it ships with Blender in scripts/addons_core/bl_pkg/cli/)")
    for root in spec.submodule_search_locations:
        found = sorted(Path(root).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if found:
            return found[-1]
    raise BuildError(f"blender_ext.py not found under {list(spec.submodule_search_locations)}; "
                     "pass --blender-ext PATH")


def _module_name(rel: str) -> str:
    parts = rel[:-3].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["nex_core", *parts])


def _imports(source: str, module: str, is_package: bool) -> list[tuple[str, int]]:
    """Absolute names of every module ``source`` imports (at any nesting level), with line numbers."""
    out = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((name, node.lineno))
            # "from . import x" may import submodule x
            if node.module is None or node.level:
                out += [(f"{name}.{alias.name}", node.lineno) for alias in node.names]
    return out


def check_vendored(core_dir: Path = CORE_DIR) -> None:
    """Raise BuildError if a vendored module imports torch/bpy or a nex_core module not vendored."""
    vendored = {_module_name(rel) for rel in VENDORED}
    problems = []
    for rel in VENDORED:
        path = core_dir / rel
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        module = _module_name(rel)
        for name, line in _imports(path.read_text(encoding="utf-8"), module, rel.endswith("__init__.py")):
            top = name.split(".")[0]
            if top in FORBIDDEN:
                problems.append(f"nex_core/{rel}:{line} imports {name}; the add-on must stay free of it")
            elif top == "nex_core" and name not in vendored and _is_module(core_dir, name):
                problems.append(f"nex_core/{rel}:{line} imports {name}, which is not vendored "
                                f"(the add-on may import only nex_core/{TORCH_FREE_DIR}/)")
            elif top != "nex_core" and top not in ALLOWED_THIRD_PARTY and top not in sys.stdlib_module_names:
                problems.append(f"nex_core/{rel}:{line} imports {name}, which Blender's Python does not have")
    if problems:
        raise BuildError("vendored nex_core modules fail the add-on's rules:\n  " + "\n  ".join(problems))


def _is_module(core_dir: Path, name: str) -> bool:
    """Whether dotted ``nex_core.a.b`` names a module or package (not an attribute such as __version__)."""
    path = core_dir.joinpath(*name.split(".")[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


_ABSOLUTE = re.compile(r"^(\s*)from nex_core\.", re.MULTILINE)
_ABSOLUTE_PLAIN = re.compile(r"^\s*import nex_core\b", re.MULTILINE)


def relativize(source: str, rel: str) -> str:
    """Rewrite ``from nex_core.x import y`` to a relative import valid at ``rel`` inside the package."""
    if _ABSOLUTE_PLAIN.search(source):
        raise BuildError(f"nex_core/{rel} uses `import nex_core...`; use `from nex_core.x import y` or a "
                         "relative import so the vendored copy can be rewritten")
    dots = "." * rel.count("/") + "."
    return _ABSOLUTE.sub(lambda m: f"{m.group(1)}from {dots}", source)


def build_wheel(out_dir: Path, work: Path) -> Path:
    """``pip wheel --no-deps`` of the project (copied to ``work`` first); returns the wheel's path."""
    src = work / "src"
    src.mkdir(parents=True)
    for name in WHEEL_SOURCES:
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(REPO_ROOT / name, src / name, ignore=IGNORE)
        else:
            shutil.copy2(REPO_ROOT / name, src / name)
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir",
                           str(out_dir), str(src)], capture_output=True, text=True)
    wheels = sorted(out_dir.glob("nex_blender-*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        raise BuildError(f"pip wheel of the project failed ({proc.returncode}; it needs setuptools>=77, from "
                         f"the package index or a --find-links folder):\n{proc.stdout}{proc.stderr}")
    return wheels[0]


def build_paths(staging: Path) -> list[str]:
    """Absolute paths of the build machine that must not appear in the zip."""
    paths = {str(REPO_ROOT), str(staging), str(Path(tempfile.gettempdir()).resolve()) + "/nex_ext_",
             str(Path.home())}
    return sorted(p for p in paths if len(p) > 4)


def check_no_build_paths(pkg: Path, paths: list[str]) -> None:
    """Raise BuildError if a staged file (or a member of a staged wheel) contains one of ``paths``."""
    needles = [p.encode() for p in paths]
    found = []
    for path in sorted(pkg.rglob("*")):
        if not path.is_file():
            continue
        blobs = [(path.relative_to(pkg).as_posix(), path.read_bytes())]
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as zf:
                blobs += [(f"{blobs[0][0]}!{n}", zf.read(n)) for n in zf.namelist()]
        found += [f"{name} contains {needle.decode()}" for name, data in blobs for needle in needles
                  if needle in data]
    if found:
        raise BuildError("the package would carry paths of the build machine:\n  " + "\n  ".join(found))


def stage(staging: Path) -> Path:
    """Copy the add-on, the manifest, the vendored modules and the project's wheel into
    ``staging/nex_blender``; returns that folder."""
    check_vendored()
    pkg = staging / "nex_blender"
    shutil.copytree(ADDON_DIR, pkg, ignore=IGNORE)
    shutil.copy2(MANIFEST, pkg / "blender_manifest.toml")
    vendor = pkg / "_vendor"
    (vendor / "nex_core").mkdir(parents=True)
    (vendor / "__init__.py").write_text('"""Torch-free modules of nex_core, copied in at build time."""\n',
                                        encoding="utf-8")
    for rel in VENDORED:
        dest = vendor / "nex_core" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(relativize((CORE_DIR / rel).read_text(encoding="utf-8"), rel), encoding="utf-8")
    wheel = build_wheel(pkg / WHEEL_FOLDER, staging / "wheel_build")
    info = {"nex_core_version": _core_version(), "wheel": f"{WHEEL_FOLDER}/{wheel.name}",
            "vendored": list(VENDORED)}
    (pkg / "_build_info.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(staging / "wheel_build")
    check_no_build_paths(pkg, build_paths(staging))
    return pkg


def _core_version() -> str:
    m = re.search(r'^__version__ = "([^"]+)"', (CORE_DIR / "__init__.py").read_text(encoding="utf-8"), re.M)
    return m.group(1) if m else "?"


def manifest_version() -> str:
    return tomllib.loads(MANIFEST.read_text(encoding="utf-8"))["version"]


def _run_tool(blender_ext: Path, args: list[str]) -> str:
    proc = subprocess.run([sys.executable, str(blender_ext), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"blender_ext.py {args[0]} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def build(out_dir: Path, blender_ext: Path | None = None, validate_only: bool = False) -> Path | None:
    """Stage, validate and build; returns the zip's path (None with ``validate_only``)."""
    blender_ext = blender_ext or find_blender_ext()
    version = manifest_version()
    if version != _core_version():
        raise BuildError(f"blender_manifest.toml says version {version} but nex_core is "
                         f"{_core_version()}; keep them equal")
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="nex_ext_") as tmp:
        pkg = stage(Path(tmp))
        _run_tool(blender_ext, ["validate", str(pkg)])
        if validate_only:
            return None
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / f"nex_blender-{version}.zip"
        target.unlink(missing_ok=True)
        _run_tool(blender_ext, ["build", "--source-dir", str(pkg), "--output-filepath", str(target)])
    if not target.is_file():
        raise BuildError(f"blender_ext.py reported success but {target} is missing")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO_ROOT / "dist"), help="output folder (default: dist/)")
    parser.add_argument("--blender-ext", help="path to Blender's blender_ext.py (default: from the bpy wheel)")
    parser.add_argument("--validate-only", action="store_true", help="check the manifest and files only")
    args = parser.parse_args(argv)
    try:
        zip_path = build(Path(args.out), Path(args.blender_ext) if args.blender_ext else None, args.validate_only)
    except BuildError as exc:
        print(f"build_extension: error: {exc}", file=sys.stderr)
        return 1
    print("manifest and files valid" if zip_path is None else str(zip_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
