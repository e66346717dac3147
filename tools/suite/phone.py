"""A phone-like camera: the main camera's lens (OpenCV radial k1, k2), auto-exposure and white-balance
drift, sensor noise, sRGB, JPEG at quality 85 with EXIF. numpy and Pillow only.

Conventions: pixel centres at integer + 0.5, so a frame of W x H has its principal point at (W/2, H/2);
normalised coordinates x = (u - cx) / f. Distortion (OpenCV / COLMAP RADIAL): x_d = x_u (1 + k1 r^2 + k2 r^4)
with r^2 = |x_u|^2.

Lens values: a phone's main camera (about 26 mm equivalent, 67 degrees across a 4:3 frame) shows a mild
barrel distortion before the phone's own correction. k1 = -0.10, k2 = 0.02 moves the corners of a 4:3
frame inwards by about 5 % of the half-diagonal (11.5 px at 320 x 240): enough that ignoring it costs
pixels, mild enough to be a main camera rather than an ultra-wide; the small positive k2 flattens the
fall-off at the corners, and r (1 + k1 r^2 + k2 r^4) stays monotonic far beyond the frame, so the warp
is one-to-one.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass

import numpy as np

K1, K2 = -0.10, 0.02
FOCAL_35MM = 26  # EXIF FocalLengthIn35mmFilm is an integer number of millimetres
SENSOR_DIAGONAL_MM = 9.5  # a 1/1.7" class sensor: sets the EXIF FocalLength (crop factor 4.55)
FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)
JPEG_QUALITY = 85
EV_RANGE = 1.0  # auto-exposure drift, +- EV per photo
WB_RANGE = 0.08  # white balance drift: red and blue gains within exp(+-WB_RANGE)
FULL_WELL = 4000.0  # photo-electrons at linear value 1 and unity gain (shot noise)
READ_NOISE = 0.0015  # read noise, in linear units at unity gain
TARGET_MEAN = 0.18  # auto-exposure meters the frame's mean linear luminance to this
GAIN_LIMITS = (0.25, 16.0)
ORIENTATIONS = (1, 3, 6, 8)  # EXIF orientations drawn per photo (the pixels are stored to match)


def focal_px_for(width: int, height: int, focal_35mm: float = FOCAL_35MM) -> float:
    """The focal in pixels whose 35 mm equivalent (by the diagonal) is ``focal_35mm``."""
    return focal_35mm * math.hypot(width, height) / FULL_FRAME_DIAGONAL_MM


def distort(xy: np.ndarray, k1: float = K1, k2: float = K2) -> np.ndarray:
    """Undistorted normalised coordinates [..., 2] -> distorted ones."""
    r2 = np.sum(xy * xy, axis=-1, keepdims=True)
    return xy * (1.0 + k1 * r2 + k2 * r2 * r2)


def undistort(xy_d: np.ndarray, k1: float = K1, k2: float = K2, iterations: int = 20) -> np.ndarray:
    """Distorted normalised coordinates [..., 2] -> undistorted ones (Newton on the radius)."""
    rd = np.linalg.norm(xy_d, axis=-1, keepdims=True)
    ru = rd.copy()
    for _ in range(iterations):
        f = ru * (1.0 + k1 * ru ** 2 + k2 * ru ** 4) - rd
        ru = ru - f / (1.0 + 3.0 * k1 * ru ** 2 + 5.0 * k2 * ru ** 4)
    scale = np.where(rd > 0, ru / np.where(rd > 0, rd, 1.0), 1.0)
    return xy_d * scale


def wide_frame(width: int, height: int, focal: float, k1: float = K1, k2: float = K2,
               margin_px: int = 3) -> tuple[int, int]:
    """Size of the pinhole frame (same focal, centred) that covers every pixel of the distorted frame."""
    u = np.arange(width + 1, dtype=np.float64)
    v = np.arange(height + 1, dtype=np.float64)
    border = np.concatenate([np.stack([u, np.zeros_like(u)], 1), np.stack([u, np.full_like(u, height)], 1),
                             np.stack([np.zeros_like(v), v], 1), np.stack([np.full_like(v, width), v], 1)])
    xy = undistort((border - [width / 2.0, height / 2.0]) / focal, k1, k2)
    half = np.abs(xy).max(0) * focal + margin_px
    return 2 * int(math.ceil(half[0])), 2 * int(math.ceil(half[1]))


def bilinear(image: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Sample ``image`` [H, W, C] at continuous pixel coordinates (centres at +0.5), edges clamped."""
    h, w = image.shape[:2]
    x = np.clip(u - 0.5, 0.0, w - 1.0)
    y = np.clip(v - 0.5, 0.0, h - 1.0)
    x0 = np.minimum(np.floor(x).astype(np.int64), w - 2)
    y0 = np.minimum(np.floor(y).astype(np.int64), h - 2)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def apply_lens(wide: np.ndarray, width: int, height: int, focal: float, k1: float = K1,
               k2: float = K2) -> np.ndarray:
    """The distorted W x H frame seen through the lens, from a centred pinhole render ``wide`` (same focal)."""
    hw, ww = wide.shape[:2]
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    xy_d = np.stack([(u - width / 2.0) / focal, (v - height / 2.0) / focal], -1)
    xy_u = undistort(xy_d, k1, k2)
    return bilinear(wide, xy_u[..., 0] * focal + ww / 2.0, xy_u[..., 1] * focal + hw / 2.0)


def project(points_cam: np.ndarray, focal: float, cx: float, cy: float, k1: float = 0.0,
            k2: float = 0.0) -> np.ndarray:
    """Camera-frame points [N, 3] (OpenCV axes) -> pixel coordinates [N, 2] through the radial lens."""
    xy = distort(points_cam[:, :2] / points_cam[:, 2:3], k1, k2)
    return xy * focal + [cx, cy]


# --------------------------------------------------------------------------------------------------
# The photo pipeline


@dataclass
class Shot:
    """One photo's draws: exposure, white balance, stored orientation, noise seed."""

    ev: float  # auto-exposure drift in EV around the metered exposure
    gain: float  # the linear gain applied (metered x 2^ev)
    wb: tuple[float, float, float]  # per-channel gains (green = 1)
    orientation: int  # EXIF orientation tag written; the pixels are stored so that it makes them upright
    noise_seed: int

    def to_dict(self) -> dict:
        return asdict(self) | {"wb": list(self.wb)}


def draw_shot(rng: np.random.Generator, linear: np.ndarray) -> Shot:
    """Meter ``linear`` [H, W, 3] and draw this photo's exposure drift, white balance and orientation."""
    lum = linear @ np.array([0.2126, 0.7152, 0.0722])
    metered = float(np.clip(TARGET_MEAN / max(float(lum.mean()), 1e-6), *GAIN_LIMITS))
    ev = float(rng.uniform(-EV_RANGE, EV_RANGE))
    wb_r, wb_b = np.exp(rng.uniform(-WB_RANGE, WB_RANGE, 2))
    return Shot(ev=ev, gain=metered * 2.0 ** ev, wb=(float(wb_r), 1.0, float(wb_b)),
                orientation=int(rng.choice(ORIENTATIONS)), noise_seed=int(rng.integers(2 ** 31)))


def develop(linear: np.ndarray, shot: Shot) -> np.ndarray:
    """Linear scene light -> 8-bit sRGB: gain and white balance, shot + read noise (both grow with the
    gain, as a sensor's ISO amplifies them), clipping, the sRGB curve."""
    y = linear * (shot.gain * np.asarray(shot.wb))
    variance = shot.gain * np.maximum(y, 0.0) / FULL_WELL + (shot.gain * READ_NOISE) ** 2
    noise = np.random.default_rng(shot.noise_seed).standard_normal(y.shape)
    y = np.clip(y + noise * np.sqrt(variance), 0.0, 1.0)
    return np.round(srgb_encode(y) * 255.0).astype(np.uint8)


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """The sRGB transfer function (what Blender's Standard view transform applies)."""
    x = np.clip(linear, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)


def srgb_decode(encoded: np.ndarray) -> np.ndarray:
    """Inverse of :func:`srgb_encode`."""
    x = np.clip(encoded, 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4))


# Pillow's transpose that stores an upright image so that applying EXIF orientation N restores it.
_STORE = {1: None, 3: "ROTATE_180", 6: "ROTATE_90", 8: "ROTATE_270"}


def jpeg_bytes(upright: np.ndarray, orientation: int, focal_px: float) -> bytes:
    """JPEG (quality 85, 4:2:0) of ``upright`` stored for EXIF ``orientation``, with the focal length tags."""
    from PIL import Image

    im = Image.fromarray(upright)
    if _STORE[orientation] is not None:
        im = im.transpose(getattr(Image.Transpose, _STORE[orientation]))
    h, w = upright.shape[:2]
    exif = Image.Exif()
    exif[0x010F] = "NeX scene suite"  # Make
    exif[0x0110] = "phone-like main camera"  # Model
    exif[0x0112] = orientation
    sub = exif.get_ifd(0x8769)
    f35 = focal_px * FULL_FRAME_DIAGONAL_MM / math.hypot(w, h)
    sub[0xA405] = int(round(f35))  # FocalLengthIn35mmFilm
    sub[0x920A] = round(f35 * SENSOR_DIAGONAL_MM / FULL_FRAME_DIAGONAL_MM, 3)  # FocalLength (mm)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling="4:2:0", exif=exif.tobytes())
    return buf.getvalue()
