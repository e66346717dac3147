"""Memory planning: the estimate against measured peaks, splits chosen for a simulated device size, and
the refusal when nothing fits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support.configs import tiny_config

from nex_core.io.errors import ConfigError
from nex_core.runtime import memory_plan
from nex_core.runtime.memory_plan import DEVICE_MEMORY_ENV, plan_memory
from nex_core.runtime.setup import build_geometry, load_scene_for
from nex_core.model.nex_model import NexModel

ROOT = Path(__file__).resolve().parents[1]

# Trains a few steps in a fresh process; prints the plan and the process's peak RSS. VmHWM, not ru_maxrss:
# Linux keeps ru_maxrss across exec, so a child of the (large) pytest process would report pytest's peak.
_MEASURE = r"""
import json, sys
sys.path.insert(0, {tests!r})
sys.path.insert(0, {tools!r})
from benchmark.measure import maxrss_bytes
from support.configs import tiny_config
from nex_core.training.trainer import Trainer
layers, sub, hidden, rays, width = {shape}
cfg = tiny_config(steps=2, rays=rays, checkpoint_every=1000, precision="fp32")
cfg.data.holdout = 0  # no held-out renders: faster; the preview still renders in chunks
cfg.model.layers, cfg.model.sublayers, cfg.model.hidden, cfg.data.width = layers, sub, hidden, width
trainer = Trainer(cfg, {run!r})
plan = trainer.memory_plan
trainer.train()
print(json.dumps({{"peak": plan.peak, "added": plan.added, "resident": plan.resident,
                  "measured": maxrss_bytes()}}))
"""


def _model(layers: int = 8, sublayers: int = 4, hidden: int = 128) -> tuple:
    cfg = tiny_config()
    cfg.model.layers, cfg.model.sublayers, cfg.model.hidden = layers, sublayers, hidden
    scene = load_scene_for(cfg)
    return cfg, NexModel(cfg.model, build_geometry(scene, cfg))


@pytest.mark.parametrize("shape", [
    (8, 4, 128, 3000, 120),  # one micro-batch (under the CPU's 0.5 GB limit)
    (4, 4, 256, 3000, 160),
])
def test_estimate_is_within_a_quarter_of_the_measured_peak(shape, tmp_path):
    code = _MEASURE.format(tests=str(ROOT / "tests"), tools=str(ROOT / "tools"), shape=shape, run=str(tmp_path / "run"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(DEVICE_MEMORY_ENV, None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["added"] > 0.4 * got["resident"]  # training's own share is a large part of the peak
    assert abs(got["peak"] - got["measured"]) <= 0.25 * got["measured"], got
    # What training adds to what was resident at setup is estimated, not measured: check it on its own.
    measured_added = got["measured"] - got["resident"]
    assert abs(got["added"] - measured_added) <= 0.25 * measured_added, got


def test_splits_are_the_fewest_that_fit():
    _, model = _model()
    whole = plan_memory(model, 6000, 4096, resident=10**8, available=None, dtype=None)
    assert whole.micro_batches == 1 and whole.render_chunk == 4096 and not whole.split
    # A device where a quarter of the step's activations fit (besides the rest) needs 4 micro-batches.
    fixed = whole.optimiser + whole.regulariser
    quarter = fixed + whole.train_activations / 4 * 1.05
    plan = plan_memory(model, 6000, 4096, resident=10**8, available=int(quarter / memory_plan.HEADROOM), dtype=None)
    assert plan.fits() and plan.micro_batches == 4 and plan.split
    assert plan.train_activations <= whole.train_activations / 4 * 1.01
    third = plan_memory(model, 6000, 4096, resident=10**8, available=int(quarter / memory_plan.HEADROOM * 0.8),
                        dtype=None)
    assert third.micro_batches == 8
    bf16 = plan_memory(model, 6000, 4096, resident=10**8, available=None, dtype=torch.bfloat16)
    assert bf16.train_activations < whole.train_activations


def test_a_cpu_keeps_micro_batches_small_however_much_memory_is_free():
    _, model = _model()
    whole = plan_memory(model, 6000, 4096, resident=10**8, available=None, dtype=None)
    cap = whole.train_activations / 3  # asks for 4 micro-batches (the next power of two)
    plan = plan_memory(model, 6000, 4096, resident=10**8, available=None, dtype=None, max_batch_bytes=cap)
    assert plan.micro_batches == 4 and plan.train_activations <= cap
    assert plan.capped and not plan.split and "kept small for the CPU" in plan.describe()
    # Less memory than even that: split further, and say it was to fit.
    fixed = plan.optimiser + plan.regulariser
    tight = plan_memory(model, 6000, 4096, resident=10**8, dtype=None, max_batch_bytes=cap,
                        available=int((fixed + plan.train_activations / 2 * 1.05) / memory_plan.HEADROOM))
    assert tight.micro_batches == 8 and tight.split and tight.fits()
    # A budget above the whole step's activations changes nothing.
    roomy = plan_memory(model, 6000, 4096, resident=10**8, available=None, dtype=None,
                        max_batch_bytes=2 * whole.train_activations)
    assert roomy.micro_batches == 1 and not roomy.capped


def test_trainer_splits_to_fit_a_simulated_device(tmp_path, monkeypatch):
    from nex_core.training.trainer import Trainer

    cfg = tiny_config(steps=1, rays=30000, precision="fp32")
    cfg.model.layers, cfg.model.sublayers, cfg.model.hidden = 8, 4, 128
    events = []
    # As on a GPU, the largest micro-batch that fits (the CPU's own limit is tested above).
    monkeypatch.setattr(memory_plan, "CPU_MICRO_BATCH_BYTES", None)
    needed = plan_memory(_model()[1], 30000, 4096, 0, None, None)
    size = memory_plan.process_rss_bytes() + 0.5 * needed.added + 3e8  # room for about half the activations
    monkeypatch.setenv(DEVICE_MEMORY_ENV, str(int(size)))
    trainer = Trainer(cfg, tmp_path / "run", listeners=[events.append])
    assert trainer.micro_batches >= 2
    warn = [e for e in events if e["phase"] == "setup" and e["kind"] == "warning"]
    assert warn and "split to fit" in warn[0]["message"] and warn[0]["micro_batches"] == trainer.micro_batches


def test_a_config_that_cannot_fit_is_refused_with_the_estimate_and_what_to_change(tmp_path, monkeypatch):
    from nex_core.training.trainer import Trainer

    cfg = tiny_config(steps=1)
    cfg.model.layers, cfg.model.sublayers = 8, 4
    monkeypatch.setenv(DEVICE_MEMORY_ENV, "2e8")  # less than the process holds already
    with pytest.raises(ConfigError, match="does not fit in memory") as err:
        Trainer(cfg, tmp_path / "run")
    text = str(err.value)
    assert "estimated peak" in text and "fewer planes" in text and "8 x 4 = 32" in text and "--width" in text


def test_a_bad_simulated_size_names_the_variable(monkeypatch):
    monkeypatch.setenv(DEVICE_MEMORY_ENV, "lots")
    with pytest.raises(ConfigError, match=DEVICE_MEMORY_ENV):
        memory_plan.resident_and_available(torch.device("cpu"))


def test_the_cpu_reports_its_memory(monkeypatch):
    monkeypatch.delenv(DEVICE_MEMORY_ENV, raising=False)
    resident, available = memory_plan.resident_and_available(torch.device("cpu"))
    assert resident > 50e6  # a Python with torch loaded
    assert available is None or available > 0
