"""How far the Blender add-on's default colour handling is from the MPI's own compositing, on a baked run.

The add-on converts the trained (sRGB-encoded) colours to scene-linear so the MPI sits correctly among
lit objects under the Standard view transform; Blender then over-composites the planes in linear light.
An MPI trained with ``--compositing linear`` was composited that way in training: the two are the same
(up to rounding). One trained the reference's way (``srgb``) was composited in encoded values: the two
agree wherever one plane dominates a pixel. This prints the PSNR between them at the reference view and
the held-out views, plus how opaque the MPI is:

    .venv/bin/python tools/colour_modes.py RUN [--scene SCENE]
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

from nex_core.evaluation.metrics import psnr
from nex_core.io import config as config_mod
from nex_core.io.baked import read_baked
from nex_core.io.baked.reference_render import render_baked
from nex_core.io.scene.loader import load_cameras


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run directory with baked/ (or a baked directory)")
    parser.add_argument("--scene", type=Path, default=None, help="the scene (default: the one it was baked from)")
    args = parser.parse_args(argv)
    baked_dir = args.run / "baked" if (args.run / "baked").is_dir() else args.run
    baked = read_baked(baked_dir)
    scene = args.scene or REPO / "data" / "scenes" / "shiny_demo"
    if args.scene is None and (args.run / "config.toml").is_file():
        scene = Path(config_mod.load(args.run / "config.toml").data.scene)
    cams = load_cameras(scene)
    ref = baked.info.ref_camera()
    views = [("reference", ref)] + [(cams.cameras[i].name, cams.cameras[i]) for i in cams.test_ids]
    print(f"{baked_dir}: mean opacity from the reference view "
          f"{render_baked(baked, ref)[..., 3].mean():.3f}")
    print(f"view | scene-linear (Blender, linear-light compositing) vs the MPI's own "
          f"({baked.info.compositing} compositing)")
    for name, cam in views:
        got = render_baked(baked, cam, linear_light=True)[..., :3]
        want = render_baked(baked, cam)[..., :3]  # in the space the MPI was trained in
        print(f"{name} | {psnr(got, want):.2f} dB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
