"""The run folder's names (nex_core.io.run_files): what the trainer writes is what the add-on looks for."""

from __future__ import annotations

from pathlib import Path

from nex_core.io.run_files import (RunFiles, checkpoint_name, checkpoint_step, log_name,
                                   partial_checkpoint_name)
from nex_core.runtime.checkpoint import list_checkpoints, remove_partial_checkpoints, save_checkpoint


def test_checkpoint_names_round_trip():
    assert checkpoint_name(150) == "step_00000150.pt"
    assert checkpoint_step("step_00000150.pt") == 150
    assert partial_checkpoint_name(7) == ".step_00000007.pt.tmp"
    for other in (".step_00000007.pt.tmp", "step_150.pt", "step_00000150.pt.bak", "preview.png"):
        assert checkpoint_step(other) is None, other
    assert log_name("bake") == "bake.log"


def test_paths_inside_a_run(tmp_path):
    files = RunFiles(str(tmp_path))
    assert files.root == tmp_path
    assert (files.config.name, files.events.name, files.preview.name) == ("config.toml", "events.jsonl", "preview.png")
    assert files.checkpoint(3) == tmp_path / "checkpoints" / "step_00000003.pt"
    assert (files.eval, files.render, files.baked) == (tmp_path / "eval", tmp_path / "render", tmp_path / "baked")
    assert files.gltf == tmp_path / "export" / "mpi.glb"
    assert files.log("train") == tmp_path / "train.log"


def test_listing_sees_what_save_checkpoint_writes(tmp_path):
    files = RunFiles(tmp_path)
    assert files.list_checkpoints() == [] and not files.has_checkpoint()
    written = [save_checkpoint(tmp_path, step, {"x": step}, keep=5) for step in (20, 5)]
    (files.checkpoints / partial_checkpoint_name(30)).write_bytes(b"cut short")
    (files.checkpoints / "notes.txt").write_text("not a checkpoint")
    assert files.list_checkpoints() == [(5, written[1]), (20, written[0])] == list_checkpoints(tmp_path)
    assert files.has_checkpoint()
    assert remove_partial_checkpoints(tmp_path) == [files.checkpoints / partial_checkpoint_name(30)]
    assert all(isinstance(p, Path) and p.parent == files.checkpoints for _, p in files.list_checkpoints())
