"""The shipped micro model (issue #9): TFLite Micro agrees with LiteRT on real face crops, its tensor arena
is measured reproducibly, and the service answers with model=micro."""

from __future__ import annotations

import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest

from masklite.card import ModelCard, load_card, verify_model_file
from masklite.classifier import preprocess
from masklite.image import decode_image
from tests.conftest import import_or_skip_or_fail, skip_or_fail

import_or_skip_or_fail("tflite_micro", "tflite-micro (dev extra) is not installed")

from training.micro.tflm import agreement, arena_works, min_arena, quantize_input  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_CROPS = 200


@pytest.fixture(scope="module")
def card(models_dir: Path) -> ModelCard:
    card = load_card(models_dir)
    if "micro" not in card.models:
        skip_or_fail("models/model_card.json has no models.micro: run `python -m training micro`")
    return card


@pytest.fixture(scope="module")
def micro_path(card: ModelCard, models_dir: Path) -> Path:
    return verify_model_file(card, models_dir, "micro")


def _real_crops(models_dir: Path) -> tuple[list[np.ndarray], str]:
    """Face crops never seen in training: models/evalset.zip, else the prepared test-split crops."""
    evalset = models_dir / "evalset.zip"
    if evalset.is_file():
        with zipfile.ZipFile(evalset) as zf:
            names = sorted(n for n in zf.namelist() if not n.endswith("/"))
            step = max(1, len(names) // MAX_CROPS)  # every k-th file: both labels, sorted by folder
            return [decode_image(zf.read(n)) for n in names[::step][:MAX_CROPS]], "models/evalset.zip"
    crops = REPO_ROOT / "work" / "features" / "crops_test.npz"
    if crops.is_file():
        with np.load(crops) as z:
            return list(z["crops"][:: max(1, len(z["crops"]) // MAX_CROPS)][:MAX_CROPS]), str(crops)
    skip_or_fail("no real crops: neither models/evalset.zip nor work/features/crops_test.npz exists")


def test_tflm_matches_litert_on_real_crops(card: ModelCard, micro_path: Path, models_dir: Path) -> None:
    crops, source = _real_crops(models_dir)
    spec = card.model_input("micro")
    model = micro_path.read_bytes()
    x = quantize_input(model, preprocess(crops, spec))
    arena = card.models["micro"].model_extra["tflm"]["arena_bytes"]
    result = agreement(model, x, arena)  # runs at the card's (minimum) arena
    assert result["n"] >= 50, source
    assert result["label_agreement"] >= 0.99, (source, result)


def test_arena_measurement_is_reproducible_and_tight(card: ModelCard, micro_path: Path) -> None:
    first, second = min_arena(micro_path), min_arena(micro_path)
    assert first["arena_bytes"] == second["arena_bytes"]
    assert first["arena_bytes"] == card.models["micro"].model_extra["tflm"]["arena_bytes"]
    assert arena_works(micro_path, first["arena_bytes"])
    assert not arena_works(micro_path, first["arena_bytes"] - 1)
    assert first["arena_bytes"] <= 384 * 1024
    assert micro_path.stat().st_size <= 500 * 1024


def test_service_answers_with_model_micro(live_server: str, card: ModelCard, scene_samples) -> None:
    sample = next(s for s in scene_samples if s.faces)
    with httpx.Client(base_url=live_server, timeout=60) as client:
        listed = client.get("/v1/models").json()
        assert "micro" in [m["precision"] for m in listed["models"]]
        r = client.post(
            "/v1/predict", params={"model": "micro"}, files={"file": ("scene.jpg", sample.data, "image/jpeg")}
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"]["precision"] == "micro"
    assert body["model"]["sha256"] == card.models["micro"].sha256
    assert body["faces"], "the detector found no face in a scene with annotated faces"
    assert {f["label"] for f in body["faces"]} <= set(card.labels)


def test_micro_entry_survives_a_main_re_export(card: ModelCard, models_dir: Path, tmp_path: Path) -> None:
    """The export stage rewrites the card; its hook keeps models.micro while the file is unchanged."""
    import shutil

    from masklite.card import save_card
    from training.micro.entry import carry_over_micro

    shutil.copy(models_dir / "model_card.json", tmp_path / "model_card.json")
    shutil.copy(models_dir / card.models["micro"].file, tmp_path / card.models["micro"].file)
    fresh = card.model_copy(deep=True)
    del fresh.models["micro"]  # what stage_export builds
    carry_over_micro(tmp_path, fresh)
    assert fresh.models["micro"].sha256 == card.models["micro"].sha256
    save_card(fresh, tmp_path)
    assert load_card(tmp_path).model_input("micro") == card.model_input("micro") != card.input

    (tmp_path / card.models["micro"].file).write_bytes(b"changed")
    again = card.model_copy(deep=True)
    del again.models["micro"]
    carry_over_micro(tmp_path, again)
    assert "micro" not in again.models
