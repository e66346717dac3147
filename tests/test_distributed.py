"""DDP training on the CPU (gloo, 2 processes launched by torchrun) against one process with the same
global batch, and resuming with a different number of processes."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nex_core.io import config as config_mod
from nex_core.io.events import read_events
from nex_core.training.distributed import DistInfo, shard_triples
from nex_core.training.trainer import Trainer

DEMO = Path(__file__).resolve().parent.parent / "data" / "scenes" / "shiny_demo"
STEPS = 30
# The 2-process curve differs from the 1-process one only by floating-point summation order (the
# gradient of two half-batch means, averaged, is the gradient of the full-batch mean).
LOSS_RTOL = 2e-3


def tiny_cfg() -> config_mod.RunConfig:
    cfg = config_mod.preset("tiny")
    cfg.data.scene = str(DEMO)
    cfg.train.steps = STEPS
    cfg.train.log_every = 5
    cfg.train.checkpoint_every = 1000
    cfg.train.precision = "fp32"  # compare summation order only, not bf16 rounding
    return cfg


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(args: list[str], nproc: int = 2, fresh_dir: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``nex`` under torchrun; ``fresh_dir`` is removed before a retry (a new run's output)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    for attempt in range(2):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
               "--master-port", str(free_port()), "-m", "nex_core.cli", *args]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        # Known, rare (about 1 run in 5 on a loaded 2-core machine): gloo aborts a rank at process exit
        # with this C++ message although training finished. Retried once; anything else fails at once.
        if proc.returncode == 0 or "terminate called without an active exception" not in proc.stderr:
            return proc
        if fresh_dir is not None:
            shutil.rmtree(fresh_dir, ignore_errors=True)
    return proc


def losses(run_dir: Path) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in read_events(run_dir / "events.jsonl") if e["kind"] == "progress"}


def test_shards_are_equal_and_disjoint():
    parts = [shard_triples(600, DistInfo(r, 2, r)) for r in range(2)]
    assert parts[0] == slice(0, 100) and parts[1] == slice(100, 200)


@pytest.mark.slow
@pytest.mark.parametrize("field", ["mlp", "grid"])
def test_two_processes_follow_the_single_process_curve(tmp_path, field):
    cfg = tiny_cfg()
    cfg.model.field = field  # the grid field's feature grids are synchronised like the MLP's weights
    single = tmp_path / "single"
    Trainer(cfg, single).train()
    config_mod.save(cfg, tmp_path / "cfg.toml")
    proc = torchrun(["train", "--config", str(tmp_path / "cfg.toml"), "--out", str(tmp_path / "ddp"),
                     "--no-eval", "--quiet"], fresh_dir=tmp_path / "ddp")
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = losses(single), losses(tmp_path / "ddp")
    assert sorted(a) == sorted(b)
    np.testing.assert_allclose([b[k] for k in sorted(b)], [a[k] for k in sorted(a)], rtol=LOSS_RTOL)
    starts = [e for e in read_events(tmp_path / "ddp" / "events.jsonl") if e["kind"] == "start"]
    assert starts[0]["world_size"] == 2  # only rank 0 wrote events
    assert len([e for e in read_events(tmp_path / "ddp" / "events.jsonl") if e["kind"] == "done"]) == 1


@pytest.mark.slow
def test_resume_with_a_different_number_of_processes(tmp_path):
    straight = tmp_path / "straight"
    Trainer(tiny_cfg(), straight).train()
    calls = {"n": 0}

    def stop_after_12():
        calls["n"] += 1
        return calls["n"] > 12

    run = tmp_path / "run"
    assert Trainer(tiny_cfg(), run, should_stop=stop_after_12).train().cancelled
    proc = torchrun(["train", "--resume", str(run), "--no-eval", "--quiet"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = losses(straight), losses(run)
    np.testing.assert_allclose(b[STEPS], a[STEPS], rtol=LOSS_RTOL)
