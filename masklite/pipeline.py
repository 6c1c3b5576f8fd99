"""The whole inference path, as two short functions: image bytes -> `infer_bytes` (decode at reduced size
where the format allows) -> `predict_faces` (detect -> crop -> preprocess -> classify -> label).

A big JPEG is decoded at reduced size (DCT scaling) and the boxes are mapped back to full-size pixels, so a
12 MP phone photo costs about what the same scene at ~1000 px costs, with the same boxes and labels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from masklite.card import MASK_LABEL, UNKNOWN_LABEL, ModelCard
from masklite.classifier import Classifier, resize_crops
from masklite.faces import DETECT_MAX_SIDE, FaceDetector, crop_face, scale_box
from masklite.image import DEFAULT_MAX_PIXELS, decode_image_reduced

NO_DETECTOR_WARNING = "face detector unavailable: the whole image was classified as one face"


@dataclass
class FacePrediction:
    box: tuple[int, int, int, int]
    detector_score: float | None
    label: str  # a card label, or "unknown" when the face is too small to judge
    mask_probability: float
    # YuNet's five points (faces.LANDMARK_NAMES order), image pixels; () when the whole image was classified
    landmarks: tuple[tuple[float, float], ...] = ()

    @property
    def too_small(self) -> bool:
        return self.label == UNKNOWN_LABEL


@dataclass
class Prediction:
    faces: list[FacePrediction]
    timings_ms: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def decide_label(
    card: ModelCard, mask_probability: float, box: tuple[int, int, int, int], precision: str | None
) -> str:
    """The label the service answers: `unknown` below the card's smallest judgeable face, else the mask label
    when the probability reaches the model's threshold, else the other label."""
    if min(box[2], box[3]) < card.min_face_size:
        return UNKNOWN_LABEL
    entry = card.models.get(precision) if precision is not None else None
    if mask_probability >= (entry.decision_threshold if entry is not None else 0.5):
        return MASK_LABEL
    return next(label for label in card.labels if label != MASK_LABEL)


def predict_faces(
    rgb: np.ndarray,
    card: ModelCard,
    classifier: Classifier,
    detector: FaceDetector | None,
    detect_faces: bool = True,
    min_face: int = 0,
    precision: str | None = None,
    detect_size: int | None = None,
    full_size: tuple[int, int] | None = None,
) -> Prediction:
    """Find faces (or take the whole image), crop with the card's margin, classify each crop.

    Preprocessing is the card's input spec for this model: `precision`'s entry when given, else the entry
    whose file the classifier was loaded from (the micro model has its own, smaller input size). The label
    follows the card: the model's decision threshold, and `unknown` below the smallest judgeable face.
    `detect_size`: the detector input's longer side (default: the detector's own `max_side`).
    `full_size`: (width, height) of the full image when `rgb` was decoded smaller (`infer_bytes`): boxes
    are returned, and judged against the card's minimum face size, in the full image's pixels.
    """
    height, width = rgb.shape[:2]
    warnings: list[str] = []
    t0 = time.perf_counter()
    if detect_faces and detector is not None:
        found = detector.detect(rgb, min_face=min_face, max_side=detect_size)
        boxes = [f.box for f in found]
        scores: list[float | None] = [f.score for f in found]
        points = [f.landmarks for f in found]
        crops = [crop_face(rgb, box, card.crop_margin) for box in boxes]
    else:
        if detect_faces:
            warnings.append(NO_DETECTOR_WARNING)
        boxes, scores, crops = [(0, 0, width, height)], [None], [rgb]
        points = [()]
    t1 = time.perf_counter()
    if not precision:  # a caller that loaded the model itself: find it in the card
        precision = next((p for p, e in card.models.items() if e.file == classifier.name), None)
    # the service's classifiers carry their card input spec from loading; others look it up here
    spec = classifier.spec or (
        card.input_for(precision)
        if precision
        else card.input_for_model(classifier.name, classifier.input_size)
    )
    probs = classifier.predict_pixels(resize_crops(crops, spec), spec)  # no crops: (0, classes), no invoke
    t2 = time.perf_counter()
    if full_size is not None and full_size != (width, height):
        sx, sy = full_size[0] / width, full_size[1] / height
        boxes = [scale_box(b, sx, sy, *full_size) for b in boxes]
        points = [tuple((x * sx, y * sy) for x, y in p) for p in points]
    mask_index = card.labels.index(MASK_LABEL)
    faces = [
        FacePrediction(
            box=box,
            detector_score=score,
            label=decide_label(card, float(p[mask_index]), box, precision),
            mask_probability=float(p[mask_index]),
            landmarks=tuple((round(x, 1), round(y, 1)) for x, y in marks),
        )
        for box, score, p, marks in zip(boxes, scores, probs, points, strict=True)
    ]
    return Prediction(faces, {"detect": (t1 - t0) * 1e3, "classify": (t2 - t1) * 1e3}, warnings)


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
