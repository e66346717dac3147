"""``nex bake RUN``: bake a trained run into textures (``RUN/baked``: mpi.json + PNG atlases)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .console import counter_progress, stderr_console

MAX_TEXTURE = 4096  # the default atlas side: every GPU takes it
LUT_SIZE = 256
COMPRESS_LEVEL = 3


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bake", help="bake a trained run into textures for real-time renderers",
        description="Evaluate the trained networks once over the whole MPI and write the result as 8-bit "
        "PNG atlases plus mpi.json (alpha per plane; base colour and view-dependent coefficients per layer; "
        "the basis as a look-up table over the training views' directions). The baked directory is what "
        "the Blender import, the glTF and web exports read.")
    p.add_argument("run", help="run directory (trained with `nex train`)")
    p.add_argument("--out", help="output directory (default: RUN/baked); replaced only once complete")
    p.add_argument("--max-texture", type=int, default=MAX_TEXTURE, choices=[4096, 8192, 16384],
                   help="largest atlas side in texels (default: 4096, which every GPU supports)")
    p.add_argument("--lut-size", type=int, default=LUT_SIZE,
                   help="basis look-up table resolution per side (default: 256)")
    p.add_argument("--compress-level", type=int, default=COMPRESS_LEVEL, choices=range(10), metavar="0-9",
                   help="PNG (zlib) compression: 1 fastest, 9 smallest (default: 3)")
    p.add_argument("--device", help="torch device for the networks (default: the run's own setting)")
    p.set_defaults(func=cmd_bake)


def cmd_bake(args: argparse.Namespace) -> int:
    from ..io.config_ranges import DEVICE_PATTERN
    from ..io.errors import ConfigError

    if not 2 <= args.lut_size <= 4096:
        raise ConfigError(f"--lut-size {args.lut_size}: choose between 2 and 4096 (default 256)")
    if args.device is not None and not DEVICE_PATTERN.match(args.device):
        raise ConfigError(f"--device {args.device!r}: choose auto, cpu, cuda or cuda:N (default: the run's own)")
    bake_and_report(Path(args.run), Path(args.out) if args.out else None, max_texture=args.max_texture,
                    lut_size=args.lut_size, compress_level=args.compress_level, device=args.device)
    return 0


def bake_and_report(run_dir: Path, out: Path | None = None, max_texture: int = MAX_TEXTURE,
                    lut_size: int = LUT_SIZE, compress_level: int = COMPRESS_LEVEL,
                    device: str | None = None) -> Path:
    """Bake a run (into ``out``, default RUN/baked) with a progress bar, print what was written and return
    the baked directory."""
    from ..export.bake import bake_run
    from ..io.baked import MANIFEST, read_layout
    from ..io.baked.writer import check_baked_output
    from ..io.run_files import RunFiles
    from ..runtime.run import open_run

    console = stderr_console(soft_wrap=True)
    check_baked_output(out if out is not None else RunFiles(run_dir).baked)  # before loading the run
    run = open_run(run_dir, device=device)
    start = time.time()
    with counter_progress(console, "bake", "planes", transient=True) as progress:
        task = progress.add_task("bake", total=run.geom.n_planes)
        out = bake_run(run, out, max_texture=max_texture, lut_size=lut_size, compress_level=compress_level,
                       progress=lambda done, total: progress.update(task, completed=done))
    seconds = time.time() - start
    layout = read_layout(out, verify=False)  # just written: its checksums are fresh
    info = layout.info
    console.print(f"baked {run.run_dir} (step {run.step}) in {seconds:.1f} s -> {out}")
    console.print(f"  MPI: {info.n_planes} planes ({info.layers} layers x {info.sublayers} sublayers) of "
                  f"{info.mpi_width}x{info.mpi_height} texels, depths {info.depths[0]:.3g}..{info.depths[-1]:.3g}")
    console.print(f"  basis: {info.n_basis} {info.basis_kind} functions, LUT {info.lut_width}x{info.lut_height} over "
                  f"vx {info.lut_vx[0]:.3f}..{info.lut_vx[1]:.3f}, vy {info.lut_vy[0]:.3f}..{info.lut_vy[1]:.3f}")
    for kind in ("alpha", "k0", "coeff", "basis"):
        specs = [t for t in layout.textures if t.kind == kind]
        size = sum(layout.path(t).stat().st_size for t in specs)
        dims = sorted({f"{t.width}x{t.height}" for t in specs})
        console.print(f"  {kind:5s}: {len(layout.tiles[kind]):4d} tiles in {len(specs)} atlas(es) "
                      f"({', '.join(dims)}), {_size(size)}")
    total = layout.texture_bytes() + (out / MANIFEST).stat().st_size
    console.print(f"  total: {len(layout.textures)} textures, {_size(total)}")
    return out


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"
