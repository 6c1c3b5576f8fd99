"""The whole inference path, image -> faces -> labels, as one short function."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from masklite.card import UNKNOWN_LABEL, ModelCard
from masklite.classifier import Classifier
from masklite.faces import FaceDetector, crop_face, scale_box
from masklite.preprocess import preprocess

NO_DETECTOR_WARNING = "face detector unavailable: the whole image was classified as one face"


@dataclass
class FacePrediction:
    box: tuple[int, int, int, int]
    detector_score: float | None
    label: str  # a card label, or "unknown" when the face is too small to judge
    mask_probability: float

    @property
    def too_small(self) -> bool:
        return self.label == UNKNOWN_LABEL


@dataclass
class Prediction:
    faces: list[FacePrediction]
    timings_ms: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


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
    `full_size`: (width, height) of the full image when `rgb` was decoded smaller (masklite.infer): boxes
    are returned, and judged against the card's minimum face size, in the full image's pixels.
    """
    height, width = rgb.shape[:2]
    warnings: list[str] = []
    t0 = time.perf_counter()
    if detect_faces and detector is not None:
        found = detector.detect(rgb, min_face=min_face, max_side=detect_size)
        boxes = [f.box for f in found]
        scores: list[float | None] = [f.score for f in found]
        crops = [crop_face(rgb, box, card.crop_margin) for box in boxes]
    else:
        if detect_faces:
            warnings.append(NO_DETECTOR_WARNING)
        boxes, scores, crops = [(0, 0, width, height)], [None], [rgb]
    t1 = time.perf_counter()
    if not precision:
        precision = next((p for p, e in card.models.items() if e.file == classifier.name), None)
    spec = (
        card.input_for(precision)
        if precision
        else card.input_for_model(classifier.name, classifier.input_size)
    )
    probs = classifier.predict(preprocess(crops, spec)) if crops else np.zeros((0, len(card.labels)))
    t2 = time.perf_counter()
    if full_size is not None and full_size != (width, height):
        boxes = [scale_box(b, full_size[0] / width, full_size[1] / height, *full_size) for b in boxes]
    faces = [
        FacePrediction(
            box=box,
            detector_score=score,
            label=card.decide(float(p[card.mask_index]), box, precision),
            mask_probability=float(p[card.mask_index]),
        )
        for box, score, p in zip(boxes, scores, probs, strict=True)
    ]
    return Prediction(faces, {"detect": (t1 - t0) * 1e3, "classify": (t2 - t1) * 1e3}, warnings)
