"""masklite.card: the single source of labels, input specs, thresholds and file checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from masklite.card import (
    ChecksumError,
    InputSpec,
    ModelCard,
    load_card,
    read_model_file,
    save_card,
    verify_model_file,
)
from tests.masklite.conftest import FIXTURES


def test_card_loads_and_knows_its_models(tiny_card: ModelCard) -> None:
    assert tiny_card.labels == ["with_mask", "without_mask"]
    assert tiny_card.mask_index == 0
    assert set(tiny_card.models) == {"float32", "int8"}
    assert tuple(tiny_card.input.size) == (24, 24)


def test_model_input_prefers_the_models_own_spec(tiny_card: ModelCard) -> None:
    small = InputSpec(size=(12, 12))
    card = tiny_card.model_copy(deep=True)
    card.models["int8"].input = small
    assert card.model_input("int8") == small
    assert card.model_input("float32") == card.input
    assert card.model_input(None) == card.input
    assert card.model_input("no-such-model") == card.input
    assert card.precision_of(card.models["int8"].file) == "int8"
    assert card.precision_of("other.tflite") is None


def test_min_judgeable_face_reads_old_and_new_cards(tiny_card: ModelCard) -> None:
    """Cards written before the rename say `min_face_size` (the committed fixture is one); saving writes the
    new key, and both load to the same value."""
    raw = tiny_card.model_dump(mode="json")
    assert "min_judgeable_face" in raw and "min_face_size" not in raw
    old = {k: v for k, v in raw.items() if k != "min_judgeable_face"} | {"min_face_size": 7}
    assert ModelCard.model_validate(old).min_judgeable_face == 7
    assert ModelCard.model_validate(raw | {"min_judgeable_face": 9}).min_judgeable_face == 9


def test_save_and_load_round_trip(tmp_path: Path, tiny_card: ModelCard) -> None:
    save_card(tiny_card, tmp_path)
    again = load_card(tmp_path)
    assert again.models["int8"].sha256 == tiny_card.models["int8"].sha256
    assert again.input == tiny_card.input


def test_unknown_fields_survive_a_round_trip(tmp_path: Path) -> None:
    raw = json.loads((FIXTURES / "model_card.json").read_text())
    raw["something_new"] = {"a": 1}
    (tmp_path / "model_card.json").write_text(json.dumps(raw))
    (tmp_path / "out").mkdir()
    save_card(load_card(tmp_path), tmp_path / "out")
    assert json.loads((tmp_path / "out" / "model_card.json").read_text())["something_new"] == {"a": 1}


def test_verify_model_file_checks_the_sha256(tmp_path: Path, tiny_card: ModelCard) -> None:
    shutil.copytree(FIXTURES, tmp_path / "m")
    assert verify_model_file(tiny_card, tmp_path / "m", "int8").name == "tiny_int8.tflite"
    (tmp_path / "m" / "tiny_int8.tflite").write_bytes(b"not the model")
    with pytest.raises(ChecksumError):
        verify_model_file(tiny_card, tmp_path / "m", "int8")


def test_read_model_file_returns_the_checked_bytes(tmp_path: Path, tiny_card: ModelCard) -> None:
    shutil.copytree(FIXTURES, tmp_path / "m")
    path, content = read_model_file(tiny_card, tmp_path / "m", "int8")
    assert path.name == "tiny_int8.tflite" and content == (FIXTURES / "tiny_int8.tflite").read_bytes()
    (tmp_path / "m" / "tiny_int8.tflite").write_bytes(b"not the model")
    with pytest.raises(ChecksumError, match="does not match the card"):
        read_model_file(tiny_card, tmp_path / "m", "int8")
    (tmp_path / "m" / "tiny_int8.tflite").unlink()
    with pytest.raises(FileNotFoundError):
        read_model_file(tiny_card, tmp_path / "m", "int8")
