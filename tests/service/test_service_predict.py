"""Both predict routes on scenes-sample photos, against a real uvicorn process with the shipped models."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from masklite.card import load_card
from masklite.faces import match_boxes
from tests.conftest import AnnotatedFace, SceneSample
from tests.helpers.bounds import card_floor

IOU_MATCH = 0.3
MIN_CROP_SIDE = 48


def upload(client: httpx.Client, data: bytes, **params: object) -> httpx.Response:
    return client.post("/v1/predict", params=params, files={"file": ("image.jpg", data, "image/jpeg")})


def match(annotated: tuple[AnnotatedFace, ...], faces: list[dict]) -> list[tuple[AnnotatedFace, dict | None]]:
    """Each annotated face with the predicted face matched to it (masklite's greedy IoU >= 0.3), or None."""
    pairs = dict(match_boxes([a.box for a in annotated], [tuple(f["box"]) for f in faces], IOU_MATCH))
    return [(a, faces[pairs[i]] if i in pairs else None) for i, a in enumerate(annotated)]


@pytest.fixture(scope="module")
def http(live_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def scene_results(http: httpx.Client, scene_samples: list[SceneSample]) -> dict[str, dict[str, dict]]:
    """/v1/predict for every scene with both models: {precision: {scene: response json}}."""
    out: dict[str, dict[str, dict]] = {"int8": {}, "float32": {}}
    for precision in out:
        for s in scene_samples:
            r = upload(http, s.data, model=precision)
            assert r.status_code == 200, r.text
            out[precision][s.name] = r.json()
    return out


def _score(scene_samples: list[SceneSample], results: dict[str, dict]) -> dict[str, float]:
    found = {"with_mask": 0, "without_mask": 0}
    total = {"with_mask": 0, "without_mask": 0}
    correct = matched = 0
    for s in scene_samples:
        for a, f in match(s.faces, results[s.name]["faces"]):
            total[a.label] += 1
            if f is not None:
                found[a.label] += 1
                matched += 1
                correct += f["label"] == a.label
    return {
        "recall_with_mask": found["with_mask"] / total["with_mask"],
        "recall_without_mask": found["without_mask"] / max(1, total["without_mask"]),
        "accuracy_on_found": correct / max(1, matched),
        "matched": matched,
    }


@pytest.fixture(scope="module")
def scene_card(models_dir: Path) -> dict[str, dict]:
    """The card's figures on the scenes sample (the data CI always has), per precision: `detected`."""
    card = load_card(models_dir)
    return {p: card.models[p].metrics["scenes"]["detected"] for p in ("int8", "float32")}


@pytest.mark.parametrize("precision", ["int8", "float32"])
def test_scene_faces_are_found_and_labelled(
    precision: str,
    scene_samples: list[SceneSample],
    scene_results: dict[str, dict[str, dict]],
    scene_card: dict[str, dict],
) -> None:
    """The card's scene figures, each down to the low end of its Wilson interval (tests/helpers/bounds.py):
    masked faces found (card 84.1 % of 88), faces found (86.4 % of 118), labels right on the faces found
    (99.0 % of 102)."""
    score = _score(scene_samples, scene_results[precision])
    card = scene_card[precision]
    annotated = sum(len(s.faces) for s in scene_samples)
    masked = sum(a.label == "with_mask" for s in scene_samples for a in s.faces)
    print(f"{precision}: {score}")
    assert annotated == card["annotated"], "the scenes sample is not the one the card was scored on"
    assert score["recall_with_mask"] >= card_floor(card["recall_per_class"]["with_mask"], masked), score
    assert score["matched"] / annotated >= card_floor(card["face_recall"], annotated), score
    assert score["accuracy_on_found"] >= card_floor(card["accuracy"], card["n"]), score


def test_known_masked_and_unmasked_faces_get_their_labels(
    scene_samples: list[SceneSample], scene_results: dict[str, dict[str, dict]], scene_card: dict[str, dict]
) -> None:
    """Per class: found faces of each label come back with that label as often as the card says (down to the
    low end of its Wilson interval: with_mask 98.6 % of 74, without_mask 100 % of 28)."""
    per_class: dict[str, list[bool]] = {"with_mask": [], "without_mask": []}
    for s in scene_samples:
        for a, f in match(s.faces, scene_results["int8"][s.name]["faces"]):
            if f is not None:
                per_class[a.label].append(f["label"] == a.label)
    assert per_class["with_mask"] and per_class["without_mask"], per_class
    for label, right in per_class.items():
        card = scene_card["int8"]["per_class"][label]
        assert np.mean(right) >= card_floor(card["accuracy"], card["n"]), (label, right)


def test_float32_and_int8_agree(
    scene_samples: list[SceneSample], scene_results: dict[str, dict[str, dict]], scene_card: dict[str, dict]
) -> None:
    """Same boxes (one detector), same labels on the annotated faces, probabilities close on average."""
    agree = total = 0
    diffs = []
    for s in scene_samples:
        f32 = scene_results["float32"][s.name]["faces"]
        i8 = scene_results["int8"][s.name]["faces"]
        assert sorted(tuple(f["box"]) for f in f32) == sorted(tuple(f["box"]) for f in i8), s.name
        by_box = {tuple(f["box"]): f for f in f32}
        diffs += [abs(f["mask_probability"] - by_box[tuple(f["box"])]["mask_probability"]) for f in i8]
        for _, f in match(s.faces, i8):
            if f is not None:
                total += 1
                agree += f["label"] == by_box[tuple(f["box"])]["label"]
    print(f"int8/float32: labels agree on {agree}/{total} annotated faces; |dp| mean {np.mean(diffs):.3f}")
    assert total == scene_card["int8"]["matched"], (total, scene_card["int8"]["matched"])
    # the card scores both precisions alike on every found face: agreement 1.0, down to its Wilson floor
    assert agree / total >= card_floor(1.0, total)
    # mean |dp| over every detected face: 0.024 measured here (locked wheels); the evaluation set's clean
    # crops hold 0.02 (test_shipped_models.py), scene faces are smaller and harder; 0.04 allows 1.7x that,
    # and quantisation gone wrong moves it by tenths
    assert np.mean(diffs) < 0.04


def test_response_shape(http: httpx.Client, scene_samples: list[SceneSample]) -> None:
    s = scene_samples[0]
    r = upload(http, s.data, model="int8")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"request_id", "model", "image", "faces", "timings_ms", "warnings", "summary"}
    assert body["request_id"] == r.headers["x-request-id"]
    models = http.get("/v1/models").json()
    int8 = next(m for m in models["models"] if m["precision"] == "int8")
    assert body["model"] == {
        "name": models["name"],
        "precision": "int8",
        "version": models["version"],
        "sha256": int8["sha256"],
    }
    assert body["image"] == {"width": s.width, "height": s.height}
    assert body["warnings"] == []
    t = body["timings_ms"]
    assert all(t[k] >= 0 for k in ("decode", "detect", "classify", "total"))
    assert t["total"] >= t["decode"] + t["detect"] + t["classify"] - 0.01
    for f in body["faces"]:
        x, y, w, h = f["box"]
        assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= s.width and y + h <= s.height
        assert 0.0 <= f["mask_probability"] <= 1.0
        assert 0.0 < f["detector_score"] <= 1.0
        assert f["label"] in models["labels"]


def test_client_request_id_is_kept(http: httpx.Client, scene_samples: list[SceneSample]) -> None:
    r = http.post(
        "/v1/predict",
        files={"file": ("a.jpg", scene_samples[0].data, "image/jpeg")},
        headers={"X-Request-ID": "client-abc.123"},
    )
    assert r.headers["x-request-id"] == "client-abc.123"
    assert r.json()["request_id"] == "client-abc.123"


@pytest.mark.parametrize("scene_index", [0, 5, 11])
def test_snapshot_route_matches_upload(
    http: httpx.Client, scene_samples: list[SceneSample], scene_index: int
) -> None:
    s = scene_samples[scene_index % len(scene_samples)]
    b64 = base64.b64encode(s.data).decode()
    up = upload(http, s.data).json()
    for image in (b64, "data:image/jpeg;base64," + b64):
        r = http.post("/v1/predict/snapshot", json={"image": image, "model": "int8"})
        assert r.status_code == 200, r.text
        snap = r.json()
        assert snap["image"] == up["image"]
        assert [(f["box"], f["label"]) for f in snap["faces"]] == [
            (f["box"], f["label"]) for f in up["faces"]
        ]


def test_snapshot_options(http: httpx.Client, scene_samples: list[SceneSample]) -> None:
    s = scene_samples[0]
    image = base64.b64encode(s.data).decode()
    whole = http.post(
        "/v1/predict/snapshot", json={"image": image, "model": "float32", "detect_faces": False}
    )
    assert whole.status_code == 200
    assert whole.json()["model"]["precision"] == "float32"
    assert [f["box"] for f in whole.json()["faces"]] == [[0, 0, s.width, s.height]]
    none = http.post("/v1/predict/snapshot", json={"image": image, "min_face_size": 10_000})
    assert none.status_code == 200 and none.json()["faces"] == []


def _jpeg(rgb: np.ndarray, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def test_detect_faces_false_on_crops(http: httpx.Client, scene_samples: list[SceneSample]) -> None:
    """Annotated face crops sent whole: one face covering the image, labelled like the annotation."""
    results = []
    for s in scene_samples:
        rgb = np.asarray(Image.open(s.path).convert("RGB"))
        for a in s.faces:
            x, y, w, h = a.box
            if min(w, h) < MIN_CROP_SIDE:
                continue
            crop = rgb[y : y + h, x : x + w]
            r = upload(http, _jpeg(crop), detect_faces="false")
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["warnings"] == []
            assert len(body["faces"]) == 1
            face = body["faces"][0]
            assert face["box"] == [0, 0, crop.shape[1], crop.shape[0]]
            assert face["detector_score"] is None
            results.append(face["label"] == a.label)
    print(f"crops: {sum(results)}/{len(results)} correct")
    assert len(results) >= 30
    assert np.mean(results) >= 0.8


def test_raw_image_body(http: httpx.Client, scene_samples: list[SceneSample]) -> None:
    s = scene_samples[0]
    raw = http.post("/v1/predict", content=s.data, headers={"Content-Type": "image/jpeg"})
    assert raw.status_code == 200, raw.text
    assert raw.json()["faces"] == upload(http, s.data).json()["faces"]


def test_exif_orientation_is_applied(http: httpx.Client, scene_samples: list[SceneSample]) -> None:
    s = scene_samples[0]
    img = Image.open(s.path)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92, exif=exif.tobytes())
    body = upload(http, buf.getvalue()).json()
    assert body["image"] == {"width": s.height, "height": s.width}


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "CMYK"])
def test_image_modes(http: httpx.Client, scene_samples: list[SceneSample], mode: str) -> None:
    s = scene_samples[0]
    img = Image.open(s.path).convert("RGB")
    if mode == "I;16":
        converted = Image.fromarray(np.asarray(img.convert("L"), dtype=np.uint16) * 257)
        assert converted.mode == "I;16"
    else:
        converted = img.convert(mode)
    buf = io.BytesIO()
    converted.save(buf, "JPEG" if mode == "CMYK" else "PNG")
    r = upload(http, buf.getvalue())
    assert r.status_code == 200, r.text
    assert r.json()["image"] == {"width": s.width, "height": s.height}
