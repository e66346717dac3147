"""``nex cameras SCENE``: a scene's cameras as ``nex train`` sets them up (format, split, reference view),
as text or, with ``--json``, as the answer the Blender add-on reads (:mod:`nex_core.io.answers.cameras`)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "cameras", help="list a scene's cameras (format, held-out views, reference view)",
        description="Read a scene folder's camera poses the way `nex train` does (same format choice, checks, "
        "split and reference view) without decoding the photos, and print them: one line per view, or with "
        "--json one JSON document (what the Blender add-on reads when its own Python lacks pycolmap).")
    p.add_argument("scene", help="scene directory")
    p.add_argument("--holdout", type=int, default=8, help="hold out every N-th view (0: none; default: 8)")
    p.add_argument("--ref-image", default=None, help="reference view (image file name or stem)")
    p.add_argument("--json", action="store_true", help="print the cameras as JSON")
    p.set_defaults(func=cmd_cameras)


def cmd_cameras(args: argparse.Namespace) -> int:
    from ..io.answers import cameras as answer
    from ..io.scene.loader import load_cameras

    views = load_cameras(Path(args.scene), holdout=args.holdout, ref_image=args.ref_image or None)
    if args.json:
        print(answer.encode(views))
        return 0
    test = set(views.test_ids)
    w, h = views.size
    print(f"{views.root}: {views.format}, {len(views.names)} views ({len(test)} held out), {w}x{h}, "
          f"reference {views.names[views.ref_id]}")
    for i, (name, cam) in enumerate(zip(views.names, views.cameras)):
        near, far = float(views.near[i]), float(views.far[i])
        bounds = f"{near:.3f}..{far:.3f}" if math.isfinite(near) and math.isfinite(far) else "no bounds"
        mark = "ref " if i == views.ref_id else ("test" if i in test else "    ")
        print(f"{mark} {name}  fx {cam.fx:.2f} fy {cam.fy:.2f} cx {cam.cx:.2f} cy {cam.cy:.2f}  "
              f"centre {' '.join(f'{v:.3f}' for v in cam.center)}  depth {bounds}")
    return 0
