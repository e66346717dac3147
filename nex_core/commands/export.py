"""``nex export RUN --gltf out.glb``: the baked MPI as glTF 2.0 binary for game engines and glTF viewers."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export the baked MPI as glTF 2.0 (.glb) for game engines",
        description="Write RUN's baked MPI (RUN/baked, or RUN itself if it is a baked directory; baked "
        "first if missing) as a .glb: one unlit, alpha-blended quad per plane, back to front, textured with "
        "the colour the reference view sees, so any glTF viewer shows it; a camera at the reference view; "
        "and the EXT_nex_mpi extension block with the data an engine shader needs for the view-dependent "
        "colour (see docs/engines.md and nex_core/export/shaders/).")
    p.add_argument("run", help="run directory (or a baked directory holding mpi.json)")
    p.add_argument("--gltf", required=True, metavar="OUT.glb", help="output file (.glb)")
    p.add_argument("--no-extension", action="store_true",
                   help="leave out EXT_nex_mpi and its textures (reference-view planes only: a smaller file)")
    p.add_argument("--compress-level", type=int, default=6, choices=range(10), metavar="0-9",
                   help="PNG (zlib) compression of the embedded textures (default 6)")
    p.add_argument("--no-bake", action="store_true", help="stop with a message when RUN has no baked MPI")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from ..export.gltf import GLB_WHAT, export_glb
    from ..io.errors import ConfigError
    from ..io.output_paths import check_output_file
    from .baked_input import ensure_baked

    out = Path(args.gltf)
    if out.suffix.lower() != ".glb":
        raise ConfigError(f"--gltf {out}: write a binary glTF file ending in .glb")
    check_output_file(out, GLB_WHAT)  # before a bake that may take minutes
    path = Path(args.run)
    baked = ensure_baked(path, args.no_bake)
    start = time.time()
    summary = export_glb(baked, out, extension=not args.no_extension, compress_level=args.compress_level)
    print(f"wrote {out}: {summary['planes']} planes, {summary['textures']} textures, "
          f"{summary['bytes'] / 1e6:.1f} MB{'' if summary['extension'] else ' (no EXT_nex_mpi)'} "
          f"in {time.time() - start:.1f} s", file=sys.stderr)
    return 0
