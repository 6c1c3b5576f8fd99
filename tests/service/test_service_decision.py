"""The service applies the card's decision: the model's threshold and the smallest-face rule.

A crafted card (the shipped models, two fields changed) on a real server: a threshold no face reaches
makes every face `without_mask`; a smallest face bigger than any face makes every face `unknown`,
with `too_small` set and the mask probability kept; /metrics counts the `unknown` faces.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from masklite.card import UNKNOWN_LABEL, load_card
from masklite.classifier import Classifier
from masklite.image import decode_image
from masklite.pipeline import Models, PredictOptions, predict_frame
from tests.conftest import SceneSample, ServerFactory


def _crafted(models_dir: Path, target: Path, **changes: object) -> Path:
    target.mkdir(parents=True)
    for p in models_dir.iterdir():
        if p.is_file():
            shutil.copy2(p, target / p.name)
    card = json.loads((target / "model_card.json").read_text())
    for key, value in changes.items():
        if key == "int8_threshold":
            card["models"]["int8"]["decision_threshold"] = value
        else:
            card[key] = value
    (target / "model_card.json").write_text(json.dumps(card))
    return target


WHOLE_INT8 = PredictOptions(model="int8", detect_faces=False)


def test_pipeline_applies_threshold_and_smallest_face(
    models_dir: Path, scene_samples: list[SceneSample]
) -> None:
    card = load_card(models_dir)
    rgb = decode_image(scene_samples[0].data)
    clf = Classifier(models_dir / card.models["int8"].file)
    base = predict_frame(rgb, Models(card, clf), WHOLE_INT8)
    p = base.faces[0].mask_probability
    strict = card.model_copy(deep=True)
    strict.models["int8"].decision_threshold = min(0.99, p + 0.01) if p < 0.99 else 0.999
    lenient = card.model_copy(deep=True)
    lenient.models["int8"].decision_threshold = max(0.001, p - 0.01)
    assert predict_frame(rgb, Models(strict, clf), WHOLE_INT8).faces[0].label == "without_mask"
    assert predict_frame(rgb, Models(lenient, clf), WHOLE_INT8).faces[0].label == "with_mask"
    tiny = card.model_copy(update={"min_judgeable_face": min(rgb.shape[:2]) + 1})
    face = predict_frame(rgb, Models(tiny, clf), WHOLE_INT8).faces[0]
    assert face.label == UNKNOWN_LABEL and face.too_small
    assert face.mask_probability == pytest.approx(p, abs=1e-6)  # the probability is the model's, untouched
    just = card.model_copy(update={"min_judgeable_face": min(rgb.shape[:2])})
    assert not predict_frame(rgb, Models(just, clf), WHOLE_INT8).faces[0].too_small


def test_server_applies_the_crafted_card(
    server_factory: ServerFactory,
    models_dir: Path,
    detector_path: Path,
    scene_samples: list[SceneSample],
    tmp_path: Path,
) -> None:
    never = _crafted(models_dir, tmp_path / "never", int8_threshold=0.999999)
    small = _crafted(models_dir, tmp_path / "small", min_judgeable_face=100_000)
    scene = max(scene_samples, key=lambda s: len(s.faces))
    for folder, check in ((never, "threshold"), (small, "min_face")):
        handle = server_factory.start(
            {"MASKLITE_MODELS_DIR": str(folder), "MASKLITE_DETECTOR_PATH": str(detector_path)}
        )
        try:
            models = httpx.get(f"{handle.url}/v1/models").json()
            r = httpx.post(
                f"{handle.url}/v1/predict",
                params={"model": "int8"},
                files={"file": ("s.jpg", scene.data, "image/jpeg")},
                timeout=60,
            )
            assert r.status_code == 200, r.text
            faces = r.json()["faces"]
            assert len(faces) >= 2
            if check == "threshold":
                assert (
                    next(m for m in models["models"] if m["precision"] == "int8")["decision_threshold"]
                    == 0.999999
                )
                assert all(f["label"] == "without_mask" and not f["too_small"] for f in faces)
                assert any(
                    f["mask_probability"] > 0.5 for f in faces
                )  # masked faces are there, just not called
            else:
                assert models["min_judgeable_face"] == models["min_face_size"] == 100_000
                assert all(f["label"] == UNKNOWN_LABEL and f["too_small"] for f in faces)
                assert np.ptp([f["mask_probability"] for f in faces]) > 0  # real probabilities, kept
                metrics = httpx.get(f"{handle.url}/metrics").text
                line = next(
                    ln
                    for ln in metrics.splitlines()
                    if ln.startswith("masklite_faces_total")
                    and 'label="unknown"' in ln
                    and 'model="int8"' in ln
                )
                assert float(line.split()[-1]) == len(faces)
        finally:
            handle.stop()
