"""Image bytes -> faces and labels in the image's own pixels: the service's path, shared with the benchmarks.

A big JPEG is decoded at reduced size (DCT scaling) and the boxes are mapped back to full-size pixels, so a
12 MP phone photo costs about what the same scene at ~1000 px costs, with the same boxes and labels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from masklite.card import ModelCard
from masklite.classifier import Classifier
from masklite.faces import DETECT_MAX_SIDE, FaceDetector
from masklite.image import DEFAULT_MAX_PIXELS, decode_image_reduced
from masklite.pipeline import Prediction, predict_faces

# The decoded image keeps at least this many times the detector's input side: the detector is never fed
# an upscaled image, and a face it sees at >= 61 px (128 / 1.4 crop / 1.5) still gives a 128 px crop
# without upsampling. A 4032x3024 photo at detect size 640 decodes at 1/4 (1008x756).
DRAFT_OVERSAMPLE = 1.5


@dataclass
class ImageResult:
    prediction: Prediction  # boxes in full-size image pixels
    width: int  # full size, after EXIF orientation
    height: int
    decode_ms: float
    decoded_size: tuple[int, int]  # (width, height) actually decoded


def draft_side(detector: FaceDetector | None, detect_size: int | None) -> int:
    side = detect_size or (detector.max_side if detector is not None else DETECT_MAX_SIDE)
    return int(side * DRAFT_OVERSAMPLE)


def infer_bytes(
    data: bytes,
    card: ModelCard,
    classifier: Classifier,
    detector: FaceDetector | None,
    detect_faces: bool = True,
    min_face: int = 0,
    detect_size: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    reduce: bool = True,
    precision: str | None = None,
) -> ImageResult:
    """decode (reduced where the format allows, unless `reduce` is false) -> predict_faces -> boxes back in
    full-size pixels."""
    t0 = time.perf_counter()
    min_side = draft_side(detector, detect_size) if reduce else None
    rgb, (width, height) = decode_image_reduced(data, max_pixels, min_side)
    decode_ms = (time.perf_counter() - t0) * 1e3
    dh, dw = rgb.shape[:2]
    sx, sy = width / dw, height / dh
    pred = predict_faces(
        rgb,
        card,
        classifier,
        detector,
        detect_faces,
        int(np.floor(min_face / max(sx, sy))),  # min_face is in full-size pixels
        precision,
        detect_size,
        full_size=(width, height),
    )
    return ImageResult(pred, width, height, decode_ms, (dw, dh))
