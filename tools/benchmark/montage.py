"""A picture of one held-out view for people who would rather look: ground truth | render | error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ERROR_GAIN = 4.0  # |render - truth| is shown this many times brighter: small errors stay visible


def error_image(render: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The per-pixel mean absolute error over the channels, times :data:`ERROR_GAIN`, as a grey uint8 image."""
    diff = np.abs(render.astype(np.float32) - truth.astype(np.float32)).mean(axis=-1) * ERROR_GAIN
    grey = np.clip(diff, 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def montage(truth_png: Path, render_png: Path, out: Path, title: str, scale: int = 2) -> Path:
    """Write ``out``: the three panels side by side, each ``scale`` times enlarged (nearest neighbour, so
    pixels stay pixels), under a caption line ``title``."""
    truth = np.asarray(Image.open(truth_png).convert("RGB"))
    render = np.asarray(Image.open(render_png).convert("RGB"))
    if truth.shape != render.shape:
        raise ValueError(f"{render_png} is {render.shape[1]}x{render.shape[0]} but {truth_png} is "
                         f"{truth.shape[1]}x{truth.shape[0]}")
    panels = [truth, render, error_image(render, truth)]
    h, w = truth.shape[:2]
    gap, caption = 4, 16
    sheet = Image.new("RGB", (3 * w * scale + 2 * gap, h * scale + 2 * caption), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    names = ["ground truth", "render", f"|error| x{ERROR_GAIN:g}"]
    for k, (panel, name) in enumerate(zip(panels, names)):
        x = k * (w * scale + gap)
        sheet.paste(Image.fromarray(panel).resize((w * scale, h * scale), Image.NEAREST), (x, caption))
        draw.text((x + 2, 2), name, fill=(0, 0, 0), font=font)
    draw.text((2, caption + h * scale + 2), title, fill=(0, 0, 0), font=font)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, optimize=True)
    return out
