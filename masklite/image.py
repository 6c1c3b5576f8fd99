"""Bytes -> RGB uint8 array, safely.

The pixel count is checked from the header before any pixel is decoded (decompression bombs), EXIF
orientation is applied, and every Pillow mode we accept (grey, RGBA, palette, CMYK, 16-bit) ends as RGB.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP"})
DEFAULT_MAX_PIXELS = 40_000_000


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
    if not data:
        raise UndecodableImage("empty image: 0 bytes")
    with warnings.catch_warnings():
        # Pillow's own bomb guard warns/raises at its global limit; ours is explicit and per call.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))  # reads the header only
        except UnidentifiedImageError as exc:
            raise UnsupportedImageType(
                "not a recognised image; send JPEG, PNG, WebP or BMP"
            ) from exc
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
            img.load()
            img = ImageOps.exif_transpose(img)
            return to_rgb_array(img)
        except Image.DecompressionBombError as exc:
            raise ImageTooLarge(str(exc)) from exc
        except Exception as exc:  # noqa: BLE001
            raise UndecodableImage(f"image data is corrupt or truncated: {exc}") from exc


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
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def read_image_file(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    with open(path, "rb") as fh:
        return decode_image(fh.read(), max_pixels=max_pixels)
