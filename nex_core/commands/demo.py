"""``nex demo``: the whole pipeline on the shipped scene, as ``nex train`` followed by ``nex render``."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import ModuleType

from ..io import config as config_mod
from ..io.errors import NexError
from . import render, train

DEMO_SCENE = Path(__file__).resolve().parents[2] / "data" / "scenes" / "shiny_demo"


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="train on the shipped scene, evaluate and render a video",
                              description="The whole pipeline on the shipped demo scene: train (fast preset), "
                              "evaluate held-out views, render a spiral video (1200 fast-preset steps: minutes "
                              "on a CPU).")
    p.add_argument("--out", default="runs/demo", help="run directory (default: runs/demo)")
    p.add_argument("--scene", help="scene directory (default: the shipped demo scene)")
    p.add_argument("--preset", default="fast", choices=list(config_mod.PRESETS), help="default: fast")
    p.add_argument("--steps", type=int, help="override the preset's training steps (with --resume: the run's, "
                   "also to extend a finished demo run)")
    p.add_argument("--frames", type=int, default=60, help="frames of the spiral video")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo run")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from ..runtime.checkpoint import list_checkpoints

    low, high = render.FLAG_RANGES["frames"]
    if not low <= args.frames <= high:  # before minutes of training, not after
        raise NexError(f"--frames {args.frames}: choose {low}..{high}")
    scene = Path(args.scene) if args.scene else DEMO_SCENE
    if not scene.is_dir():
        raise NexError(f"demo scene not found at {scene}; run from a clone of the repository or pass --scene")
    out = Path(args.out)
    if list_checkpoints(out) and not args.resume:
        raise NexError(f"{out} already holds a demo run; pass --resume to continue it or --out elsewhere")
    train_args = ["train", "--resume", str(out)] if args.resume else [
        "train", str(scene), "--preset", args.preset, "--out", str(out)]
    if args.steps is not None:
        train_args += ["--steps", str(args.steps)]
    code = run_command(train, train_args)
    if code != 0:
        return code
    return run_command(render, ["render", str(out), "--frames", str(args.frames)])


def run_command(module: ModuleType, argv: list[str]) -> int:
    """Run one subcommand module on ``nex``-style arguments (its own flags and defaults), in this process."""
    parser = argparse.ArgumentParser(prog="nex")
    module.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)
