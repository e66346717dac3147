"""``nex render RUN``: a trained run's held-out views as PNG and a spiral fly-through as MP4."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..io.run_files import RunFiles
from .console import counter_progress, stderr_console


def register(subparsers) -> None:
    p = subparsers.add_parser("render", help="render held-out views and a spiral fly-through video")
    p.add_argument("run", help="run directory")
    p.add_argument("--out", help="output folder (default: RUN/render)")
    p.add_argument("--frames", type=int, default=60, help="frames of the spiral video (default: 60)")
    p.add_argument("--fps", type=int, default=30, help="video frame rate (default: 30)")
    p.add_argument("--png", action="store_true", help="also write the spiral's frames as PNG")
    p.add_argument("--no-test-views", action="store_true", help="only the video")
    p.set_defaults(func=cmd_render)


def cmd_render(args: argparse.Namespace) -> int:
    from ..export.video import render_frames, spiral_cameras, write_mp4, write_pngs
    from ..runtime.run import open_run

    console = stderr_console()
    run = open_run(Path(args.run))
    out = Path(args.out) if args.out else RunFiles(run.run_dir).render
    with counter_progress(console, "{task.description}", "frames", transient=True) as progress:
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
