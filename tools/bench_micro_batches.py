"""Training step time and peak memory by micro-batch count: does splitting a step cost time on this device?

Each setting runs in its own process (its own peak RSS): a trainer of ``--preset`` on ``--scene`` is built,
its planned micro-batches replaced by the count under test, one warm-up step run and ``--steps`` timed.
The memory planner keeps CPU micro-batches to ``CPU_MICRO_BATCH_BYTES`` of activations on the strength of
this table (docs/benchmarks.md). Example (the paper's 192 planes on a 160x120 suite scene)::

    python tools/bench_micro_batches.py --scene SCENE --preset paper --rays 2001 --micro 1 4 16 64
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scene", required=True, type=Path, help="scene folder (images/ + poses)")
    p.add_argument("--preset", default="paper", help="nex train preset (default: paper)")
    p.add_argument("--rays", type=int, default=2001, help="rays per step (default: 2001)")
    p.add_argument("--width", type=int, default=0, help="image width (default: the scene's own)")
    p.add_argument("--micro", type=int, nargs="+", default=[1, 4, 16, 64], help="micro-batch counts to time")
    p.add_argument("--steps", type=int, default=2, help="timed steps per setting (default: 2)")
    p.add_argument("--precision", default="fp32", help="training precision (default: fp32)")
    p.add_argument("--json", type=Path, default=None, help="write the rows here as JSON")
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # a child: time this count
    args = p.parse_args(argv)
    if not (args.scene / "images").is_dir():
        p.error(f"--scene {args.scene}: no images/ folder there")
    if min(args.micro) < 1 or args.rays < 3 or args.steps < 1:
        p.error("--micro, --rays and --steps must be positive (--rays at least 3)")
    return args


def time_one(args: argparse.Namespace) -> dict:
    """In a child process: build the trainer, force ``args.one`` micro-batches, time the steps."""
    from nex_core.io import config as config_mod
    from benchmark.measure import maxrss_bytes
    from nex_core.training.trainer import Trainer

    cfg = config_mod.preset(args.preset)
    cfg.data.scene, cfg.data.width, cfg.data.holdout = str(args.scene), args.width, 0
    cfg.train.rays, cfg.train.precision = args.rays, args.precision
    cfg.train.evals = cfg.train.checkpoints = cfg.train.checkpoint_every = 0
    with tempfile.TemporaryDirectory(prefix="nex_bench_micro_") as run:
        trainer = Trainer(cfg, Path(run) / "run")
        planned = trainer.micro_batches
        trainer.micro_batches = args.one
        trainer.train_step()  # warm-up
        times = []
        for _ in range(args.steps):
            t = time.perf_counter()
            trainer.train_step()
            times.append(round(time.perf_counter() - t, 3))
    planes = trainer.geom.n_planes
    return {"micro_batches": args.one, "planned": planned, "samples_per_micro_batch": args.rays * planes // args.one,
            "step_s": times, "peak_rss_gb": round(maxrss_bytes() / 1e9, 3)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one is not None:
        print(json.dumps(time_one(args)), flush=True)
        return 0
    sys.path.insert(0, str(REPO / "tools"))
    from benchmark.machine import machine_info

    rows = []
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    print(f"{'micro-batches':>13s} {'samples each':>13s} {'step s':>8s} {'peak RSS GB':>12s}", flush=True)
    for micro in args.micro:
        cmd = [sys.executable, str(Path(__file__).resolve()), *(argv if argv is not None else sys.argv[1:]),
               "--one", str(micro)]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
        if out.returncode:
            print(f"micro-batches {micro}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            return 1
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        mean = sum(row["step_s"]) / len(row["step_s"])
        print(f"{micro:13d} {row['samples_per_micro_batch']:13d} {mean:8.2f} {row['peak_rss_gb']:12.2f}", flush=True)
    result = {"settings": {k: str(v) for k, v in vars(args).items() if k != "one"}, "machine": machine_info(),
              "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
