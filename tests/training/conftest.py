"""Training-test fixtures: real asset paths from the environment (or the ../shared fallback in
tests/conftest.py); a test skips with a reason when one is absent, and fails under CI=true
(skip_or_fail). The detector ships in models/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from masklite.paths import (
    DEFAULT_MODELS_DIR,
    ENV_BACKBONE_WEIGHTS,
    ENV_DATA_DIR,
    ENV_DATASETS_DIR,
    ENV_SCENES_DIR,
    resolve_detector_path,
)
from tests.conftest import import_or_skip_or_fail, skip_or_fail


def _env_dir(name: str) -> Path:
    value = os.environ.get(name)
    if not value:
        skip_or_fail(f"{name} is not set (the real asset is needed for this test)")
    path = Path(value)
    if not path.exists():
        skip_or_fail(f"{name}={value} does not exist")
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _env_dir(ENV_DATA_DIR)


@pytest.fixture(scope="session")
def detector_path() -> Path:
    """$MASKLITE_DETECTOR_PATH, else the YuNet file shipped in models/."""
    return resolve_detector_path()


@pytest.fixture(scope="session")
def weights_path() -> Path:
    return _env_dir(ENV_BACKBONE_WEIGHTS)


@pytest.fixture(scope="session")
def datasets_root() -> Path:
    """The root of the cross-source sets (macwinwin-scenes, wider-val-sample, rmfd-…, scenes-sample)."""
    return _env_dir(ENV_DATASETS_DIR)


@pytest.fixture(scope="session")
def scenes_dir() -> Path:
    return _env_dir(ENV_SCENES_DIR)


@pytest.fixture(scope="session")
def models_dir() -> Path:
    if not (DEFAULT_MODELS_DIR / "model_card.json").is_file():
        skip_or_fail("models/model_card.json not built yet (run `python -m training build`)")
    return DEFAULT_MODELS_DIR


@pytest.fixture(scope="session")
def tf():
    return import_or_skip_or_fail("tensorflow", "TensorFlow (extra `train`) is not installed")
