"""The scene suite: forward-facing test scenes rendered on demand with Blender (Cycles, CPU), cached
outside the repository.

Usage (from the repository root, with a Python that has nex_core and ``bpy``)::

    python tools/scene_suite.py list
    python tools/scene_suite.py render --scene shiny_tabletop --size 320 240 --views 20
    python tools/scene_suite.py render --scene deep_matte --size 320 240 --views 16 --phone --seed 3
    python tools/scene_suite.py render --scene refraction --size 96 72 --views 3 --out /tmp/r
    python tools/scene_suite.py compare --capture CAPTURE --prepared SCENE --work /tmp/cmp   # needs torch

A plain render writes ``images/view_XXX.png``, ``poses_bounds.npy`` (LLFF, as the shipped scene) and
``truth.json`` (exact intrinsics, OpenCV c2w, near/far, the scene's marker points and which views see
them). ``--phone`` writes ``photos/IMG_XXXX.jpg`` (hand-held path, phone lens, exposure / white-balance
drift, noise, JPEG q85, EXIF) and ``truth.json`` with the undistorted camera, k1, k2 and each photo's draws.
Without ``--out`` the folder is ``$NEX_SUITE_CACHE`` (default ``~/.cache/nex-suite``) /
``<scene>-<W>x<H>-<variant>-<views>v-<hash>``, the hash covering the generator's source and the settings;
an existing complete folder is reused. The folder is printed on the last line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

from suite.scenes import SCENES, load  # noqa: E402


def source_hash(extra: dict) -> str:
    """sha256 over the generator's sources and ``extra`` (the settings), first 10 hex digits."""
    digest = hashlib.sha256()
    files = [TOOLS / "scene_suite.py", TOOLS / "render_demo_scene.py", TOOLS / "render_sfm_scene.py",
             *sorted((TOOLS / "suite").rglob("*.py"))]
    for path in files:
        digest.update(path.relative_to(TOOLS).as_posix().encode() + b"\0" + path.read_bytes())
    digest.update(json.dumps(extra, sort_keys=True).encode())
    return digest.hexdigest()[:10]


def cache_root() -> Path:
    return Path(os.environ.get("NEX_SUITE_CACHE") or Path.home() / ".cache" / "nex-suite")


def default_out(args: argparse.Namespace, settings: dict) -> Path:
    variant = f"phone-s{args.seed}" if args.phone else f"grid-s{args.seed}"
    w, h = args.size
    return cache_root() / f"{args.scene}-{w}x{h}-{variant}-{args.views}v-{source_hash(settings)}"


def cmd_list(_: argparse.Namespace) -> None:
    for name in SCENES:
        print(f"{name:16s} {load(name).SUMMARY}")


def cmd_render(args: argparse.Namespace) -> None:
    from suite.capture import Request, render_capture

    w, h = args.size
    if w < 32 or h < 24 or w < h:
        raise SystemExit(f"--size {w} {h}: give a landscape frame of at least 32 x 24 pixels")
    if args.views < 1:
        raise SystemExit(f"--views {args.views}: render at least one view")
    req = Request(args.scene, w, h, args.views, args.phone, args.seed, args.samples, not args.no_denoise,
                  args.threads)
    load(req.scene)  # an unknown name fails before anything is rendered
    settings = {k: v for k, v in vars(req).items() if k != "threads"}
    out = args.out.resolve() if args.out else default_out(args, settings)
    if args.out is None and (out / "truth.json").exists() and not args.force:
        print(f"[suite] cached: {out}")
        print(out)
        return
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    t0 = time.perf_counter()
    render_capture(req, partial, quiet=not args.verbose, log=print if args.verbose else lambda _: None)
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    print(f"[suite] {req.scene} {req.views} views {w}x{h} ({'phone' if req.phone else 'grid'}) in "
          f"{time.perf_counter() - t0:.1f}s")
    print(out)


def cmd_compare(args: argparse.Namespace) -> None:
    from suite.compare import compare

    result = compare(args.capture.resolve(), args.prepared.resolve(), args.work.resolve(), args.preset, args.steps)
    print(json.dumps(result, indent=1))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the scenes, one line each").set_defaults(func=cmd_list)
    r = sub.add_parser("render", help="render a scene (or reuse the cached render)")
    r.add_argument("--scene", required=True, choices=SCENES)
    r.add_argument("--size", type=int, nargs=2, default=[320, 240], metavar=("W", "H"))
    r.add_argument("--views", type=int, default=20)
    r.add_argument("--phone", action="store_true", help="a phone-like hand-held capture instead of the grid")
    r.add_argument("--seed", type=int, default=0, help="seeds the camera path / jitter and the photo draws")
    r.add_argument("--samples", type=int, default=32, help="Cycles samples per pixel")
    r.add_argument("--no-denoise", action="store_true", help="skip OpenImageDenoise (tests: tiny renders)")
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--out", type=Path, help="output folder (default: the cache, see above)")
    r.add_argument("--force", action="store_true", help="render again even if the cache has it")
    r.add_argument("--verbose", action="store_true")
    r.set_defaults(func=cmd_render)
    c = sub.add_parser("compare", help="held-out PSNR: a prepared phone capture vs the same images on true poses")
    c.add_argument("--capture", type=Path, required=True, help="a --phone render (its truth.json)")
    c.add_argument("--prepared", type=Path, required=True, help="`nex prepare` of the capture's photos/")
    c.add_argument("--work", type=Path, required=True, help="folder for the twin scene and the two runs")
    c.add_argument("--preset", default="tiny")
    c.add_argument("--steps", type=int, default=600)
    c.set_defaults(func=cmd_compare)
    args = p.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
