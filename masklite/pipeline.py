"""The whole inference path, joined in one place: image bytes -> `predict_image` (decode at reduced size
where the format allows) -> `predict_frame` (detect -> crop -> preprocess -> classify -> label).

What a caller may ask is one frozen `PredictOptions`; what it gets back is one `ImageResult` (the service's
JSON answer is built from it in service/routers/predict.py). A decoded frame (a video, a camera) goes
straight to `predict_frame`.

A big JPEG is decoded at reduced size (DCT scaling) and the boxes are mapped back to full-size pixels, so a
12 MP phone photo costs about what the same scene at ~1000 px costs, with the same boxes and labels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from masklite.card import MASK_LABEL, UNKNOWN_LABEL, ModelCard
from masklite.classifier import Classifier, resize_crops
from masklite.faces import DETECT_MAX_SIDE, YuNet, crop_face, scale_box
from masklite.image import DEFAULT_MAX_PIXELS, decode_image_reduced

NO_DETECTOR_WARNING = "face detector unavailable: the whole image was classified as one face"

# The decoded image keeps at least this many times the detector's input side: the detector is never fed
# an upscaled image, and a face it sees at >= 61 px (128 / 1.4 crop / 1.5) still gives a 128 px crop
# without upsampling. A 4032x3024 photo at detect size 640 decodes at 1/4 (1008x756).
DRAFT_OVERSAMPLE = 1.5

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class PredictOptions:
    """What a caller may ask of one prediction. A new option is a field here plus its parsing in the API
    (service/schemas.py's PredictQuery); the pipeline reads it from here."""

    # the card's precision to classify with (int8, float32, micro); None: the classifier's own card entry
    model: str | None = None
    # false: the whole image is one face crop
    detect_faces: bool = True
    # drop faces whose box's shorter side (full-size px) is below this (not the card's min_judgeable_face,
    # which keeps a face and answers `unknown`)
    min_face_size: int = 0
    # the detector input's longer side; None: the detector's own max_side
    detect_size: int | None = None
    # decoding: refuse images above this many pixels; `reduce` decodes big JPEGs at a reduced size
    max_pixels: int = DEFAULT_MAX_PIXELS
    reduce: bool = True


@dataclass(frozen=True)
class Models:
    """What one thread predicts with: the card, one classifier, the detector (None: whole images only)."""

    card: ModelCard
    classifier: Classifier
    detector: YuNet | None = None


@dataclass(frozen=True)
class FaceResult:
    box: Box  # x, y, w, h in full-size image pixels
    detector_score: float | None  # None when the whole image was classified
    label: str  # a card label, or "unknown" when the face is too small to judge
    mask_probability: float

    @property
    def too_small(self) -> bool:
        return self.label == UNKNOWN_LABEL


@dataclass
class ImageResult:
    """One image's answer: the faces in full-size pixels, the image's size and what each stage cost."""

    faces: list[FaceResult]
    width: int  # full size, after EXIF orientation
    height: int
    precision: str | None  # the card entry whose threshold labelled the faces
    timings_ms: dict[str, float] = field(default_factory=dict)  # decode, detect, classify (+ the caller's)
    warnings: list[str] = field(default_factory=list)
    decoded_size: tuple[int, int] | None = None  # (width, height) actually decoded, when decoded smaller


def decide_label(card: ModelCard, mask_probability: float, box: Box, precision: str | None) -> str:
    """The label the service answers: `unknown` below the card's smallest judgeable face, else the mask label
    when the probability reaches the model's threshold, else the other label."""
    if min(box[2], box[3]) < card.min_judgeable_face:
        return UNKNOWN_LABEL
    entry = card.models.get(precision) if precision is not None else None
    if mask_probability >= (entry.decision_threshold if entry is not None else 0.5):
        return MASK_LABEL
    return next(label for label in card.labels if label != MASK_LABEL)


def predict_frame(
    rgb: np.ndarray, models: Models, options: PredictOptions, full_size: tuple[int, int] | None = None
) -> ImageResult:
    """Find faces (or take the whole frame), crop with the card's margin, classify each crop, label it.

    Preprocessing is the card's input spec for the model (micro has its own, smaller input). The label
    follows the card: the model's decision threshold, and `unknown` below the smallest judgeable face.
    `full_size`: (width, height) of the full image when `rgb` was decoded smaller: boxes are returned, and
    judged against both face-size limits, in the full image's pixels.
    """
    card, classifier, detector = models.card, models.classifier, models.detector
    height, width = rgb.shape[:2]
    full_w, full_h = full_size or (width, height)
    warnings: list[str] = []
    t0 = time.perf_counter()
    if options.detect_faces and detector is not None:
        # the option is in full-size pixels; the detector sees the decoded ones
        min_face = int(np.floor(options.min_face_size / max(full_w / width, full_h / height)))
        found = detector.detect(rgb, min_face=min_face, max_side=options.detect_size)
        boxes = [f.box for f in found]
        scores: list[float | None] = [f.score for f in found]
        crops = [crop_face(rgb, box, card.crop_margin) for box in boxes]
    else:
        if options.detect_faces:
            warnings.append(NO_DETECTOR_WARNING)
        boxes, scores, crops = [(0, 0, width, height)], [None], [rgb]
    t1 = time.perf_counter()
    precision = options.model or card.precision_of(classifier.name)
    spec = classifier.spec or card.model_input(precision)  # the service's classifiers carry theirs
    probs = classifier.predict_pixels(resize_crops(crops, spec), spec)  # no crops: (0, classes), no invoke
    t2 = time.perf_counter()
    if (full_w, full_h) != (width, height):
        boxes = [scale_box(b, full_w / width, full_h / height, full_w, full_h) for b in boxes]
    mask_index = card.labels.index(MASK_LABEL)
    faces = [
        FaceResult(
            box=box,
            detector_score=score,
            label=decide_label(card, float(p[mask_index]), box, precision),
            mask_probability=float(p[mask_index]),
        )
        for box, score, p in zip(boxes, scores, probs, strict=True)
    ]
    timings = {"detect": (t1 - t0) * 1e3, "classify": (t2 - t1) * 1e3}
    return ImageResult(faces, full_w, full_h, precision, timings, warnings)


def draft_side(detector: YuNet | None, detect_size: int | None) -> int:
    """The smallest side a reduced decode keeps for this detector input size."""
    side = detect_size or (detector.max_side if detector is not None else DETECT_MAX_SIDE)
    return int(side * DRAFT_OVERSAMPLE)


def predict_image(data: bytes, models: Models, options: PredictOptions) -> ImageResult:
    """Image bytes -> decode (reduced where the format allows, unless `options.reduce` is false) ->
    `predict_frame` -> boxes in full-size pixels."""
    t0 = time.perf_counter()
    min_side = draft_side(models.detector, options.detect_size) if options.reduce else None
    rgb, full_size = decode_image_reduced(data, options.max_pixels, min_side)
    decode_ms = (time.perf_counter() - t0) * 1e3
    result = predict_frame(rgb, models, options, full_size)
    result.timings_ms = {"decode": decode_ms, **result.timings_ms}
    result.decoded_size = (rgb.shape[1], rgb.shape[0])
    return result
