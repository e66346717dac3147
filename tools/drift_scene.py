"""Copy a scene with a seeded exposure and white-balance drift per photo, like a phone's auto exposure.

    .venv/bin/python tools/drift_scene.py SCENE OUT [--seed 0] [--ev 1] [--wb 0.25] [--bias 0]
                                         [--space linear|srgb] [--keep-holdout N]

Each photo gets an exposure ``2**e`` with ``e`` uniform in [-ev, ev], white-balance factors ``2**w`` for red
and blue with ``w`` uniform in [-wb, wb] (green 1), and a bias uniform in [-bias, bias] per channel. With
``--space linear`` (default) the gain acts in linear light, as a camera's exposure does: the sRGB pixel is
decoded, multiplied, clipped to [0, 1] and encoded again, then the bias is added. With ``--space srgb`` the
gain and bias act on the sRGB values directly (``clip(gain * c + bias)``), which is exactly the affine form
the appearance compensation learns. ``--keep-holdout N`` leaves every N-th photo (in file-name order, as
the scene loader's held-out views with ``data.holdout = N``) unchanged. Everything else in SCENE is copied
as it is; OUT/drift.json records every photo's gain and bias.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(np.maximum(c, 0.0031308), 1 / 2.4) - 0.055)


def apply_drift(image: np.ndarray, gain: np.ndarray, bias: np.ndarray, space: str) -> np.ndarray:
    """One photo's drift on a float [H, W, 3] sRGB image in [0, 1]."""
    if space == "linear":
        out = linear_to_srgb(np.clip(srgb_to_linear(image) * gain, 0.0, 1.0)) + bias
    elif space == "srgb":
        out = image * gain + bias
    else:
        raise ValueError(f"space must be linear or srgb, not {space!r}")
    return np.clip(out, 0.0, 1.0)


def draw_drifts(names: list[str], seed: int, ev: float, wb: float, bias: float,
                keep: set[str] = frozenset()) -> dict[str, dict[str, list[float]]]:
    """``{name: {"gain": [3], "bias": [3]}}`` drawn from ``seed``; the photos in ``keep`` get the identity."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in names:
        e = rng.uniform(-ev, ev)
        w = rng.uniform(-wb, wb, size=2)
        b = rng.uniform(-bias, bias, size=3)
        gain = 2.0 ** (e + np.array([w[0], 0.0, w[1]]))
        if name in keep:
            gain, b = np.ones(3), np.zeros(3)
        out[name] = {"gain": [float(x) for x in gain], "bias": [float(x) for x in b]}
    return out


def image_names(scene: Path) -> list[str]:
    folder = scene / "images"
    if not folder.is_dir():
        raise SystemExit(f"{scene}: no images/ folder; pass a scene directory")
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def write_drifted_scene(scene: Path, out: Path, drifts: dict[str, dict[str, list[float]]],
                        space: str = "linear") -> Path:
    """Copy ``scene`` to ``out`` (which must not exist) with every photo named in ``drifts`` drifted."""
    scene, out = Path(scene), Path(out)
    if out.exists():
        raise SystemExit(f"{out}: already exists; choose a new output folder")
    shutil.copytree(scene, out)
    for name, d in drifts.items():
        if d["gain"] == [1.0, 1.0, 1.0] and d["bias"] == [0.0, 0.0, 0.0]:
            continue  # kept as copied, byte for byte
        path = out / "images" / name
        with Image.open(path) as im:
            if im.mode not in ("RGB", "RGBA", "L"):
                raise SystemExit(f"{path}: {im.mode} images are not supported (8-bit RGB only)")
            pixels = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
        drifted = apply_drift(pixels, np.asarray(d["gain"]), np.asarray(d["bias"]), space)
        # Same name and format, so the poses files still match (a JPEG adds a little error of its own).
        Image.fromarray(np.rint(drifted * 255.0).astype(np.uint8)).save(path, quality=98)
    (out / "drift.json").write_text(json.dumps({"space": space, "photos": drifts}, indent=2), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene", type=Path, help="scene directory (images/ + poses)")
    parser.add_argument("out", type=Path, help="new scene directory to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ev", type=float, default=1.0, help="exposure range in stops (+-)")
    parser.add_argument("--wb", type=float, default=0.25, help="white-balance range of red and blue in stops (+-)")
    parser.add_argument("--bias", type=float, default=0.0, help="per-channel bias range (+-, sRGB units)")
    parser.add_argument("--space", choices=("linear", "srgb"), default="linear")
    parser.add_argument("--keep-holdout", type=int, default=0, metavar="N",
                        help="leave every N-th photo unchanged (the held-out views of data.holdout = N)")
    args = parser.parse_args(argv)
    names = image_names(args.scene)
    keep = {n for i, n in enumerate(names) if args.keep_holdout and i % args.keep_holdout == 0}
    drifts = draw_drifts(names, args.seed, args.ev, args.wb, args.bias, keep)
    write_drifted_scene(args.scene, args.out, drifts, args.space)
    print(f"wrote {args.out} ({len(names) - len(keep)} of {len(names)} photos drifted, {args.space} space)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
