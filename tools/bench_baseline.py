#!/usr/bin/env python
"""The reference-style baseline trained to a wall-clock budget, and how many minutes nex_core needs to reach
its final held-out PSNR.

The baseline is ``nex_core/training/reference_trainer.py`` with the reference's settings
(``reference_settings``: its alpha offset, one image per step, its learning rates, the rates decayed at a
third and two thirds of the run, sRGB compositing) on the network shape of a preset. Its step count is
planned from its own measured step time so that its schedule spans the budget, as ``nex train --minutes``
does for ours; held-out evaluations are left out of the budget (which favours the baseline).

Evaluation copies the baseline's weights into a NexModel (the two are the same function: tests/
test_reference_trainer.py) and renders the held-out views with ``render_views``, each plane once for all
views, as ``nex eval`` does; the per-view network render of the reference takes minutes per view at 1008.

    python tools/bench_baseline.py --scene SCENE --minutes 60 --json base.json
    python tools/bench_baseline.py --compare base.json --runs RUN_15 RUN_12 ...

The second form reads each ``nex train --minutes`` run's held-out PSNR (its last evaluation) and budget and
prints which budgets reach the baseline's final PSNR, with the ratio of minutes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tomllib
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def plan_steps(elapsed_s: float, steps_done: int, budget_s: float) -> int:
    """Steps that fill ``budget_s`` at the mean step time so far (at least one more than done)."""
    if steps_done <= 0 or elapsed_s <= 0:
        raise ValueError("plan_steps needs at least one timed step")
    return max(steps_done + 1, int(budget_s * steps_done / elapsed_s))


def held_out_psnr(trainer) -> tuple[float, list[float]]:
    """Mean held-out PSNR of a BaselineTrainer's model, rendered through a NexModel with its weights."""
    import numpy as np

    from nex_core.evaluation.metrics import psnr
    from nex_core.model.nex_model import NexModel
    from nex_core.runtime.plane_render import render_views
    from nex_core.training.reference_trainer import load_into_nex

    s = trainer.scene
    model = NexModel(trainer.cfg.model, trainer.geom).to(trainer.device)
    load_into_nex(model, trainer.model)
    renders = render_views(model, trainer.ref_camera, [s.cameras[i] for i in s.test_ids])
    values = [psnr(np.clip(img, 0.0, 1.0), s.images[i]) for i, img in zip(s.test_ids, renders)]
    return float(np.mean(values)), [float(v) for v in values]


def train_baseline(scene: Path, minutes: float, preset: str, seed: int, eval_at: list[float],
                   plan_at: list[float], log=print) -> dict:
    """Train the baseline for ``minutes`` of training time; returns the curve, the plan and the settings."""
    import torch

    from nex_core.io import config as config_mod
    from nex_core.training.reference_trainer import BaselineTrainer, reference_settings

    cfg = config_mod.preset(preset)
    cfg.data.scene = str(scene)
    cfg.train.device = "cpu"
    cfg.train.seed = seed
    cfg = reference_settings(cfg)
    budget = 60.0 * minutes
    # A provisional length for the first steps; the plan replaces it before the first decay (a third).
    trainer = BaselineTrainer(replace(cfg, train=replace(cfg.train, steps=10 ** 9)), device="cpu")
    eval_s: list[float] = []
    curve: list[dict] = []
    plans: list[dict] = []
    marks = sorted(eval_at)
    plan_marks = sorted(plan_at)
    t0 = time.perf_counter()

    def train_s() -> float:
        return time.perf_counter() - t0 - sum(eval_s)

    def evaluate() -> None:
        e0 = time.perf_counter()
        mean, views = held_out_psnr(trainer)
        eval_s.append(time.perf_counter() - e0)
        curve.append({"step": trainer.step, "train_s": round(train_s(), 1), "test_psnr": mean, "views": views,
                      "eval_s": round(eval_s[-1], 1)})
        log(f"  step {trainer.step}: held-out {mean:.2f} dB after {curve[-1]['train_s'] / 60:.1f} min "
            f"(evaluation {eval_s[-1]:.0f} s)")

    step_times: list[float] = []
    warmup = 5

    def replan(now: float) -> None:
        steps = plan_steps(now, trainer.step, budget)
        trainer.cfg = replace(trainer.cfg, train=replace(trainer.cfg.train, steps=steps))
        median = statistics.median(step_times[-50:])
        plans.append({"step": trainer.step, "train_s": round(now, 1), "steps": steps, "median_step_s": median})
        log(f"  plan at step {trainer.step}: {steps} steps ({median:.3f} s a step)")

    while True:
        s0 = time.perf_counter()
        trainer.train_step()
        step_times.append(time.perf_counter() - s0)
        now = train_s()
        if trainer.step == warmup:
            replan(now)
        elif plan_marks and now >= plan_marks[0] * budget:
            plan_marks.pop(0)
            # Only before the first decay (a third of the run): a later plan would move a decay already passed.
            if trainer.step < trainer.cfg.train.steps / 3:
                replan(now)
        done = trainer.step >= trainer.cfg.train.steps or now >= budget
        while marks and (now >= marks[0] * budget or done):
            marks.pop(0)
            evaluate()
        if done:
            break
    if not curve or curve[-1]["step"] != trainer.step:
        evaluate()
    return {"settings": config_mod.to_dict(trainer.cfg), "curve": curve, "plans": plans,
            "train_s": round(train_s(), 1), "eval_s": round(sum(eval_s), 1), "steps": trainer.step,
            "median_step_s": statistics.median(step_times)}


def run_result(run_dir: Path) -> dict:
    """A ``nex train`` run's budget (minutes), steps and last held-out PSNR, from its events.jsonl."""
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines() if line.strip()]
    evals = [e for e in events if e.get("kind") == "test_psnr" and e.get("test_psnr") is not None]
    if not evals:
        raise SystemExit(f"{run_dir}: no held-out evaluation in events.jsonl (was it trained with --no-eval?)")
    config = run_dir / "config.toml"
    minutes = tomllib.loads(config.read_text()).get("train", {}).get("minutes") if config.exists() else None
    last = evals[-1]
    return {"run": str(run_dir), "minutes": minutes, "step": last["step"], "test_psnr": last["test_psnr"],
            "elapsed_s": last.get("elapsed_s")}


def compare(baseline: dict, runs: list[dict]) -> str:
    """A markdown table: each run's PSNR against the baseline's final, and the minutes ratio where reached."""
    final = baseline["curve"][-1]["test_psnr"]
    base_min = baseline["minutes"]
    lines = [f"baseline: {final:.2f} dB after {base_min:g} min ({baseline['steps']} steps)", "",
             "| ours, budget | steps | held-out PSNR | vs baseline's final | baseline minutes / ours |",
             "|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: r["minutes"] or 0.0):
        budget = f"{r['minutes']:g} min" if r["minutes"] else "steps, no budget"
        if not r["minutes"]:
            ratio = "n/a (not a --minutes run)"
        else:
            ratio = f"{base_min / r['minutes']:.1f}x" if r["test_psnr"] >= final else "not reached"
        lines.append(f"| {budget} | {r['step']} | {r['test_psnr']:.2f} dB | "
                     f"{r['test_psnr'] - final:+.2f} dB | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scene", type=Path, help="scene folder (images/ + poses)")
    p.add_argument("--minutes", type=float, default=60.0, help="training budget (default 60)")
    p.add_argument("--preset", default="fast", help="network shape and data settings (default fast)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--eval-at", default="0.25,0.5,1", help="fractions of the budget with a held-out PSNR")
    p.add_argument("--plan-at", default="0.05,0.15,0.3",
                   help="fractions of the budget where the step count is re-planned (before the first decay)")
    p.add_argument("--json", type=Path, help="results file (train) or the baseline's results (--compare)")
    p.add_argument("--compare", type=Path, help="a baseline results file: compare it with --runs")
    p.add_argument("--runs", type=Path, nargs="*", default=[], help="nex train --minutes run folders")
    args = p.parse_args(argv)

    if args.compare:
        baseline = json.loads(args.compare.read_text())
        table = compare(baseline, [run_result(r) for r in args.runs])
        print(table)
        return 0
    if args.scene is None:
        p.error("--scene is required (or --compare with --runs)")
    if not args.scene.is_dir():
        p.error(f"--scene {args.scene}: no such folder")
    if args.minutes <= 0:
        p.error("--minutes must be positive")
    eval_at = [float(x) for x in args.eval_at.split(",") if x.strip()]
    plan_at = [float(x) for x in args.plan_at.split(",") if x.strip()]
    if any(not 0 < f <= 1 for f in eval_at + plan_at):
        p.error("--eval-at and --plan-at take fractions in (0, 1]")
    out = args.json or Path("bench_baseline.json")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".tmp").write_text("")
        out.with_suffix(".tmp").unlink()
    except OSError as e:
        p.error(f"--json {out}: cannot write there ({e})")

    import torch

    from tools.benchmark.machine import machine_info

    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine_info()
    print(f"baseline on {args.scene} for {args.minutes:g} min ({info['cpu']}, {torch.get_num_threads()} threads)")
    result = train_baseline(args.scene, args.minutes, args.preset, args.seed, eval_at, plan_at,
                            log=lambda m: print(m, flush=True))
    result.update({"scene": str(args.scene), "minutes": args.minutes, "preset": args.preset, "machine": info})
    out.write_text(json.dumps(result, indent=1))
    last = result["curve"][-1]
    print(f"baseline: {result['steps']} steps, held-out {last['test_psnr']:.2f} dB after {result['train_s'] / 60:.1f} "
          f"min of training (+{result['eval_s']:.0f} s of evaluation); {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
