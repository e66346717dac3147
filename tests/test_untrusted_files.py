"""Files from someone else never run code: checkpoints load with ``weights_only=True``; no pickle, eval,
exec or shell anywhere in the library, the add-on or the tools."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
import torch

from nex_core.io.errors import CheckpointError
from nex_core.runtime.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parent.parent
SOURCES = sorted(p for folder in ("nex_core", "nex_blender", "tools") for p in (REPO / folder).rglob("*.py")
                 if "node_modules" not in p.parts)


class _Payload:
    """Unpickling this calls ``Path.touch(marker)``: what a booby-trapped checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_booby_trapped_checkpoint_runs_no_code(tmp_path):
    marker = tmp_path / "code_ran"
    bad = tmp_path / "step_00000010.pt"
    torch.save({"format": "nex-checkpoint", "version": 1, "model": _Payload(marker)}, bad)
    with pytest.raises(CheckpointError, match="step_00000010.pt"):
        load_checkpoint(bad)
    assert not marker.exists()


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return f"{_name(func.value)}.{func.attr}"
    return ""


def test_no_pickle_eval_or_shell_in_the_sources():
    assert len(SOURCES) > 30
    found = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(n.split(".")[0] in ("pickle", "cPickle", "dill", "marshal", "shelve") for n in names):
                    found.append(f"{path}:{node.lineno}: imports {names}")
        for call in _calls(tree):
            name = _name(call.func)
            if name in ("eval", "exec", "os.system", "os.popen", "compile"):
                found.append(f"{path}:{call.lineno}: {name}()")
            for kw in call.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    found.append(f"{path}:{call.lineno}: shell=")
                if kw.arg in ("allow_pickle", "weights_only") and isinstance(kw.value, ast.Constant) \
                        and kw.value.value is (kw.arg == "allow_pickle"):
                    found.append(f"{path}:{call.lineno}: {kw.arg}={kw.value.value}")
            if name in ("torch.load",) and not any(k.arg == "weights_only" for k in call.keywords):
                found.append(f"{path}:{call.lineno}: torch.load without weights_only")
    assert not found, "\n".join(found)


@pytest.mark.skipif(os.name != "posix", reason="POSIX paths")
def test_the_worker_starts_processes_from_argument_lists():
    """The add-on's worker passes an argument list to Popen (no shell to interpret a path)."""
    tree = ast.parse((REPO / "nex_blender" / "worker.py").read_text(encoding="utf-8"))
    popens = [c for c in _calls(tree) if _name(c.func).endswith("Popen")]
    assert popens
    for call in popens:
        first = call.args[0] if call.args else next(k.value for k in call.keywords if k.arg == "args")
        assert not isinstance(first, (ast.Constant, ast.JoinedStr, ast.BinOp)), ast.dump(first)
