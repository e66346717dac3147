"""The ``nex`` command: train, eval, render and demo, on the same code paths as the Blender add-on."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .io.errors import NexError

DEMO_SCENE = Path(__file__).resolve().parent.parent / "data" / "scenes" / "shiny_demo"


# --------------------------------------------------------------------------------------------------
# Console output


class ProgressPrinter:
    """Turns training events into a rich progress bar (or plain lines when not on a terminal)."""

    def __init__(self, quiet: bool = False):
        from rich.console import Console

        self.console = Console(stderr=True, markup=False, highlight=False)
        self.quiet = quiet
        self.progress = None
        self.task = None
        self.last_plain = 0.0

    def __call__(self, event: dict[str, Any]) -> None:
        if self.quiet:
            return
        kind, phase = event.get("kind"), event.get("phase")
        if kind == "start" and phase == "train":
            self._start(event)
        elif kind == "progress" and phase == "train":
            self._advance(event)
        elif kind == "test_psnr" and event.get("test_psnr") is not None:
            self.console.print(f"step {event['step']}: held-out PSNR {event['test_psnr']:.2f} dB "
                               f"({event.get('elapsed_s', 0):.0f} s)")
        elif kind == "warning" and event.get("message"):
            self.console.print(f"warning: {event['message']}")
        elif kind == "resume":
            self.console.print(f"resuming from step {event['step']} ({event['checkpoint']})")
        elif kind == "cancelled":
            self.console.print(f"stopped at step {event['step']}; resume with `nex train --resume RUN`")

    def _start(self, event: dict[str, Any]) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console.print(f"training: {event['n_train']} views ({event['n_test']} held out), "
                           f"{event['planes']} planes, {event['steps']} steps")
        if self.console.is_terminal:
            self.progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                                     console=self.console, transient=False)
            self.progress.start()
            self.task = self.progress.add_task("train", total=event["steps"], completed=event["step"], info="")

    def _advance(self, event: dict[str, Any]) -> None:
        info = f"loss {event['loss']:.4f}  PSNR {event['psnr']:.2f}  {event['rays_per_s'] / 1000:.1f}k rays/s"
        if self.progress is not None:
            self.progress.update(self.task, completed=event["step"], info=info)
            if event["step"] >= event["steps"]:
                self.close()
        elif time.time() - self.last_plain > 10 or event["step"] >= event["steps"]:
            self.last_plain = time.time()
            self.console.print(f"step {event['step']}/{event['steps']}  {info}")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class StopFlag:
    """Set by SIGINT/SIGTERM so training stops at the next step with a checkpoint."""

    def __init__(self):
        self.stop = False

    def __call__(self) -> bool:
        return self.stop

    def install(self) -> None:
        def handler(signum, frame):
            if self.stop:  # a second Ctrl-C: give up at once
                raise KeyboardInterrupt
            self.stop = True

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
        if hasattr(signal, "SIGBREAK"):  # Windows: how the Blender add-on asks a worker to stop
            signal.signal(signal.SIGBREAK, handler)


# --------------------------------------------------------------------------------------------------
# Commands


TRAIN_OVERRIDES = {
    "width": ("data.width", int, "resize images to this width in pixels"),
    "holdout": ("data.holdout", int, "hold out every N-th image for evaluation (0: none)"),
    "ref_image": ("data.ref_image", str, "reference view (image file name or stem)"),
    "dmin": ("data.dmin", float, "depth of the nearest plane (default: planes.txt or scene bounds)"),
    "dmax": ("data.dmax", float, "depth of the farthest plane"),
    "offset": ("data.offset", int, "MPI padding in pixels (default: planes.txt or 1/5 of the width)"),
    "layers": ("model.layers", int, "plane groups sharing coefficients and k0"),
    "sublayers": ("model.sublayers", int, "planes per layer"),
    "hidden": ("model.hidden", int, "width of the coefficient MLP"),
    "basis": ("model.basis", str, "view basis: learned, sh (spherical harmonics) or fourier"),
    "basis_out": ("model.basis_out", int, "number of basis functions N"),
    "field": ("model.field", str, "form of F_theta: mlp (the reference's) or grid (opt-in: feature grids "
                                  "+ small MLP, several times fewer operations per step)"),
    "steps": ("train.steps", int, "training steps"),
    "rays": ("train.rays", int, "rays per step"),
    "images_per_step": ("train.images_per_step", int, "training images the rays of one step come from"),
    "lr": ("train.lr", float, "learning rate of the coefficient MLP"),
    "seed": ("train.seed", int, "random seed"),
    "device": ("train.device", str, "auto, cpu, cuda or cuda:N"),
    "precision": ("train.precision", str, "auto (bf16 on CUDA, fp16 with loss scaling on GPUs without bf16; "
                                          "bf16 on CPUs where it is faster), fp32 or bf16"),
    "eval_every": ("train.eval_every", int, "steps between held-out PSNR checks (0: at the end)"),
    "checkpoint_every": ("train.checkpoint_every", int, "steps between checkpoints"),
}


def _config_from_args(args: argparse.Namespace):
    from .io import config as config_mod

    cfg = config_mod.load(Path(args.config)) if args.config else config_mod.preset(args.preset)
    if args.scene:
        cfg.data.scene = str(Path(args.scene).resolve())
    overrides = {dotted: getattr(args, name) for name, (dotted, _, _) in TRAIN_OVERRIDES.items()}
    if args.invz is not None:
        overrides["data.invz"] = "true" if args.invz else "false"
    return config_mod.apply_overrides(cfg, overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from .io import config as config_mod
    from .io.run_files import RunFiles
    from .runtime.checkpoint import list_checkpoints
    from .training.trainer import Trainer

    if args.resume:
        run_dir = Path(args.resume)
        cfg = config_mod.load(RunFiles(run_dir).config)
    else:
        if not args.scene and not args.config:
            raise NexError("give a scene directory (nex train SCENE) or --config FILE, or --resume RUN")
        cfg = _config_from_args(args)
        run_dir = Path(args.out) if args.out else Path("runs") / f"{Path(cfg.data.scene).name}-{cfg.preset}"
        if list_checkpoints(run_dir):
            raise NexError(f"{run_dir} already holds a trained run; continue it with `nex train --resume "
                           f"{run_dir}` or pass another --out")
    from .training.distributed import DistInfo

    printer = ProgressPrinter(quiet=args.quiet or not DistInfo.from_env().is_main)
    stop = StopFlag()
    stop.install()
    try:
        trainer = Trainer(cfg, run_dir, listeners=[printer], should_stop=stop)
        result = trainer.train()
    finally:
        printer.close()
    if result.cancelled:
        return 130
    if not trainer.dist.is_main:
        return 0
    msg = f"done: {result.step} steps in {result.seconds:.0f} s"
    if result.test_psnr is not None:
        msg += f", held-out PSNR {result.test_psnr:.2f} dB"
    printer.console.print(msg + f"; run directory: {run_dir}")
    if not args.no_eval:
        _evaluate(run_dir, with_lpips=True, console=printer.console)
    return 0


def _evaluate(run_dir: Path, with_lpips: bool, console) -> None:
    from .evaluation.evaluate import evaluate_run
    from .runtime.run import open_run

    run = open_run(run_dir)
    if not run.scene.test_ids:
        console.print("no held-out views (holdout = 0): nothing to evaluate")
        return
    result = evaluate_run(run, with_lpips=with_lpips)
    m = result.mean
    line = f"held-out ({len(result.per_view)} views): PSNR {m['psnr']:.2f} dB  SSIM {m['ssim']:.4f}"
    line += f"  LPIPS {m['lpips']:.4f}" if m.get("lpips") is not None else f"  LPIPS unavailable: {result.lpips_note}"
    console.print(line)
    console.print(f"images and metrics.csv in {result.out_dir}")


def cmd_eval(args: argparse.Namespace) -> int:
    from rich.console import Console

    _evaluate(Path(args.run), with_lpips=not args.no_lpips, console=Console(stderr=True, markup=False, highlight=False))
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from .export.video import render_frames, spiral_cameras, write_mp4, write_pngs
    from .io.run_files import RunFiles
    from .runtime.run import open_run

    console = Console(stderr=True, markup=False, highlight=False)
    run = open_run(Path(args.run))
    out = Path(args.out) if args.out else RunFiles(run.run_dir).render
    with Progress(console=console, transient=True) as progress:
        test_cams = [run.scene.cameras[i] for i in run.scene.test_ids]
        if test_cams and not args.no_test_views:
            task = progress.add_task("held-out views", total=len(test_cams))
            frames = render_frames(run, test_cams, lambda k, n: progress.update(task, completed=k))
            paths = write_pngs(frames, out / "test_views")
            for cam, p in zip(test_cams, paths):
                p.rename(p.with_name(Path(cam.name).stem + ".png") if cam.name else p)
            console.print(f"{len(frames)} held-out views in {out / 'test_views'}")
        task = progress.add_task("spiral", total=args.frames)
        frames = render_frames(run, spiral_cameras(run, args.frames), lambda k, n: progress.update(task, completed=k))
    video = write_mp4(frames, out / "spiral.mp4", fps=args.fps)
    console.print(f"spiral video: {video}")
    if args.png:
        write_pngs(frames, out / "spiral_frames")
        console.print(f"frames: {out / 'spiral_frames'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    scene = Path(args.scene) if args.scene else DEMO_SCENE
    if not scene.is_dir():
        raise NexError(f"demo scene not found at {scene}; run from a clone of the repository or pass --scene")
    out = Path(args.out)
    from .runtime.checkpoint import list_checkpoints

    if list_checkpoints(out) and not args.resume:
        raise NexError(f"{out} already holds a demo run; pass --resume to continue it or --out elsewhere")
    train_args = ["train", "--resume", str(out)] if args.resume else [
        "train", str(scene), "--preset", args.preset, "--out", str(out)]
    if args.steps and not args.resume:
        train_args += ["--steps", str(args.steps)]
    code = main(train_args)
    if code != 0:
        return code
    return main(["render", str(out), "--frames", str(args.frames)])


# --------------------------------------------------------------------------------------------------
# Parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nex", description="NeX: view-dependent multiplane images from photos. Train a scene, "
        "evaluate it on held-out views, render videos.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a NeX model on a scene directory",
                       description="Train a NeX model. A scene directory holds images/ and poses "
                       "(poses_bounds.npy, sparse/0 or transforms.json). Progress goes to the terminal and "
                       "to RUN/events.jsonl; Ctrl-C stops with a checkpoint you can resume.")
    p.add_argument("scene", nargs="?", help="scene directory")
    p.add_argument("--out", help="run directory (default: runs/<scene>-<preset>)")
    p.add_argument("--preset", default="fast", choices=["tiny", "fast", "paper"],
                   help="settings preset: tiny (tests, seconds), fast (CPU demo, minutes), paper (the "
                   "reference's defaults, GPU hours) (default: fast)")
    p.add_argument("--config", help="a config.toml to start from instead of a preset")
    p.add_argument("--resume", metavar="RUN", help="continue the run in this directory from its newest checkpoint")
    inv = p.add_mutually_exclusive_group()
    inv.add_argument("--invz", dest="invz", action="store_true", default=None,
                     help="space planes evenly in inverse depth")
    inv.add_argument("--no-invz", dest="invz", action="store_false", help="space planes evenly in depth")
    for name, (_, typ, text) in TRAIN_OVERRIDES.items():
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=None, help=text)
    p.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation at the end")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a run on its held-out views (PSNR, SSIM, LPIPS)")
    p.add_argument("run", help="run directory")
    p.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("render", help="render held-out views and a spiral fly-through video")
    p.add_argument("run", help="run directory")
    p.add_argument("--out", help="output folder (default: RUN/render)")
    p.add_argument("--frames", type=int, default=60, help="frames of the spiral video (default: 60)")
    p.add_argument("--fps", type=int, default=30, help="video frame rate (default: 30)")
    p.add_argument("--png", action="store_true", help="also write the spiral's frames as PNG")
    p.add_argument("--no-test-views", action="store_true", help="only the video")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("demo", help="train on the shipped scene, evaluate and render a video",
                       description="The whole pipeline on the shipped demo scene: train (fast preset), "
                       "evaluate held-out views, render a spiral video (1200 fast-preset steps: minutes on a CPU).")
    p.add_argument("--out", default="runs/demo", help="run directory (default: runs/demo)")
    p.add_argument("--scene", help="scene directory (default: the shipped demo scene)")
    p.add_argument("--preset", default="fast", choices=["tiny", "fast", "paper"], help="default: fast")
    p.add_argument("--steps", type=int, help="override the preset's training steps")
    p.add_argument("--frames", type=int, default=60, help="frames of the spiral video")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo run")
    p.set_defaults(func=cmd_demo)
    _register_command_modules(sub)
    return parser


def _register_command_modules(sub) -> None:
    import importlib
    import importlib.util

    from .commands import COMMAND_MODULES

    for name in COMMAND_MODULES:
        if importlib.util.find_spec(f"{__package__}.commands.{name}") is not None:
            importlib.import_module(f"{__package__}.commands.{name}").register(sub)


# Commands whose CPU work allocates and frees large tensors every step or chunk.
HEAVY_COMMANDS = ("train", "eval", "render", "demo", "bake")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in HEAVY_COMMANDS and os.environ.get("NEX_ALLOCATOR", "tuned") != "default":
        from .runtime.allocator import keep_freed_memory

        keep_freed_memory()
    try:
        return args.func(args)
    except NexError as exc:
        print(f"nex: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nex: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
