"""The add-on's job status from events and exit codes (nex_core.io.addon.job_status), without Blender."""

import math

from nex_core.io.addon import job_status


def test_events_drive_the_status():
    w = job_status
    s = w.JobStatus("train")
    for event in ({"phase": "setup", "kind": "start", "device": "cpu"},
                  {"phase": "train", "kind": "start", "step": 0, "steps": 150, "planes": 8, "n_train": 17, "n_test": 3},
                  {"phase": "train", "kind": "progress", "step": 30, "steps": 150, "loss": 0.02, "psnr": 18.0,
                   "eta_s": 12.0}):
        w.apply_event(s, event)
    assert (s.phase, s.step, s.steps, s.loss, s.psnr, s.eta_s) == ("train", 30, 150, 0.02, 18.0, 12.0)
    assert math.isclose(s.progress, 0.2)
    w.apply_event(s, {"phase": "train", "kind": "preview", "step": 50, "path": "/r/preview.png"})
    w.apply_event(s, {"phase": "cancelled", "kind": "cancelled", "step": 50, "steps": 150})
    assert s.preview == "/r/preview.png" and s.phase == "cancelled" and s.resumable
    w.apply_event(s, {"phase": "failed", "kind": "error", "message": "the loss became non-finite"})
    assert s.error == "the loss became non-finite"
    p = w.JobStatus("prepare")
    w.apply_event(p, {"phase": "matching", "kind": "progress", "step": 5, "steps": 10, "unit": "pairs"})
    assert 0.3 < p.progress < 0.45 and "matching" in p.message


def test_failure_messages():
    f = job_status.failure_message
    assert "does not have PyTorch" in f("train", 1, "ModuleNotFoundError: No module named 'torch'\n", "/x/python")
    assert "no `export` command" in f("export", 2, "nex: error: argument command: invalid choice: 'export'", "py")
    assert f("train", 2, "rich output\nnex: error: scene folder /s does not exist: check the path\n", "py") == \
        "scene folder /s does not exist: check the path"
    assert "killed (SIGKILL)" in f("train", -9, "", "py")
    assert "exit code 3" in f("bake", 3, "boom\n", "py")
