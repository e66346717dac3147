"""Bake time, peak memory and texture bytes for a random-weight model of a given MPI shape.

    python tools/bench_bake.py                      # the paper shape: 1008x756 + offset 200, 16x12 planes, hidden 384
    python tools/bench_bake.py --planes-only 2      # time F_theta on 2 planes only and extrapolate
    python tools/bench_bake.py --hidden 16 --mlp-layers 1   # the whole streaming path with a cheap MLP

Prints one JSON line. Peak memory is the process's maximum resident set size (VmHWM), so run one
measurement per process.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import nex_core.export.bake as bake_mod
from benchmark.measure import maxrss_bytes
from nex_core.export.bake import _bake_planes, bake_to_dir, chunk_for
from nex_core.io.baked import read_layout
from nex_core.io.cameras import Camera
from nex_core.io.config import ModelConfig
from nex_core.io.mpi_geometry import MPIGeometry, plane_depths
from nex_core.model.nex_model import NexModel

timer = {"f_theta": 0.0}
_plane_values = bake_mod.plane_values


def _timed_plane_values(*args, **kwargs):
    start = time.time()
    out = _plane_values(*args, **kwargs)
    timer["f_theta"] += time.time() - start
    return out


bake_mod.plane_values = _timed_plane_values  # time F_theta apart from encoding and PNG writing


class _Discard:
    def add_alpha(self, plane, alpha):
        pass

    def add_layer(self, layer, k0, coeffs):
        pass

    def add_basis_lut(self, lut):
        pass


class _StopAfter(Exception):
    pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=1008)
    p.add_argument("--height", type=int, default=756)
    p.add_argument("--offset", type=int, default=200)
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--sublayers", type=int, default=12)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--mlp-layers", type=int, default=4)
    p.add_argument("--max-texture", type=int, default=4096)
    p.add_argument("--compress-level", type=int, default=3)
    p.add_argument("--planes-only", type=int, default=0, help="evaluate only this many planes (no files)")
    p.add_argument("--out", help="baked directory (default: a temporary one)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = ModelConfig(layers=args.layers, sublayers=args.sublayers, hidden=args.hidden, mlp_layers=args.mlp_layers)
    ref = Camera(args.width, args.height, 0.8 * args.width, 0.8 * args.width, args.width / 2, args.height / 2,
                 np.eye(4))
    geom = MPIGeometry.from_camera(ref, args.offset, plane_depths(1.0, 20.0, args.layers * args.sublayers, True))
    torch.manual_seed(0)
    model = NexModel(cfg, geom)
    result = {"shape": f"{geom.mpi_width}x{geom.mpi_height} x {geom.n_planes} planes", "hidden": args.hidden,
              "mlp_layers": args.mlp_layers, "threads": torch.get_num_threads()}
    start = time.time()
    if args.planes_only:
        def stop(done, total):
            if done >= args.planes_only:
                raise _StopAfter
        try:
            _bake_planes(model, _Discard(), chunk_for(model, 256e6), stop)
        except _StopAfter:
            pass
        per_plane = (time.time() - start) / args.planes_only
        result.update(seconds_per_plane=round(per_plane, 2),
                      extrapolated_seconds=round(per_plane * geom.n_planes))
    else:
        cams = [ref.with_pose(np.array([[1, 0, 0, x], [0, 1, 0, y], [0, 0, 1, 0], [0, 0, 0, 1.0]]))
                for x in (-0.2, 0.2) for y in (-0.1, 0.1)]
        out = Path(args.out) if args.out else Path(tempfile.mkdtemp()) / "baked"
        bake_to_dir(model, geom, ref, cams + [ref], out, max_texture=args.max_texture,
                    compress_level=args.compress_level)
        layout = read_layout(out)
        result.update(seconds=round(time.time() - start, 1), textures=len(layout.textures),
                      texture_bytes=layout.texture_bytes(),
                      largest_texture=max((t.width, t.height) for t in layout.textures), out=str(out),
                      seconds_in_f_theta=round(timer["f_theta"], 1))
    result["peak_rss_mb"] = round(maxrss_bytes() / 2 ** 20)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
