"""``nex render RUN``: a trained run's held-out views as PNG and a spiral fly-through as MP4 (or PNG frames)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..io.errors import ConfigError
from ..io.run_files import RunFiles
from .console import counter_progress, stderr_console

# Inclusive ranges of the numeric flags (checked before the run is opened).
FLAG_RANGES = {"frames": (1, 100000), "fps": (1, 1000)}


def register(subparsers) -> None:
    p = subparsers.add_parser("render", help="render held-out views and a spiral fly-through video")
    p.add_argument("run", help="run directory")
    p.add_argument("--out", help="output folder (default: RUN/render)")
    p.add_argument("--frames", type=int, default=60,
                   help=f"frames of the spiral video ({_range('frames')}; default: 60)")
    p.add_argument("--fps", type=int, default=30, help=f"video frame rate ({_range('fps')}; default: 30)")
    p.add_argument("--png", action="store_true",
                   help="write the spiral as PNG frames (RUN/render/spiral_frames) instead of an MP4; needs no ffmpeg")
    p.add_argument("--no-test-views", action="store_true", help="only the video")
    p.set_defaults(func=cmd_render)


def _range(name: str) -> str:
    low, high = FLAG_RANGES[name]
    return f"{low}..{high}"


def check_flags(args: argparse.Namespace) -> None:
    """Refuse numeric flags outside their ranges (ConfigError naming the flag and its range)."""
    for name in FLAG_RANGES:
        value = getattr(args, name)
        low, high = FLAG_RANGES[name]
        if not low <= value <= high:
            raise ConfigError(f"--{name} {value}: choose {_range(name)}")


def cmd_render(args: argparse.Namespace) -> int:
    from ..export.video import render_frames, spiral_cameras, view_file_names, write_mp4, write_pngs
    from ..runtime.run import open_run

    check_flags(args)
    console = stderr_console()
    run = open_run(Path(args.run))
    out = Path(args.out) if args.out else RunFiles(run.run_dir).render
    test_ids = [] if args.no_test_views else list(run.scene.test_ids)
    # Before any rendering: two held-out photos with one stem would overwrite each other's PNG.
    names = view_file_names([run.scene.cameras[i].name or run.scene.names[i] for i in test_ids])
    with counter_progress(console, "{task.description}", "frames", transient=True) as progress:
        if test_ids:
            task = progress.add_task("held-out views", total=len(test_ids))
            frames = render_frames(run, [run.scene.cameras[i] for i in test_ids],
                                   lambda k, n: progress.update(task, completed=k))
            write_pngs(frames, out / "test_views", names)
            console.print(f"{len(frames)} held-out views in {out / 'test_views'}")
        task = progress.add_task("spiral", total=args.frames)
        frames = render_frames(run, spiral_cameras(run, args.frames), lambda k, n: progress.update(task, completed=k))
    if args.png:
        write_pngs(frames, out / "spiral_frames")
        console.print(f"spiral frames: {out / 'spiral_frames'}")
    else:
        console.print(f"spiral video: {write_mp4(frames, out / 'spiral.mp4', fps=args.fps)}")
    return 0
