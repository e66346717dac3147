"""The folder layout is the architecture: these tests enforce what each folder may import.

Every import is read from the source (``ast``), at any nesting level, so a lazy import inside a function counts
as much as one at the top. The rules, and why, are in docs/architecture.md.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "nex_core"
ADDON = REPO / "nex_blender"

# Which nex_core folders each folder may import (besides itself and the package's own __init__).
ALLOWED = {
    "io": set(),
    "sfm": {"io"},
    "model": {"io"},
    "runtime": {"io", "model"},
    "evaluation": {"io", "model", "runtime"},
    "training": {"io", "model", "runtime", "evaluation"},
    "export": {"io", "model", "runtime", "evaluation"},
    "commands": {"io", "sfm", "model", "runtime", "evaluation", "training", "export"},
    "cli": {"io", "runtime", "commands"},
}
# Third-party packages the torch-free folder may use (Pillow and tomli_w lazily, pycolmap for reading models).
TORCH_FREE_THIRD_PARTY = {"numpy", "PIL", "tomli_w", "pycolmap"}
MAX_LINES = 400
SIZE_REASON = "Longer than 400 lines because"


@dataclass(frozen=True)
class Import:
    name: str  # absolute dotted name
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[Import]:
    """Absolute names of everything ``path`` imports; ``from pkg import sub`` yields ``pkg.sub`` as well."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.append(Import(base, node.lineno))
            found += [Import(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def known_modules() -> set[str]:
    return {module_name(p) for p in python_files(CORE)}


def internal_edges() -> dict[str, set[str]]:
    """nex_core module -> the nex_core modules it imports (names that are attributes are dropped)."""
    known = known_modules()
    edges: dict[str, set[str]] = {}
    for path in python_files(CORE):
        edges[module_name(path)] = {i.name for i in imports_of(path) if i.name in known} - {module_name(path)}
    return edges


def folder_of(module: str) -> str | None:
    """``nex_core.io.scene.loader`` -> ``io``; ``nex_core.cli`` -> ``cli``; the package itself -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_folder_has_a_rule():
    folders = {folder_of(module_name(p)) for p in python_files(CORE)} - {None}
    assert folders == set(ALLOWED), "add the new folder to ALLOWED here and to docs/architecture.md"


def test_folders_import_only_what_their_layer_allows():
    problems = []
    known = known_modules()
    for path in python_files(CORE):
        here = folder_of(module_name(path))
        if here is None:
            continue
        for imp in imports_of(path):
            if imp.name not in known:
                continue
            there = folder_of(imp.name)
            if there is not None and there != here and there not in ALLOWED[here]:
                problems.append(f"{path.relative_to(REPO)}:{imp.line} ({here}/) imports {imp.name} ({there}/)")
    assert not problems, "imports across the layers:\n" + "\n".join(problems)


def test_torch_free_folder_imports_no_torch_or_bpy():
    problems = []
    for path in python_files(CORE / "io"):
        for imp in imports_of(path):
            top = imp.name.split(".")[0]
            if top in ("", "nex_core") or top in sys.stdlib_module_names:
                continue
            if top not in TORCH_FREE_THIRD_PARTY:
                problems.append(f"{path.relative_to(REPO)}:{imp.line} imports {imp.name}")
    assert not problems, "nex_core/io must stay importable by Blender's Python:\n" + "\n".join(problems)


def test_library_never_imports_the_cli():
    problems = []
    for path in python_files(CORE):
        if folder_of(module_name(path)) in ("cli", "commands"):
            continue
        for imp in imports_of(path):
            if imp.name.startswith(("nex_core.cli", "nex_core.commands")):
                problems.append(f"{path.relative_to(REPO)}:{imp.line} imports {imp.name}")
    assert not problems, "\n".join(problems)


def test_addon_never_imports_torch_or_the_library_outside_io():
    problems = []
    for path in python_files(ADDON):
        for imp in imports_of(path):
            top = imp.name.split(".")[0]
            if top in ("torch", "torchvision"):
                problems.append(f"{path.relative_to(REPO)}:{imp.line} imports {imp.name}")
            elif top == "nex_core" and imp.name != "nex_core" and not imp.name.startswith("nex_core.io"):
                problems.append(f"{path.relative_to(REPO)}:{imp.line} imports {imp.name} (outside nex_core.io)")
        # The add-on reaches nex_core only through _core.module("..."), which resolves below nex_core.io.
    assert not problems, "\n".join(problems)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    for start in sorted(edges):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(edges[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(edges.get(nxt, ()))))
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_between_modules():
    cycle = find_cycle(internal_edges())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("root", ["nex_core", "nex_blender"])
def test_long_modules_state_why(root):
    long = []
    for path in python_files(REPO / root):
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        doc = ast.get_docstring(ast.parse(text)) or ""
        if lines > MAX_LINES and SIZE_REASON not in doc:
            long.append(f"{path.relative_to(REPO)}: {lines} lines")
    assert not long, f"split these, or say at the top why not ('{SIZE_REASON} ...'):\n" + "\n".join(long)
