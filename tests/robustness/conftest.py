"""Fixtures of the robustness tests.

Fast ones: the tiny committed classifiers in tests/fixtures/ (one CONV_2D and one FULLY_CONNECTED layer, no
TensorFlow, no ../shared) and a small synthetic evaluation set they can be right or wrong on. Slow ones: the
shipped models and a 40-image subset of the shipped evaluation set, for what only a real MobileNetV2 has
(skip connections, per-channel int8 scales, 50+ layers).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from masklite.card import ModelCard, load_card
from masklite.evalset import EvalSet, load_evalset_file
from robustness.evaluate import load_model_for
from robustness.surgery import TFLiteModel
from tests.conftest import skip_or_fail

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
N_IMAGES = 40


# ------------------------------------------------------------------ tiny models (fast)


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def tiny_card() -> ModelCard:
    return load_card(FIXTURES)


@pytest.fixture(scope="session", params=["float32", "int8"])
def tiny_model(request: pytest.FixtureRequest, tiny_card: ModelCard) -> TFLiteModel:
    return load_model_for(tiny_card, FIXTURES, request.param)[0]


@pytest.fixture(scope="session")
def tiny_int8(tiny_card: ModelCard) -> TFLiteModel:
    return load_model_for(tiny_card, FIXTURES, "int8")[0]


def tiny_evalset_zip(card: ModelCard, per_label: int = 12, seed: int = 0) -> bytes:
    """Crops whose top and bottom halves differ in brightness, some by little: the tiny models call a
    darker bottom half with_mask, and a perturbed model gets the close ones wrong first."""
    rng = np.random.default_rng(seed)
    size = card.input.size[0]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for label_index, label in enumerate(card.labels):
            for i in range(per_label):
                dark = int(rng.integers(0, 200))
                light = min(255, dark + 8 + 4 * i)  # from barely to clearly different halves
                top, bottom = (light, dark) if label_index == 0 else (dark, light)
                img = np.empty((size, size, 3), np.uint8)
                img[: size // 2], img[size // 2 :] = top, bottom
                png = io.BytesIO()
                Image.fromarray(img).save(png, "PNG")
                zf.writestr(f"{label}/{i:02d}.png", png.getvalue())
    return buf.getvalue()


@pytest.fixture(scope="session")
def tiny_evalset_path(tmp_path_factory: pytest.TempPathFactory, tiny_card: ModelCard) -> Path:
    path = tmp_path_factory.mktemp("tiny-evalset") / "evalset.zip"
    path.write_bytes(tiny_evalset_zip(tiny_card))
    return path


@pytest.fixture(scope="session")
def tiny_evalset(tiny_evalset_path: Path, tiny_card: ModelCard) -> EvalSet:
    return load_evalset_file(tiny_evalset_path, tiny_card)


# ------------------------------------------------------------------ the shipped models (slow)


@pytest.fixture(scope="module")
def card(models_dir: Path) -> ModelCard:
    return load_card(models_dir)


@pytest.fixture(scope="module")
def evalset(models_dir: Path, card: ModelCard) -> EvalSet:
    path = models_dir / "evalset.zip"
    if not path.is_file():
        skip_or_fail(f"no {path}: the training pipeline writes it (make build-models)")
    return load_evalset_file(path, card).subset(N_IMAGES, seed=0)


@pytest.fixture(scope="module", params=["int8", "float32"])
def model(request: pytest.FixtureRequest, models_dir: Path, card: ModelCard) -> TFLiteModel:
    if request.param not in card.models:
        skip_or_fail(f"the card has no {request.param} model")
    return load_model_for(card, models_dir, request.param)[0]


@pytest.fixture(scope="module")
def int8_model(models_dir: Path, card: ModelCard) -> TFLiteModel:
    return load_model_for(card, models_dir, "int8")[0]
