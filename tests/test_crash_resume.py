"""Crash safety: `nex train` killed with SIGKILL at random moments (checkpoint writes included) always
resumes, loses at most one checkpoint interval, and ends with the weights of an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nex_core.io.errors import DamagedCheckpointError
from nex_core.io.events import read_events
from nex_core.runtime.checkpoint import checkpoint_dir, list_checkpoints, load_checkpoint

DEMO = Path(__file__).resolve().parent.parent / "data" / "scenes" / "shiny_demo"
STEPS = 200  # long enough that no unaimed kill (<= 0.6 s after the loop starts) comes too late
EVERY = 4  # checkpoint interval: short, so that many kills land inside a checkpoint write
KILLS = 10  # every other one aimed at a checkpoint write

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")


def _train_command(scene: Path, run: Path, resume: bool) -> list[str]:
    if resume:
        return [sys.executable, "-m", "nex_core.cli", "train", "--resume", str(run), "--quiet"]
    return [sys.executable, "-m", "nex_core.cli", "train", str(scene), "--out", str(run), "--preset", "tiny",
            "--steps", str(STEPS), "--checkpoint-every", str(EVERY), "--eval-every", "0", "--no-eval",
            "--width", "80", "--quiet"]


def _events(run: Path) -> list[dict]:
    return read_events(run / "events.jsonl")  # complete lines only; torn ones are skipped


def _announced_checkpoint(run: Path) -> int:
    steps = [e["step"] for e in _events(run) if e.get("kind") == "checkpoint"]
    return max(steps, default=0)


def _newest_good_checkpoint(run: Path) -> int:
    for step, path in reversed(list_checkpoints(run)):
        try:
            load_checkpoint(path)
        except DamagedCheckpointError:
            continue
        return step
    return 0


def _wait_for_training(proc: subprocess.Popen, run: Path, n_events_before: int, timeout: float = 120.0) -> bool:
    """True once this process has logged the start of its training loop; False if it ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        new = _events(run)[n_events_before:]
        if any(e.get("kind") == "start" and e.get("phase") == "train" for e in new):
            return True
        time.sleep(0.02)
    raise AssertionError("training did not start within the timeout")


def _wait_for_checkpoint_write(run: Path, timeout: float) -> None:
    """Spin until a checkpoint's temp file appears (so the kill lands mid-write) or the time is up."""
    deadline = time.monotonic() + timeout
    folder = checkpoint_dir(run)
    while time.monotonic() < deadline:
        if any(folder.glob(".step_*.pt.tmp")):
            return


def _final_model(run: Path) -> dict[str, torch.Tensor]:
    _, path = list_checkpoints(run)[-1]
    return load_checkpoint(path)["model"]


def test_sigkill_at_random_moments_always_resumes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = tmp_path / "uninterrupted"
    subprocess.run(_train_command(DEMO, reference, resume=False), check=True, env=env,
                   capture_output=True, timeout=600)

    run = tmp_path / "killed"
    rng = random.Random(1234)
    kills, during_write, resumed = 0, 0, False
    while kills < KILLS:
        n_before = len(_events(run))
        proc = subprocess.Popen(_train_command(DEMO, run, resume=resumed), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not _wait_for_training(proc, run, n_before):
            break  # finished before we could kill it: the run is complete
        if kills % 2:
            time.sleep(rng.uniform(0.0, 0.6))
        else:
            _wait_for_checkpoint_write(run, timeout=3.0)
        announced = _announced_checkpoint(run)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        kills += 1
        resumed = True
        if any(checkpoint_dir(run).glob(".step_*.pt.tmp")):
            during_write += 1
        good = _newest_good_checkpoint(run)
        # Every announced checkpoint survives, so at most the interval being trained is lost.
        assert good >= announced, (kills, good, announced)

    finish = subprocess.run(_train_command(DEMO, run, resume=True), env=env, capture_output=True,
                            text=True, timeout=600)
    assert finish.returncode == 0, finish.stderr
    assert kills >= KILLS // 2, f"only {kills} kills landed before training finished"
    assert list_checkpoints(run)[-1][0] == STEPS
    assert not list(checkpoint_dir(run).glob(".step_*.pt.tmp")), "a partial checkpoint was left behind"
    assert any(e.get("kind") == "done" for e in _events(run))
    print(f"\nSIGKILL test: {kills} kills survived, {during_write} during a checkpoint write")

    # Lost steps are re-trained from the checkpointed sampler state: the same weights as without kills.
    want, got = _final_model(reference), _final_model(run)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-5, msg=name)


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"
    cmd = _train_command(DEMO, run, resume=False)
    cmd[cmd.index("--steps") + 1] = "6"
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=600)
    (step_a, older), (step_b, newest) = list_checkpoints(run)[-2:]
    blob = bytearray(newest.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # one flipped byte inside the tensors: still a valid zip
    newest.write_bytes(bytes(blob))
    with pytest.raises(DamagedCheckpointError, match="checksum"):
        load_checkpoint(newest)

    from nex_core.io import config as config_mod
    from nex_core.training.trainer import Trainer

    cfg = config_mod.load(run / "config.toml")
    trainer = Trainer(cfg, run)
    assert trainer.step == step_a < step_b
    warnings = [e for e in _events(run) if e.get("kind") == "warning"]
    assert warnings and newest.name in warnings[-1]["message"]


def test_an_event_line_torn_by_a_killed_writer_is_skipped(tmp_path):
    from nex_core.io.events import EventLog, EventReader

    (tmp_path / "events.jsonl").write_text('{"kind": "start", "step": 0}\n{"kind": "progr', encoding="utf-8")
    reader = EventReader(tmp_path / "events.jsonl")
    assert [e["kind"] for e in reader.poll()] == ["start"]  # the partial line waits for its end
    EventLog(tmp_path).emit("train", "resume", step=4)
    assert [e["kind"] for e in reader.poll()] == ["resume"]  # the torn line is skipped, not an error
    assert [e["kind"] for e in read_events(tmp_path / "events.jsonl")] == ["start", "resume"]
