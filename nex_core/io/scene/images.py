"""Reading scene photos robustly into float32 RGB arrays. Torch-free (numpy + pillow).

* Formats: PNG and JPEG (see :data:`IMAGE_EXTENSIONS`). The EXIF orientation tag is applied
  (``ImageOps.exif_transpose``), so a portrait phone photo comes out upright.
* Channels: grayscale is repeated to RGB; palette images are expanded; an alpha channel is dropped
  (the RGB under transparent pixels is kept as stored, often black) and a warning is logged.
* Bit depth: 8-bit data is divided by 255 and 16-bit grayscale by 65535. Pillow decodes 16-bit *RGB*
  PNGs to 8 bits per channel (it keeps the high byte), so those lose their low byte.
* Resizing (:func:`resize_image`) works on the float data, channel by channel, with pillow:
  **BOX** when shrinking (exact area averaging, the same as OpenCV's ``INTER_AREA`` that the NeX paper
  used; no ringing) and **BICUBIC** when enlarging, clipped to [0, 1]. Pillow maps pixel centres
  ``(i + 0.5) * scale``, the half-pixel convention :meth:`Camera.resized` assumes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import ImageError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_ORIENTATION_TAG = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_FIX = "re-export or re-copy the photo, or remove it from the scene (and from the camera poses)"


def is_image_file(path: Path) -> bool:
    """Whether ``path`` names a photo the loaders read (by extension, case-insensitive; no dot-files)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_images(folder: Path) -> list[Path]:
    """Photos directly inside ``folder``, sorted by file name (plain string order, as LLFF does)."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_file() and is_image_file(p)), key=lambda p: p.name)


def target_size(width: int, height: int, new_width: int | None) -> tuple[int, int]:
    """Size after resizing ``width x height`` to ``new_width`` (height by aspect ratio, rounded).

    Uses the same rounding as :meth:`nex_core.io.cameras.Camera.resized`.
    """
    if new_width is None or new_width == width:
        return width, height
    if new_width < 1:
        raise ImageError(f"requested image width {new_width} must be a positive number of pixels")
    new_height = int(round(height * new_width / width))
    return int(new_width), max(1, new_height)


def open_image(path: Path, noun: str = "image", fix: str = _FIX,
               missing: str = "restore it, or remove it from the camera poses"):
    """Open ``path`` with pillow, turning every failure into an ImageError that names the file (as a
    ``noun``: "image", "photo") and says what to do (``fix``)."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise ImageError(f"{noun} {path} does not exist: {missing}")
    if path.stat().st_size == 0:
        raise ImageError(f"{noun} {path} is empty (0 bytes): {fix}")
    try:
        return Image.open(path)
    except UnidentifiedImageError as exc:
        raise ImageError(f"{noun} {path} is not a readable PNG or JPEG: {fix}") from exc
    except Exception as exc:  # pillow raises OSError, SyntaxError, ValueError ... for corrupt headers
        raise ImageError(f"{noun} {path} cannot be opened ({exc}): {fix}") from exc


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of the photo as :func:`read_image` returns it (EXIF orientation applied).

    Reads only the header.
    """
    with open_image(path) as im:
        width, height = im.size
        try:
            orientation = im.getexif().get(_ORIENTATION_TAG, 1)
        except Exception:  # a broken EXIF block: read_image will ignore it too
            orientation = 1
    if orientation in _TRANSPOSING_ORIENTATIONS:
        return height, width
    return width, height


def _to_float_rgb(im) -> tuple[np.ndarray, bool]:
    """A decoded pillow image -> (float32 [H, W, 3] in [0, 1], whether an alpha channel was dropped)."""
    mode = im.mode
    had_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in im.info)
    if mode.startswith("I;16") or mode == "I":
        data = np.asarray(im, dtype=np.float32) / 65535.0
    elif mode == "F":
        data = np.asarray(im, dtype=np.float32)
    elif mode in ("L", "1", "LA", "La"):
        data = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    else:  # RGB, RGBA, P, PA, CMYK, YCbCr, LAB, ...
        if mode in ("P", "PA"):
            im = im.convert("RGBA")
        data = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    if data.ndim == 2:
        data = np.repeat(data[:, :, None], 3, axis=2)
    return np.clip(data, 0.0, 1.0, out=data), had_alpha


def _decode(path: Path) -> tuple[np.ndarray, bool]:
    """Decode one photo fully: (float32 RGB [H, W, 3], alpha dropped?)."""
    from PIL import ImageOps

    with open_image(path) as im:
        try:
            im.load()
            try:
                upright = ImageOps.exif_transpose(im)
            except Exception:  # a malformed EXIF block should not make a good photo unreadable
                upright = im
            return _to_float_rgb(upright)
        except ImageError:
            raise
        except Exception as exc:  # truncated data, bad CRC, broken zlib stream, decompression bomb ...
            raise ImageError(f"image {path} cannot be decoded, it is probably truncated or corrupt "
                             f"({exc}): {_FIX}") from exc


def resize_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize float32 [H, W, C] data to ``width x height`` (BOX when shrinking, BICUBIC when enlarging)."""
    from PIL import Image

    h0, w0 = image.shape[:2]
    if (w0, h0) == (width, height):
        return image.astype(np.float32, copy=False)
    shrinking = width <= w0 and height <= h0
    method = Image.Resampling.BOX if shrinking else Image.Resampling.BICUBIC
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(image[:, :, c], dtype=np.float32))
                           .resize((width, height), method)) for c in range(image.shape[2])]
    out = np.stack(channels, axis=2).astype(np.float32, copy=False)
    return out if shrinking else np.clip(out, 0.0, 1.0, out=out)


def read_image(path: Path | str, width: int | None = None) -> np.ndarray:
    """One photo as float32 [H, W, 3] in [0, 1], optionally resized to ``width`` (height by aspect)."""
    path = Path(path)
    data, had_alpha = _decode(path)
    if had_alpha:
        log.warning("%s has an alpha channel; it was dropped", path)
    w, h = target_size(data.shape[1], data.shape[0], width)
    return resize_image(data, w, h)


def _mixed_size_error(first: Path, first_size: tuple[int, int], path: Path,
                      size: tuple[int, int]) -> ImageError:
    return ImageError(
        f"photos have different sizes: {first} is {first_size[0]}x{first_size[1]} but {path} is "
        f"{size[0]}x{size[1]}. All photos of a scene must come from one camera at one resolution: "
        "remove or re-export the odd ones (and their poses), or re-run `nex prepare`.")


def load_images(paths: list[Path], width: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Read photos that must all share one size into float32 [N, H, W, 3], resized to ``width``.

    Returns the stack and the (width, height) found on disk. Raises ImageError naming a file of each
    size when sizes differ, and naming any unreadable file.
    """
    if not paths:
        raise ImageError("no photos to load")
    stack: np.ndarray | None = None
    disk_size = (0, 0)
    n_alpha = 0
    for i, path in enumerate(paths):
        data, had_alpha = _decode(path)
        n_alpha += had_alpha
        size = (data.shape[1], data.shape[0])
        if stack is None:
            disk_size = size
            w, h = target_size(*size, width)
            stack = np.empty((len(paths), h, w, 3), dtype=np.float32)
        elif size != disk_size:
            raise _mixed_size_error(paths[0], disk_size, path, size)
        stack[i] = resize_image(data, stack.shape[2], stack.shape[1])
    if n_alpha:
        log.warning("%d of %d photos have an alpha channel; it was dropped (e.g. %s)",
                    n_alpha, len(paths), paths[0].parent)
    return stack, disk_size
