"""The core's unit-test fixtures: the tiny committed classifiers in tests/fixtures/ (no TensorFlow, no
../shared), the shipped YuNet detector and the committed sample photo in models/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from masklite.card import ModelCard, load_card
from masklite.classifier import Classifier

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture(scope="session")
def tiny_card() -> ModelCard:
    return load_card(FIXTURES)


@pytest.fixture(scope="session", params=["float32", "int8"])
def tiny_classifier(request: pytest.FixtureRequest, tiny_card: ModelCard) -> Classifier:
    return Classifier(FIXTURES / tiny_card.models[request.param].file)


def half_dark(size: int, dark: str) -> np.ndarray:
    """An RGB crop with its top or bottom half black and the other half white: the tiny models call a
    crop with a dark bottom half (a "mask") with_mask."""
    img = np.full((size, size, 3), 255, np.uint8)
    if dark == "bottom":
        img[size // 2 :] = 0
    else:
        img[: size // 2] = 0
    return img
