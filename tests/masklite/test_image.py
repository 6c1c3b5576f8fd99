"""masklite.image: bytes -> RGB, with the limits the service relies on."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from masklite.image import (
    ImageTooLarge,
    UndecodableImage,
    UnsupportedImageType,
    decode_image,
    decode_image_reduced,
)


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "I;16"])
def test_every_mode_becomes_rgb_uint8(mode: str) -> None:
    img = Image.new(mode, (7, 5))
    rgb = decode_image(encode(img, "PNG"))
    assert rgb.shape == (5, 7, 3) and rgb.dtype == np.uint8


def test_transparent_pixels_are_white() -> None:
    rgb = decode_image(encode(Image.new("RGBA", (3, 3), (0, 0, 0, 0)), "PNG"))
    assert (rgb == 255).all()


def test_exif_orientation_turns_the_image_and_its_full_size() -> None:
    img = Image.new("RGB", (40, 20))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90
    rgb, size = decode_image_reduced(encode(img, "JPEG", exif=exif.tobytes()))
    assert rgb.shape[:2] == (40, 20) and size == (20, 40)


def test_jpeg_decodes_at_reduced_size_only_when_asked() -> None:
    data = encode(Image.new("RGB", (1600, 1200)), "JPEG")
    full, size = decode_image_reduced(data)
    quarter, size_q = decode_image_reduced(data, min_side=400)
    assert full.shape[:2] == (1200, 1600) and size == size_q == (1600, 1200)
    assert quarter.shape[:2] == (300, 400)
    png = encode(Image.new("RGB", (1600, 1200)), "PNG")
    assert decode_image_reduced(png, min_side=400)[0].shape[:2] == (1200, 1600)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", UndecodableImage),
        (b"hello, not an image", UnsupportedImageType),
        (encode(Image.new("RGB", (8, 8)), "JPEG")[:40], UndecodableImage),
        (encode(Image.new("RGB", (8, 8)), "GIF"), UnsupportedImageType),
    ],
)
def test_bad_bytes_raise_a_typed_error(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode_image(data)


def test_the_pixel_limit_is_checked_before_decoding() -> None:
    with pytest.raises(ImageTooLarge):
        decode_image(encode(Image.new("RGB", (100, 100)), "PNG"), max_pixels=9_999)
