"""Build the installable Blender extension zip of the NeX add-on.

Copies ``nex_blender/`` (the extension package, with its ``blender_manifest.toml``) to a staging folder,
adds the torch-free folder ``nex_core/io/`` (with the package's ``__init__.py``) whole as
``nex_blender/_vendor/nex_core`` (absolute ``nex_core.`` imports rewritten to relative ones, so the copy is
self-contained), checks that none of it imports torch, bpy or a nex_core module outside the folder, then validates and builds the zip with Blender's own
extension tool (``blender_ext.py`` from the ``bpy`` wheel, or ``--blender-ext PATH``).

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
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
ADDON_DIR = REPO_ROOT / "nex_blender"
CORE_DIR = REPO_ROOT / "nex_core"

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


def stage(staging: Path) -> Path:
    """Copy the add-on and the vendored modules into ``staging/nex_blender``; returns that folder."""
    check_vendored()
    pkg = staging / "nex_blender"
    shutil.copytree(ADDON_DIR, pkg, ignore=IGNORE)
    vendor = pkg / "_vendor"
    (vendor / "nex_core").mkdir(parents=True)
    (vendor / "__init__.py").write_text('"""Torch-free modules of nex_core, copied in at build time."""\n',
                                        encoding="utf-8")
    for rel in VENDORED:
        dest = vendor / "nex_core" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(relativize((CORE_DIR / rel).read_text(encoding="utf-8"), rel), encoding="utf-8")
    info = {"nex_core_version": _core_version(), "source": str(REPO_ROOT), "vendored": list(VENDORED)}
    (pkg / "_build_info.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    return pkg


def _core_version() -> str:
    m = re.search(r'^__version__ = "([^"]+)"', (CORE_DIR / "__init__.py").read_text(encoding="utf-8"), re.M)
    return m.group(1) if m else "?"


def manifest_version() -> str:
    return tomllib.loads((ADDON_DIR / "blender_manifest.toml").read_text(encoding="utf-8"))["version"]


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
        raise BuildError(f"nex_blender/blender_manifest.toml says version {version} but nex_core is "
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
