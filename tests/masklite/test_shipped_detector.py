"""The YuNet detector ships in models/: its bytes match the card, its licence is beside it, and every
caller that names no detector gets that file."""

from __future__ import annotations

from pathlib import Path

import pytest

from masklite.card import DetectorSpec, ModelCard, load_card
from masklite.paths import (
    DEFAULT_DETECTOR_PATH,
    DEFAULT_MODELS_DIR,
    ENV_DETECTOR_PATH,
    YUNET_FILENAME,
    YUNET_SHA256,
    resolve_detector_path,
    sha256_file,
)


def test_shipped_detector_matches_the_card() -> None:
    card = load_card(DEFAULT_MODELS_DIR)
    path = DEFAULT_MODELS_DIR / card.detector.file
    assert path == DEFAULT_DETECTOR_PATH and path.is_file(), "models/ must ship the YuNet detector"
    assert path.stat().st_size == card.detector.bytes == 232_589
    assert sha256_file(path) == card.detector.sha256 == YUNET_SHA256
    licence = DEFAULT_MODELS_DIR / card.detector.license_file
    text = licence.read_text()
    assert "Apache License" in text and "Version 2.0" in text and YUNET_SHA256 in text
    assert "Apache-2.0" in card.detector.license and "MIT" in card.detector.license
    assert "libfacedetection.train" in card.detector.source


def test_resolver_defaults_to_the_shipped_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_DETECTOR_PATH, raising=False)
    assert resolve_detector_path() == DEFAULT_DETECTOR_PATH
    # a models folder without the detector (e.g. a fresh training output): the shipped copy
    assert resolve_detector_path(models_dir=tmp_path) == DEFAULT_DETECTOR_PATH
    # a models folder with its own copy: that copy
    (tmp_path / YUNET_FILENAME).write_bytes(b"x")
    assert resolve_detector_path(models_dir=tmp_path) == tmp_path / YUNET_FILENAME


def test_an_override_that_does_not_exist_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Whoever sets MASKLITE_DETECTOR_PATH means that file: never silently replaced by the shipped one."""
    monkeypatch.setenv(ENV_DETECTOR_PATH, str(tmp_path / "absent.onnx"))
    with pytest.raises(FileNotFoundError, match="absent.onnx"):
        resolve_detector_path()
    with pytest.raises(FileNotFoundError, match="other.onnx"):
        resolve_detector_path(tmp_path / "other.onnx")


def test_detector_provenance_survives_a_re_export() -> None:
    """training/stages.py builds DetectorSpec from the prepare report's five keys; the rest defaults."""
    card = load_card(DEFAULT_MODELS_DIR)
    keys = ("name", "file", "sha256", "score_threshold", "nms_threshold")
    report = {k: getattr(card.detector, k) for k in keys}
    rebuilt = DetectorSpec(**report)
    assert rebuilt == card.detector
    again = ModelCard.model_validate(card.model_copy(update={"detector": rebuilt}).model_dump(mode="json"))
    assert again.detector.license_file == card.detector.license_file and again.detector.bytes == 232_589
