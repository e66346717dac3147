"""Item 3's last check as a tool: train on a prepared phone-like capture, and on the same undistorted
images with the true poses, and compare the held-out PSNR. Needs torch (``nex train``), not bpy.

The twin scene keeps the prepared images, focal and principal point (the focal came from EXIF and was
held fixed, so it is the true one) and replaces each pose and its near/far with the truth's, so the two
runs differ only in their poses.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from nex_core.io.cameras import opencv_to_llff


def true_pose_twin(prepared: Path, truth_doc: dict, out: Path) -> Path:
    """A copy of the scene ``prepared`` with the true poses and bounds of ``truth_doc``; returns ``out``."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copytree(prepared / "images", out / "images")
    shutil.copy(prepared / "hwf_cxcy.npy", out / "hwf_cxcy.npy")
    rows = np.load(prepared / "poses_bounds.npy")
    names = sorted(p.name for p in (out / "images").iterdir())
    by_name = {v["name"]: v for v in truth_doc["views"]}
    twin = []
    for row, name in zip(rows, names):
        view = by_name[name]
        pose = np.hstack([opencv_to_llff(np.asarray(view["c2w"])), row[:15].reshape(3, 5)[:, 4:]])
        twin.append(np.concatenate([pose.ravel(), [view["near"], view["far"]]]))
    np.save(out / "poses_bounds.npy", np.asarray(twin))
    return out


def held_out_psnr(scene: Path, run: Path, preset: str, steps: int) -> float:
    """Train ``scene`` into ``run`` with ``nex train`` and return its held-out PSNR."""
    from nex_core.cli import main
    from nex_core.io.events import read_events

    if run.exists():
        shutil.rmtree(run)
    code = main(["train", str(scene), "--preset", preset, "--steps", str(steps), "--out", str(run), "--quiet"])
    if code != 0:
        raise SystemExit(f"nex train {scene} failed with exit code {code}")
    values = [e["test_psnr"] for e in read_events(run / "events.jsonl") if e.get("test_psnr") is not None]
    if not values:
        raise SystemExit(f"{run}: no held-out PSNR in events.jsonl")
    return float(values[-1])


def compare(capture: Path, prepared: Path, work: Path, preset: str = "tiny", steps: int = 600) -> dict:
    """Held-out PSNR on the prepared poses and on the true ones (same images, same settings)."""
    truth_doc = json.loads((capture / "truth.json").read_text())
    twin = true_pose_twin(prepared, truth_doc, work / "true_pose_scene")
    result = {"preset": preset, "steps": steps,
              "psnr_prepared": held_out_psnr(prepared, work / "run_prepared", preset, steps),
              "psnr_true_poses": held_out_psnr(twin, work / "run_true", preset, steps)}
    result["difference_db"] = result["psnr_true_poses"] - result["psnr_prepared"]
    return result
