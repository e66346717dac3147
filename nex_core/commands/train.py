"""``nex train SCENE``: train a NeX model into a run directory (resumable), then evaluate it."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..io import config as config_mod
from ..io.config_ranges import describe
from ..io.errors import ConfigError, NexError
from ..io.run_files import RunFiles, is_run_entry
from .console import EventPrinter
from .evaluate import report_evaluation
from .stop_flag import StopFlag

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
    "field": ("model.field", str, "form of F_theta: mlp (the reference's), grid (feature grids + a small MLP, "
                                  "several times fewer operations a step) or auto (fast's default: the one "
                                  "that trains better in the same time on this machine)"),
    "compositing": ("model.compositing", str, "where the planes are composited: linear (the default: in linear "
                                              "light, as Blender and engines blend the baked textures) or srgb "
                                              "(the reference's: the encoded values)"),
    "steps": ("train.steps", int, "training steps"),
    "minutes": ("train.minutes", float, "train for this many minutes instead of --steps: the steps follow from the "
                                        "step time measured at the start (and again as it runs); the schedule, "
                                        "--evals and --checkpoints are fractions of the run (0: --steps decides)"),
    "rays": ("train.rays", int, "rays per step"),
    "images_per_step": ("train.images_per_step", int, "training images the rays of one step come from"),
    "lr": ("train.lr", float, "learning rate of the coefficient MLP"),
    "seed": ("train.seed", int, "random seed"),
    "appearance": ("train.appearance", str, "per-photo colour compensation in training: affine (default) or off"),
    "device": ("train.device", str, "auto, cpu, cuda or cuda:N"),
    "precision": ("train.precision", str, "auto (bf16 on CUDA, fp16 with loss scaling on GPUs without bf16; "
                                          "bf16 on CPUs where it is faster), fp32 or bf16"),
    "evals": ("train.evals", int, "held-out PSNR checks spread evenly over the run (0 or 1: at the end only)"),
    "eval_every": ("train.eval_every", int, "steps between held-out PSNR checks, besides --evals (0: none)"),
    "checkpoints": ("train.checkpoints", int, "checkpoints spread evenly over the run (the end always has one)"),
    "checkpoint_every": ("train.checkpoint_every", int, "steps between checkpoints, besides --checkpoints (0: none)"),
    "log_every": ("train.log_every", int, "steps between progress events"),
    "keep_checkpoints": ("train.keep_checkpoints", int, "checkpoints kept (the newest ones)"),
    "render_chunk": ("train.render_chunk", int, "rays per chunk when rendering whole images (memory)"),
}
"""Flags that override one config entry each: flag name -> (dotted config key, type, help)."""

FLAG_OF = {dotted: "--" + name.replace("_", "-") for name, (dotted, _, _) in TRAIN_OVERRIDES.items()}
FLAG_OF.update({"data.scene": "SCENE", "data.invz": "--invz/--no-invz"})
"""The command-line form of each config key a flag sets, for error messages."""


class StoreGiven(argparse.Action):
    """Stores the value and records that the flag was given (``args.given_<dest>``), for flags with defaults."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        setattr(namespace, "given_" + self.dest, True)


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a NeX model on a scene directory",
                              description="Train a NeX model. A scene directory holds images/ and poses "
                              "(poses_bounds.npy, sparse/0 or transforms.json). Progress goes to the terminal and "
                              "to RUN/events.jsonl; Ctrl-C stops with a checkpoint you can resume.")
    p.add_argument("scene", nargs="?", help="scene directory")
    p.add_argument("--out", help="run directory (default: runs/<scene>-<preset>)")
    p.add_argument("--preset", default="fast", choices=list(config_mod.PRESETS), action=StoreGiven,
                   help="settings preset: tiny (tests, seconds), fast (CPU demo, minutes), paper (the "
                   "reference's defaults, GPU hours) (default: fast)")
    p.add_argument("--config", help="a config.toml to start from instead of a preset")
    p.add_argument("--resume", metavar="RUN", help="continue the run in this directory from its newest checkpoint; "
                   "--steps or --minutes (also past the end), --device, --precision and the interval flags may "
                   "change; flags that would change the model or its data are refused")
    inv = p.add_mutually_exclusive_group()
    inv.add_argument("--invz", dest="invz", action="store_true", default=None,
                     help="space planes evenly in inverse depth")
    inv.add_argument("--no-invz", dest="invz", action="store_false", help="space planes evenly in depth")
    for name, (dotted, typ, text) in TRAIN_OVERRIDES.items():  # the help shows what config.validate accepts
        allowed = describe(dotted, with_note=False)
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=None,
                       help=f"{text} ({allowed})" if allowed else text)
    p.add_argument("--set", dest="set_values", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="set any config entry (repeatable), e.g. --set model.grid_max=128; VALUE is read as a "
                        "TOML value (numbers, true/false, [lists]), else as text")
    p.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation at the end")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_train)


class TrainPrinter(EventPrinter):
    """Turns training events into a rich progress bar (or plain lines when not on a terminal)."""

    task: Any = None  # the bar's task, once training has started

    def __call__(self, event: dict[str, Any]) -> None:
        if self.quiet:
            return
        kind, phase = event.get("kind"), event.get("phase")
        if kind == "start" and phase == "setup" and event.get("field_auto"):
            machine = "GPU" if str(event.get("device", "")).startswith("cuda") else "CPU"
            other = "mlp" if event["field"] == "grid" else "grid"
            self.say(f"network: {event['field']}, chosen for this {machine} (--field {other} for the other)")
        elif kind == "start" and phase == "train":
            self._start(event)
        elif kind == "progress" and phase == "train":
            self._advance(event)
        elif kind == "test_psnr" and event.get("test_psnr") is not None:
            self.say(f"step {event['step']}: held-out PSNR {event['test_psnr']:.2f} dB "
                     f"({event.get('elapsed_s', 0):.0f} s)")
        elif kind == "warning" and event.get("message"):
            self.say(f"warning: {event['message']}")
        elif kind == "settings_changed":
            self.say(f"resume with new settings: {event['message']}")
        elif kind == "resume":
            self.say(f"resuming from step {event['step']} ({event['checkpoint']})")
        elif kind == "cancelled":
            self.say(f"stopped at step {event['step']}; resume with `nex train --resume RUN`")
        elif kind == "budget" and not self.planned:
            self.planned = True
            self.say(f"budget: {event['step_s']:.3f} s a step, about {event['steps']} steps in "
                     f"{time_left(event['time_left_s'])} (re-estimated as it runs)")

    planned = False  # the first budget estimate was shown

    def _start(self, event: dict[str, Any]) -> None:
        length = (f"a budget of {event['budget_s'] / 60:g} min ({time_left(event['time_left_s'])})"
                  if "budget_s" in event else f"{event['steps']} steps")
        self.say(f"training: {event['n_train']} views ({event['n_test']} held out), "
                 f"{event['planes']} planes, {length}")
        progress = self.start_progress("train", "{task.fields[info]}")
        if progress is not None:
            self.task = progress.add_task("train", total=event["steps"] or None, completed=event["step"], info="")

    def _advance(self, event: dict[str, Any]) -> None:
        info = f"loss {event['loss']:.4f}  PSNR {event['psnr']:.2f}  {event['rays_per_s'] / 1000:.1f}k rays/s"
        if event.get("eta_s") is not None:
            info += f"  {time_left(event['eta_s'])}"
        done = bool(event["steps"]) and event["step"] >= event["steps"]
        if self.progress is not None:
            self.progress.update(self.task, completed=event["step"], total=event["steps"] or None, info=info)
            if done:
                self.close()
        elif self.plain.ready(force=done):
            self.say(f"step {event['step']}/{event['steps']}  {info}")


def time_left(seconds: float) -> str:
    """``4:05 left`` (``1:02:03 left`` past an hour)."""
    m, sec = divmod(int(max(0.0, seconds) + 0.5), 60)
    return f"{m}:{sec:02d} left" if m < 60 else f"{m // 60}:{m % 60:02d}:{sec:02d} left"


def parse_set(text: str) -> tuple[str, object]:
    """``--set section.key=value`` as (``section.key``, value); the value is read as TOML where it parses
    (``64``, ``1e-3``, ``[0.5, 0.8]``), else kept as text (``grid``)."""
    import tomllib

    key, sep, value = text.partition("=")
    key = key.strip()
    section, dot, name = key.partition(".")
    if not sep or not dot or section not in ("data", "model", "train") or not name:
        raise ConfigError(f"--set {text!r}: write SECTION.KEY=VALUE with SECTION data, model or train, e.g. "
                          "--set model.grid_max=128 (config.toml of a run lists every key)")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return key, value.strip()
    # The config has no boolean entries: its switches are text (data.invz = "auto" | "true" | "false").
    return key, str(parsed).lower() if isinstance(parsed, bool) else parsed


def flag_overrides(args: argparse.Namespace) -> dict[str, object]:
    """``{"section.key": value}`` for every override flag given (None for those not given), then --set's."""
    overrides = {dotted: getattr(args, name) for name, (dotted, _, _) in TRAIN_OVERRIDES.items()}
    if args.invz is not None:
        overrides["data.invz"] = "true" if args.invz else "false"
    for text in getattr(args, "set_values", None) or []:
        key, value = parse_set(text)
        if overrides.get(key) is not None:
            raise ConfigError(f"--set {text!r} and {FLAG_OF.get(key, key)} both set {key}: give one of them")
        overrides[key] = value
    return overrides


def check_length(args: argparse.Namespace, cfg: config_mod.RunConfig, source: str) -> None:
    """--steps and a time budget exclude each other: a budget run sets its own steps (and records them)."""
    if args.steps is not None and cfg.train.minutes > 0:
        where = "--minutes" if args.minutes is not None else f"train.minutes = {cfg.train.minutes:g} in {source}"
        raise ConfigError(f"--steps {args.steps} and {where}: a run's length is either steps or minutes (a budget "
                          f"run sets its steps from the time); drop --steps, or add --minutes 0 to train "
                          f"{args.steps} steps")


def config_from_args(args: argparse.Namespace) -> config_mod.RunConfig:
    """The run's config: --config or the preset, the scene, then every override flag given."""
    cfg = config_mod.load(Path(args.config)) if args.config else config_mod.preset(args.preset)
    if args.scene:
        cfg.data.scene = str(Path(args.scene).resolve())
    cfg = config_mod.apply_overrides(cfg, flag_overrides(args))
    check_length(args, cfg, args.config or f"the {args.preset} preset")
    return cfg


def check_run_folder(run_dir: Path) -> None:
    """A new run's folder must be creatable, and if it exists hold nothing but a run's own files (so a scene,
    a baked MPI or any other folder is never trained into)."""
    from ..io.output_paths import check_output_dir

    if run_dir.is_dir():
        foreign = sorted(p.name for p in run_dir.iterdir() if not is_run_entry(p.name))
        if foreign:
            raise ConfigError(f"--out {run_dir} is not a run folder (it holds {', '.join(foreign[:4])}"
                              f"{', ...' if len(foreign) > 4 else ''}): choose a new or empty folder")
    check_output_dir(run_dir, "run folder", replaceable=lambda path: True)


def resume_config(args: argparse.Namespace, run_dir: Path) -> config_mod.RunConfig:
    """The config a resume trains with: the run's config.toml with the flags given applied. Once the run
    has a checkpoint, flags that would change the model or its data (outside ``config.RESUMABLE``) are
    refused, naming them; --config, --preset and another --out are refused always (the run has its own).
    ``--field auto`` keeps the network the run chose when it started."""
    from ..runtime.checkpoint import list_checkpoints

    path = RunFiles(run_dir).config
    if not path.is_file():
        raise ConfigError(f"{path}: no run to resume here (its config.toml is missing); check the folder "
                          f"given to --resume, or start a new run without --resume")
    extra = [flag for flag, given in (("--config", args.config), ("--preset", getattr(args, "given_preset", False)),
                                      ("--out", args.out and Path(args.out).resolve() != run_dir.resolve()))
             if given]
    if extra:
        raise ConfigError(f"--resume {run_dir} continues with the run's own settings ({path}); drop "
                          f"{' and '.join(extra)}, or start a new run without --resume")
    trained = config_mod.load(path)
    overrides = flag_overrides(args)
    if overrides.get("model.field") == "auto":
        overrides["model.field"] = None  # the run chose its network when it started; a resume keeps it
    if args.scene:
        overrides["data.scene"] = str(Path(args.scene).resolve())
    cfg = config_mod.apply_overrides(trained, overrides)
    check_length(args, cfg, str(path))
    fixed = {key: change for key, change in config_mod.changed_settings(trained, cfg).items()
             if key not in config_mod.RESUMABLE}
    if fixed and list_checkpoints(run_dir):
        named = ", ".join(f"{FLAG_OF.get(key, key)} ({config_mod.describe_changes({key: change})})"
                          for key, change in fixed.items())
        resumable = ", ".join(FLAG_OF[key] for key in config_mod.RESUMABLE)
        raise ConfigError(f"--resume {run_dir}: {named} would change the model or its data, which a resume "
                          f"keeps; start a new run in another --out directory for that. A resume may change "
                          f"only {resumable}")
    return cfg


def cmd_train(args: argparse.Namespace) -> int:
    started = time.monotonic()  # before torch is imported: a --minutes budget counts the whole command
    from ..runtime.checkpoint import list_checkpoints
    from ..training.distributed import DistInfo
    from ..training.trainer import Trainer

    if args.resume:
        run_dir = Path(args.resume)
        cfg = resume_config(args, run_dir)
    else:
        if not args.scene and not args.config:
            raise NexError("give a scene directory (nex train SCENE) or --config FILE, or --resume RUN")
        cfg = config_from_args(args)
        run_dir = Path(args.out) if args.out else Path("runs") / f"{Path(cfg.data.scene).name}-{cfg.preset}"
        if list_checkpoints(run_dir):
            raise NexError(f"{run_dir} already holds a trained run; continue it with `nex train --resume "
                           f"{run_dir}` or pass another --out")
        check_run_folder(run_dir)
    printer = TrainPrinter(quiet=args.quiet or not DistInfo.from_env().is_main)
    # The handlers go back when training ends, so Ctrl-C interrupts the evaluation below as usual.
    with StopFlag() as stop:
        try:
            trainer = Trainer(cfg, run_dir, listeners=[printer], should_stop=stop, started=started)
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
    printer.say(msg + f"; run directory: {run_dir}")
    if not args.no_eval:
        report_evaluation(run_dir, with_lpips=True, console=printer.console)
    return 0
