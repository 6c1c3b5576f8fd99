"""masklite.pipeline: the one place detect -> crop -> preprocess -> classify -> label is joined."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from masklite.card import MASK_LABEL, UNKNOWN_LABEL, ModelCard, load_card
from masklite.classifier import Classifier, preprocess
from masklite.faces import Detection, YuNet, crop_face, load_detector
from masklite.image import decode_image
from masklite.paths import DEFAULT_MODELS_DIR
from masklite.pipeline import (
    NO_DETECTOR_WARNING,
    Models,
    PredictOptions,
    decide_label,
    predict_frame,
    predict_image,
)
from tests.masklite.conftest import half_dark


class FixedBoxes(YuNet):
    """A detector that reports the boxes it is given: the pipeline's own logic, isolated from YuNet."""

    def __init__(self, boxes: list[tuple[int, int, int, int]]):
        self.boxes, self.max_side, self.calls = boxes, 640, []

    def detect(self, rgb: np.ndarray, min_face: int = 0, max_side: int | None = None) -> list[Detection]:
        self.calls.append((rgb.shape, min_face, max_side))
        return [Detection(box=b, score=0.9) for b in self.boxes if min(b[2], b[3]) >= min_face]


def frame(
    rgb: np.ndarray, card: ModelCard, classifier: Classifier, detector: YuNet | None, **options
) -> object:
    return predict_frame(rgb, Models(card, classifier, detector), PredictOptions(**options))


def scene() -> np.ndarray:
    """200x300 grey with a "masked" face (dark bottom) at the left and a bare one (dark top) at the right."""
    rgb = np.full((200, 300, 3), 128, np.uint8)
    rgb[50:110, 20:80] = half_dark(60, "bottom")
    rgb[50:110, 200:260] = half_dark(60, "top")
    return rgb


def test_faces_are_labelled_in_detector_order(tiny_card: ModelCard, tiny_classifier: Classifier) -> None:
    det = FixedBoxes([(20, 50, 60, 60), (200, 50, 60, 60)])
    pred = frame(scene(), tiny_card.model_copy(update={"crop_margin": 0.0}), tiny_classifier, det)
    assert [f.label for f in pred.faces] == ["with_mask", "without_mask"]
    assert [f.box for f in pred.faces] == [(20, 50, 60, 60), (200, 50, 60, 60)]
    assert pred.faces[0].mask_probability > 0.9 > 0.1 > pred.faces[1].mask_probability
    assert set(pred.timings_ms) == {"detect", "classify"} and pred.warnings == []
    assert tiny_card.models[pred.precision].file == tiny_classifier.name  # found by its file in the card


def test_no_faces_gives_an_empty_answer(tiny_card: ModelCard, tiny_classifier: Classifier) -> None:
    assert frame(scene(), tiny_card, tiny_classifier, FixedBoxes([])).faces == []


def test_without_a_detector_the_whole_image_is_one_face(
    tiny_card: ModelCard, tiny_classifier: Classifier
) -> None:
    rgb = half_dark(50, "bottom")
    pred = frame(rgb, tiny_card, tiny_classifier, None)
    assert [f.box for f in pred.faces] == [(0, 0, 50, 50)] and pred.warnings == [NO_DETECTOR_WARNING]
    asked = frame(rgb, tiny_card, tiny_classifier, FixedBoxes([(1, 1, 5, 5)]), detect_faces=False)
    assert asked.warnings == [] and asked.faces[0].label == "with_mask"


def test_decide_label_follows_the_card(tiny_card: ModelCard) -> None:
    card = tiny_card.model_copy(deep=True)
    card.models["int8"].decision_threshold = 0.8
    big, small = (0, 0, 40, 40), (0, 0, 40, card.min_judgeable_face - 1)
    assert decide_label(card, 0.79, big, "int8") == "without_mask"
    assert decide_label(card, 0.80, big, "int8") == "with_mask"
    assert decide_label(card, 0.79, big, "float32") == "with_mask"  # its own threshold, 0.5
    assert decide_label(card, 0.79, big, None) == "with_mask"  # a model the card does not list: 0.5
    assert decide_label(card, 0.99, small, "int8") == UNKNOWN_LABEL


def test_small_faces_are_unknown_in_full_size_pixels(
    tiny_card: ModelCard, tiny_classifier: Classifier
) -> None:
    card = tiny_card.model_copy(update={"min_judgeable_face": 100})
    det = FixedBoxes([(20, 50, 60, 60)])
    reduced = frame(scene(), card, tiny_classifier, det)
    assert reduced.faces[0].too_small
    # the same face in an image decoded at half size: 120 px in full-size pixels is judgeable
    models = Models(card, tiny_classifier, det)
    full = predict_frame(scene(), models, PredictOptions(), full_size=(600, 400))
    assert full.faces[0].box == (40, 100, 120, 120) and not full.faces[0].too_small
    assert (full.width, full.height) == (600, 400)


def test_min_face_size_drops_faces_in_full_size_pixels(
    tiny_card: ModelCard, tiny_classifier: Classifier
) -> None:
    """The option drops faces (the card's min_judgeable_face keeps them as unknown); it is given in
    full-size pixels, so a frame decoded at half size asks the detector for half of it."""
    det = FixedBoxes([(20, 50, 60, 60)])
    models = Models(tiny_card, tiny_classifier, det)
    assert predict_frame(scene(), models, PredictOptions(min_face_size=61)).faces == []
    kept = predict_frame(scene(), models, PredictOptions(min_face_size=120), full_size=(600, 400))
    assert len(kept.faces) == 1 and det.calls[-1][1] == 60


def test_predict_image_decodes_and_maps_boxes_back(tiny_card: ModelCard, tiny_classifier: Classifier) -> None:
    big = np.kron(scene(), np.ones((8, 8, 1), np.uint8))  # 1600x2400
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, "JPEG", quality=95)
    det = FixedBoxes([(20, 50, 60, 60)])
    res = predict_image(
        buf.getvalue(), Models(tiny_card, tiny_classifier, det), PredictOptions(detect_size=320)
    )
    assert (res.width, res.height) == (2400, 1600)
    assert (
        res.decoded_size is not None and res.decoded_size[0] < 2400
    )  # decoded at reduced size (DCT scaling)
    sx = 2400 / res.decoded_size[0]
    assert res.faces[0].box[0] == round(20 * sx)
    assert set(res.timings_ms) == {"decode", "detect", "classify"}
    assert det.calls[-1][2] == 320


def test_real_detector_and_tiny_classifier_on_the_sample(
    tiny_card: ModelCard, tiny_classifier: Classifier
) -> None:
    shipped = load_card(DEFAULT_MODELS_DIR)
    detector = load_detector(shipped.detector)
    data = (DEFAULT_MODELS_DIR / "samples" / "astronaut_pair.jpg").read_bytes()
    res = predict_image(data, Models(tiny_card, tiny_classifier, detector), PredictOptions())
    assert len(res.faces) == 2
    # the same faces, step by step outside the pipeline: decode, detect, crop with the card's margin,
    # preprocess (float path, not the pipeline's pixel lookup table), classify, decide
    rgb = decode_image(data)
    boxes = [d.box for d in detector.detect(rgb)]
    crops = [crop_face(rgb, box, tiny_card.crop_margin) for box in boxes]
    probs = tiny_classifier.predict(preprocess(crops, tiny_card.model_input(res.precision)))
    mask = tiny_card.labels.index(MASK_LABEL)
    assert [f.box for f in res.faces] == boxes
    for face, box, p in zip(res.faces, boxes, probs, strict=True):
        assert face.mask_probability == pytest.approx(float(p[mask]), abs=1e-4)
        assert face.label == decide_label(tiny_card, float(p[mask]), box, res.precision)
