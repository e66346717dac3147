"""Frame rate and texture memory of the WebGL2 viewer (`nex view`) in headless Chromium (SwiftShader: the
CPU, no GPU) for a random-weight MPI of a given shape, with and without the view-dependent part.

    python tools/bench_web.py                              # 16x12 planes at the shipped scene's size (160x120 + offset 32)
    python tools/bench_web.py --width 320 --height 240     # a larger MPI
    python tools/bench_web.py --viewport 1280x960 --frames 10

Random weights make every texel of every plane partly opaque (alpha about 0.27): nothing is skipped,
the worst case for the fragment shader; a trained MPI is mostly transparent and its empty texels are
skipped. Prints one JSON line. Needs Chromium, Node.js and tools/js/node_modules (npm ci).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]

from nex_core.export.bake import bake_model, bake_to_dir, camera_span
from nex_core.export.webview import ViewerServer, viewer_config
from nex_core.io.baked import read_layout, write_baked
from nex_core.io.cameras import Camera
from nex_core.io.config import ModelConfig
from nex_core.io.mpi_geometry import MPIGeometry, plane_depths
from nex_core.model.nex_model import NexModel


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--height", type=int, default=120)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--sublayers", type=int, default=12)
    ap.add_argument("--viewport", default="640x480", help="browser viewport (the canvas fills it)")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--max-texture", type=int, default=4096)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--no-float", action="store_true", help="composite in the 8-bit canvas (viewer's float=0)")
    ap.add_argument("--occupancy", type=float, default=1.0,
                    help="fraction of each plane's 8x8-texel blocks left non-transparent (1: all, the worst "
                    "case; a trained MPI is mostly empty, e.g. 0.1)")
    args = ap.parse_args()

    torch.manual_seed(0)
    w, h = args.width, args.height
    f = 150.0 * w / 160
    ref = Camera(w, h, f, f, w / 2, h / 2, np.eye(4), "ref")
    offset = w // 5
    cfg = ModelConfig(layers=args.layers, sublayers=args.sublayers, hidden=32, mlp_layers=1, pos_level=8,
                      depth_level=4, basis_hidden=16)
    geom = MPIGeometry.from_camera(ref, offset, plane_depths(1.0, 10.0, args.layers * args.sublayers, True))
    model = NexModel(cfg, geom)
    with torch.no_grad():
        model.coeff_mlp[-1].bias[0] = 4.0
        model.coeff_mlp[-1].weight[1:] *= 3.0
    cams = []
    for dx, dy in ((-0.1, 0), (0.1, 0), (0, -0.08), (0, 0.08)):
        c2w = np.eye(4)
        c2w[:3, 3] = (dx, dy, 0)
        cams.append(ref.with_pose(c2w))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.time()
        meta = {"camera_span": camera_span(ref, cams)}
        if args.occupancy >= 1.0:
            out = bake_to_dir(model, geom, ref, cams + [ref], Path(tmp) / "baked", max_texture=args.max_texture,
                              lut_size=256, metadata=meta, compress_level=1)
        else:
            baked = bake_model(model, geom, ref, cams + [ref], lut_size=256, metadata=meta)
            rng = np.random.default_rng(0)
            d, hh, ww = baked.alpha.shape
            blocks = rng.random((d, -(-hh // 8), -(-ww // 8))) < args.occupancy
            baked.alpha *= np.repeat(np.repeat(blocks, 8, 1), 8, 2)[:, :hh, :ww]
            out = write_baked(baked, Path(tmp) / "baked", max_texture=args.max_texture, compress_level=1)
        bake_s = time.time() - start
        layout = read_layout(out)
        vw, vh = (int(x) for x in args.viewport.split("x"))
        with ViewerServer(out, config=viewer_config(out)) as server:
            job = {"url": f"{server.url}?bench={args.frames}{'&float=0' if args.no_float else ''}", "width": vw, "height": vh,
                   "read": "window.nexBench", "chromium": args.chromium, "timeout_ms": 590000}
            result = subprocess.run(["node", str(REPO / "tools/js/browser.mjs"), json.dumps(job)],
                                    capture_output=True, text=True, timeout=600)
        report = json.loads(result.stdout.strip().splitlines()[-1])
        png_bytes = layout.texture_bytes()
    if "value" not in report:
        print(json.dumps(report), file=sys.stderr)
        return 1
    bench = report["value"]
    bench.update({"image": [w, h], "offset": offset, "layers": args.layers, "sublayers": args.sublayers,
                  "atlases": {kind: sum(t.kind == kind for t in layout.textures) for kind in ("alpha", "k0", "coeff", "basis")},
                  "atlas_sizes": sorted({f"{t.width}x{t.height}" for t in layout.textures}),
                  "png_bytes": png_bytes, "occupancy": args.occupancy, "bake_s": round(bake_s, 1)})
    print(json.dumps(bench))
    return 0


if __name__ == "__main__":
    sys.exit(main())
