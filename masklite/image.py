"""Bytes -> RGB uint8 array, safely.

The pixel count is checked from the header before any pixel is decoded (decompression bombs), EXIF
orientation is applied, and every Pillow mode we accept (grey, RGBA, palette, CMYK, 16-bit) ends as RGB.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP"})
DEFAULT_MAX_PIXELS = 40_000_000
ORIENTATION_TAG = 0x0112


class ImageError(ValueError):
    """Base for image problems a client can fix."""


class UnsupportedImageType(ImageError):
    pass


class ImageTooLarge(ImageError):
    pass


class UndecodableImage(ImageError):
    pass


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode JPEG/PNG/WebP/BMP bytes into an RGB uint8 array of shape (H, W, 3)."""
    return decode_image_reduced(data, max_pixels)[0]


def decode_image_reduced(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """Like decode_image, but a JPEG may be decoded at 1/2, 1/4 or 1/8 size (libjpeg's DCT scaling), the
    smallest whose longer side is still >= `min_side`; returns the RGB array and the image's full
    (width, height) after EXIF orientation, to map boxes back. Other formats decode at full size.

    A 12 MP phone photo decoded at 1/4 costs a fraction of the full decode, and the detector and the
    face crops never see more pixels than that anyway (the caller picks `min_side`).
    """
    if not data:
        raise UndecodableImage("empty image: 0 bytes")
    with warnings.catch_warnings():
        # Pillow's own bomb guard warns/raises at its global limit; ours is explicit and per call.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))  # reads the header only
        except UnidentifiedImageError as exc:
            raise UnsupportedImageType("not a recognised image; send JPEG, PNG, WebP or BMP") from exc
        except Image.DecompressionBombError as exc:
            raise ImageTooLarge(str(exc)) from exc
        except Exception as exc:  # noqa: BLE001 - any parser failure is the client's bad bytes
            raise UndecodableImage(f"cannot read image header: {exc}") from exc
        if img.format not in SUPPORTED_FORMATS:
            raise UnsupportedImageType(
                f"image format {img.format} is not supported; send JPEG, PNG, WebP or BMP"
            )
        width, height = img.size
        if width < 1 or height < 1:
            raise UndecodableImage(f"image has no pixels ({width}x{height})")
        if width * height > max_pixels:
            raise ImageTooLarge(
                f"image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}"
            )
        if getattr(img, "is_animated", False):
            raise UnsupportedImageType("animated images are not supported; send one frame")
        try:
            if min_side is not None and img.format == "JPEG":
                _draft(img, min_side)
            # EXIF orientations 5-8 turn the image a quarter: the full size swaps its sides too
            turned = img.getexif().get(ORIENTATION_TAG) in (5, 6, 7, 8)
            img.load()
            ImageOps.exif_transpose(img, in_place=True)  # in place: no copy of an upright image
            return to_rgb_array(img), ((height, width) if turned else (width, height))
        except Image.DecompressionBombError as exc:
            raise ImageTooLarge(str(exc)) from exc
        except Exception as exc:  # noqa: BLE001
            raise UndecodableImage(f"image data is corrupt or truncated: {exc}") from exc


def _draft(img: Image.Image, min_side: int) -> None:
    """Ask libjpeg for the smallest DCT scale whose longer side stays >= min_side (no-op when none is)."""
    width, height = img.size
    scale = min_side / max(width, height)
    if scale > 0.5:  # even 1/2 would be too small
        return
    # draft() keeps both sides >= the requested size; ask for the same aspect ratio so the longer side rules
    img.draft(img.mode, (math.ceil(width * scale), math.ceil(height * scale)))


def to_rgb_array(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> RGB uint8. Transparent pixels are composited on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        grey = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        span = max(float(arr.max() - arr.min()), 1e-9)
        grey = ((arr - arr.min()) / span * 255.0).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    # already RGB (most photos): no converted copy; numpy copies the pixels out once
    return np.ascontiguousarray(np.asarray(img if img.mode == "RGB" else img.convert("RGB"), dtype=np.uint8))


def read_image_file(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    with open(path, "rb") as fh:
        return decode_image(fh.read(), max_pixels=max_pixels)
