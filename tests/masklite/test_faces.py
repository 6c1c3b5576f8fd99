"""masklite.faces: the box geometry that training and serving share, and the shipped detector on the
committed sample photo."""

from __future__ import annotations

import numpy as np
import pytest

from masklite.card import load_card
from masklite.faces import (
    crop_box,
    crop_face,
    iou,
    load_detector,
    match_boxes,
    scale_box,
)
from masklite.image import read_image_file
from masklite.paths import DEFAULT_MODELS_DIR


def test_crop_box_grows_square_by_the_margin() -> None:
    assert crop_box((40, 40, 20, 20), 0.5, 200, 200) == (30, 30, 40, 40)
    x, y, w, h = crop_box((40, 40, 10, 20), 0.0, 200, 200)
    assert (w, h) == (20, 20)  # square on the longer side


def test_crop_box_is_clipped_at_the_border() -> None:
    assert crop_box((0, 0, 20, 20), 0.5, 25, 25) == (0, 0, 25, 25)
    x, y, w, h = crop_box((95, 95, 10, 10), 0.2, 100, 100)
    assert x + w <= 100 and y + h <= 100 and w >= 1 and h >= 1


def test_crop_face_returns_pixels_of_the_crop_box() -> None:
    rgb = np.arange(100 * 80 * 3, dtype=np.uint32).reshape(100, 80, 3).astype(np.uint8)
    crop = crop_face(rgb, (10, 20, 10, 10), 0.2)
    x, y, w, h = crop_box((10, 20, 10, 10), 0.2, 80, 100)
    assert crop.shape == (h, w, 3)
    assert (crop == rgb[y : y + h, x : x + w]).all()


def test_scale_box_maps_reduced_pixels_back_and_clips() -> None:
    assert scale_box((10, 10, 20, 20), 4.0, 4.0, 1000, 1000) == (40, 40, 80, 80)
    assert scale_box((90, 90, 20, 20), 2.0, 2.0, 200, 200) == (180, 180, 20, 20)


def test_iou_and_greedy_matching() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    truth = [(0, 0, 10, 10), (100, 100, 10, 10)]
    found = [(101, 100, 10, 10), (1, 0, 10, 10), (300, 300, 5, 5)]
    assert sorted(match_boxes(truth, found, 0.5)) == [(0, 1), (1, 0)]
    assert match_boxes(truth, [], 0.5) == []


@pytest.fixture(scope="module")
def sample_rgb() -> np.ndarray:
    return read_image_file(str(DEFAULT_MODELS_DIR / "samples" / "astronaut_pair.jpg"))


def test_shipped_detector_finds_the_two_faces_of_the_sample(sample_rgb: np.ndarray) -> None:
    card = load_card(DEFAULT_MODELS_DIR)
    detector = load_detector(card.detector)
    assert detector.runtime == card.detector.runtime == "litert"
    faces = detector.detect(sample_rgb)
    assert len(faces) == 2
    for face in faces:
        x, y, w, h = face.box
        assert x >= 0 and y >= 0 and x + w <= sample_rgb.shape[1] and y + h <= sample_rgb.shape[0]
        assert face.score >= card.detector.score_threshold
        assert len(face.landmarks) == 5
        # the eyes sit in the box's upper half
        assert all(y <= py <= y + h * 0.6 for _, py in face.landmarks[:2])
    assert detector.detect(sample_rgb, min_face=10_000) == []
