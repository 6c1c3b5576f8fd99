"""Draw faces on a picture: boxes, labels, track ids, and blurring for privacy. One definition, shared by
video frames (masklite/video.py) and single images.

    annotate(rgb, [DrawnFace(box, label, track_id)], blur=True)   draws in place, returns the array
    render_jpeg(image_bytes, faces, blur)                         the image decoded, drawn, as a JPEG
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from masklite.card import MASK_LABEL, UNKNOWN_LABEL
from masklite.image import DEFAULT_MAX_PIXELS, decode_image

JPEG_QUALITY = 90

Box = tuple[int, int, int, int]  # x, y, w, h

# RGB; green / red / grey, the camera page's colours
LABEL_COLOURS: dict[str, tuple[int, int, int]] = {
    MASK_LABEL: (46, 204, 113),
    UNKNOWN_LABEL: (160, 160, 160),
}
OTHER_COLOUR = (231, 76, 60)  # any other card label: no mask


@dataclass(frozen=True)
class DrawnFace:
    box: Box
    label: str
    track_id: int | None = None


def colour_for(label: str) -> tuple[int, int, int]:
    return LABEL_COLOURS.get(label, OTHER_COLOUR)


def blur_faces(rgb: np.ndarray, boxes: Iterable[Box], grow: float = 0.15) -> np.ndarray:
    """Pixelate each box (grown by `grow` on every side) in place. Pixelation, not a Gaussian: a blur can
    be partly undone, 8 cells across a face cannot."""
    height, width = rgb.shape[:2]
    for x, y, w, h in boxes:
        dx, dy = int(w * grow), int(h * grow)
        x0, y0 = max(0, x - dx), max(0, y - dy)
        x1, y1 = min(width, x + w + dx), min(height, y + h + dy)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        region = rgb[y0:y1, x0:x1]
        cells = cv2.resize(region, (8, 8), interpolation=cv2.INTER_AREA)
        rgb[y0:y1, x0:x1] = cv2.resize(cells, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    return rgb


def annotate(rgb: np.ndarray, faces: Sequence[DrawnFace], blur: bool = False) -> np.ndarray:
    """Blur (when asked), then draw each face's box and `#id label` in place on an RGB uint8 array."""
    if blur:
        blur_faces(rgb, (f.box for f in faces))
    thickness = max(1, round(min(rgb.shape[:2]) / 320))
    scale = 0.4 * thickness
    for face in faces:
        x, y, w, h = face.box
        colour = colour_for(face.label)
        cv2.rectangle(rgb, (x, y), (x + w, y + h), colour, thickness)
        text = face.label if face.track_id is None else f"#{face.track_id} {face.label}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = y - 2 if y - th - base - 2 >= 0 else y + h + th + 2  # above the box, else below it
        cv2.rectangle(rgb, (x, ty - th - base), (x + tw + 2, ty + base - 1), colour, cv2.FILLED)
        cv2.putText(rgb, text, (x + 1, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return rgb


def render_jpeg(
    data: bytes, faces: Sequence[DrawnFace], blur: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS
) -> bytes:
    """Image bytes -> the same picture (full size, EXIF-upright, so the boxes fit) with `faces` drawn."""
    rgb = decode_image(data, max_pixels)
    if not rgb.flags.writeable:  # decoders may hand back a read-only view of their buffer
        rgb = rgb.copy()
    annotate(rgb, faces, blur=blur)
    ok, jpeg = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:
        raise ValueError("JPEG encoding failed")
    return jpeg.tobytes()
