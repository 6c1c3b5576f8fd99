"""The files device mode downloads: listed in /v1/models with the card's sha256, served byte for byte by
GET /v1/models/files/{name} (only names the card lists), and the int8 classifier's ONNX conversion
(tools/convert_classifier.py) agreeing with the shipped .tflite on LiteRT, on real face crops."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from masklite.card import load_card
from masklite.classifier import Classifier, normalize, resize_crops
from masklite.faces import crop_face
from masklite.pipeline import decide_label
from tests.conftest import SceneSample

LABEL_AGREEMENT = 0.98
# int8 rounding differs between the two runtimes (XNNPACK vs onnxruntime's kernels): a few faces move by
# up to ~0.15 (micro), most by much less; the labels must not change
MAX_PROBABILITY_GAP = 0.2
MEAN_PROBABILITY_GAP = 0.02


@pytest.fixture(scope="module")
def models(live_server: str) -> dict:
    return httpx.get(live_server + "/v1/models", timeout=30).json()


def test_models_list_the_device_files(models: dict, models_dir: Path) -> None:
    card = load_card(models_dir)
    assert models["mask_label"] in models["labels"] and models["unknown_label"] == "unknown"
    assert models["device_model"] == card.device_model
    device = next(m for m in models["models"] if m["precision"] == card.device_model)
    assert device["runtime_files"]["onnxruntime-web"]["sha256"]
    int8 = next(m for m in models["models"] if m["precision"] == "int8")
    web = int8["runtime_files"]["onnxruntime-web"]
    assert web["sha256"] == card.models["int8"].runtime_files["onnxruntime-web"].sha256
    assert web["url"] == f"/v1/models/files/{web['file']}"
    yunet = models["detector"]["runtime_files"]["onnxruntime"]
    assert yunet["sha256"] == card.detector.runtime_files["onnxruntime"].sha256


def test_model_files_are_served_byte_for_byte(models: dict, live_server: str) -> None:
    int8 = next(m for m in models["models"] if m["precision"] == "int8")
    for entry in (
        int8["runtime_files"]["onnxruntime-web"],
        models["detector"]["runtime_files"]["onnxruntime"],
    ):
        r = httpx.get(live_server + entry["url"], timeout=30)
        assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
        assert hashlib.sha256(r.content).hexdigest() == entry["sha256"], entry["file"]
        assert r.headers.get("etag")  # revalidated, not downloaded again


@pytest.mark.parametrize(
    "name", ["model_card.json", "evalset.zip", "..%2Fpyproject.toml", "nope.onnx", ".gitignore"]
)
def test_only_files_the_card_names(live_server: str, name: str) -> None:
    r = httpx.get(f"{live_server}/v1/models/files/{name}", timeout=10)
    assert r.status_code == 404, (name, r.status_code)
    assert r.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("precision", ["int8", "micro"])
def test_onnx_classifier_agrees_with_litert_on_face_crops(
    models_dir: Path, scene_samples: list[SceneSample], precision: str
) -> None:
    ort = pytest.importorskip("onnxruntime")
    card = load_card(models_dir)
    entry = card.models[precision]
    converted = models_dir / entry.runtime_files["onnxruntime-web"].file
    assert hashlib.sha256(converted.read_bytes()).hexdigest() == entry.runtime_files["onnxruntime-web"].sha256
    spec = card.model_input(precision)
    crops = []
    for sample in scene_samples:
        rgb = cv2.cvtColor(cv2.imread(str(sample.path)), cv2.COLOR_BGR2RGB)
        crops += [crop_face(rgb, face.box, card.crop_margin) for face in sample.faces]
    pixels = normalize(resize_crops(crops, spec), spec)
    litert = Classifier(models_dir / entry.file).predict(pixels)[:, card.mask_index]
    session = ort.InferenceSession(str(converted), providers=["CPUExecutionProvider"])
    onnx = session.run(None, {"pixels": pixels})[0][:, card.mask_index]
    boxes = [(0, 0, 100, 100)] * len(crops)  # judgeable size: only the threshold decides
    same = [
        decide_label(card, float(a), b, precision) == decide_label(card, float(o), b, precision)
        for a, o, b in zip(litert, onnx, boxes, strict=True)
    ]
    gaps = np.abs(litert - onnx)
    print(
        f"\n{precision}, {len(crops)} face crops: labels equal on {np.mean(same):.1%}, probability gap "
        f"mean {gaps.mean():.4f}, largest {gaps.max():.3f}"
    )
    assert len(crops) >= 50
    assert np.mean(same) >= LABEL_AGREEMENT
    assert gaps.max() <= MAX_PROBABILITY_GAP and gaps.mean() <= MEAN_PROBABILITY_GAP
