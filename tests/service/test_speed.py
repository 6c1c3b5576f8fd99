"""Issue #14 behaviour: batched classifier, reduced-size JPEG decoding of phone photos, detect_size.

No timings here (they belong to benchmarks on a quiet machine); these check that the fast paths give the
same answers as the slow ones, on the real models and the scenes.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from bench.inprocess import detector_or_problem
from bench.phone import PHONE_PIXELS, resized_jpeg
from masklite.card import load_card, verify_model_file
from masklite.classifier import MAX_BATCH, Classifier
from masklite.faces import match_boxes
from masklite.image import decode_image_reduced
from masklite.pipeline import Models, PredictOptions, predict_image
from service.schemas import MAX_DETECT_SIZE, MIN_DETECT_SIZE
from tests.conftest import SceneSample, skip_or_fail


@pytest.mark.parametrize("precision", ["int8", "float32", "micro"])
def test_one_invoke_for_all_faces_gives_the_same_probabilities(models_dir: Path, precision: str) -> None:
    card = load_card(models_dir)
    if precision not in card.models:
        skip_or_fail(f"no {precision} model in the card")
    clf = Classifier(verify_model_file(card, models_dir, precision))
    h, w = clf.input_size
    x = np.random.default_rng(0).uniform(-1, 1, (MAX_BATCH + 3, h, w, 3)).astype(np.float32)
    batched = clf.predict(x)  # two invokes: 16 + 3
    one_by_one = np.concatenate([clf.predict(x[i : i + 1]) for i in range(len(x))])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-6)
    assert clf.predict(x[:0]).shape == (0, clf.num_classes)


@pytest.fixture(scope="module")
def parts(models_dir: Path, detector_path: Path):
    card = load_card(models_dir)
    detector, problem = detector_or_problem(card, detector_path, None, models_dir)
    assert detector is not None, problem
    return card, Classifier(verify_model_file(card, models_dir, "int8")), detector


def test_a_12mp_jpeg_decodes_at_a_quarter(scene_samples: list[SceneSample]) -> None:
    data = resized_jpeg(scene_samples[0].data, pixels=PHONE_PIXELS)
    full_w, full_h = Image.open(io.BytesIO(data)).size
    rgb, size = decode_image_reduced(data, min_side=960)
    assert size == (full_w, full_h)
    assert rgb.shape[1] == -(-full_w // 4) and rgb.shape[0] == -(-full_h // 4)
    # a PNG has no DCT scaling: full size
    png = io.BytesIO()
    Image.new("RGB", (1500, 40), (9, 9, 9)).save(png, "PNG")
    rgb, size = decode_image_reduced(png.getvalue(), min_side=160)
    assert rgb.shape[:2] == (40, 1500) and size == (1500, 40)


def test_exif_rotated_photo_reports_the_turned_full_size(scene_samples: list[SceneSample]) -> None:
    img = Image.open(io.BytesIO(resized_jpeg(scene_samples[0].data, pixels=PHONE_PIXELS)))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    rgb, (width, height) = decode_image_reduced(buf.getvalue(), min_side=960)
    assert (width, height) == (img.height, img.width)
    assert rgb.shape[0] > rgb.shape[1]  # portrait, like the full-size view


def test_reduced_decode_keeps_boxes_and_labels_of_the_full_decode(
    scene_samples: list[SceneSample], parts
) -> None:
    """Scenes upscaled to 12 MP: the 1/4-size decode finds the faces of the full decode, boxes in full-size
    pixels (IoU >= 0.9) with the same labels, for nearly every face (small faces near the detector's
    threshold can flip on any resampling; `make bench` reports the exact share)."""
    card, clf, detector = parts
    total = same_box = same_label = 0
    for s in sorted(scene_samples, key=lambda s: -max(f.box[2] for f in s.faces))[:8]:
        data = resized_jpeg(s.data, pixels=PHONE_PIXELS)
        models = Models(card, clf, detector)
        reduced = predict_image(data, models, PredictOptions())
        full = predict_image(data, models, PredictOptions(reduce=False))
        assert reduced.decoded_size[0] < full.decoded_size[0] // 3
        assert (reduced.width, reduced.height) == (full.width, full.height)
        a, b = full.faces, reduced.faces
        pairs = match_boxes([f.box for f in a], [f.box for f in b], 0.9)
        total += max(len(a), len(b))
        same_box += len(pairs)
        same_label += sum(a[i].label == b[j].label for i, j in pairs)
        for f in b:
            x, y, w, h = f.box
            assert x >= 0 and y >= 0 and x + w <= reduced.width and y + h <= reduced.height
    assert total >= 20
    assert same_box / total >= 0.85, f"{same_box}/{total} boxes kept"
    assert same_label / max(same_box, 1) >= 0.95, f"{same_label}/{same_box} labels kept"


# ---------------------------------------------------------------- detect_size on the real service


def test_detect_size_is_bounded_and_changes_what_is_found(
    live_server: str, scene_samples: list[SceneSample]
) -> None:
    crowded = max(scene_samples, key=lambda s: len(s.faces))
    snapshot = {"image": base64.b64encode(crowded.data).decode()}
    with httpx.Client(base_url=live_server, timeout=60) as c:

        def post(size: int | None) -> httpx.Response:
            params = {} if size is None else {"detect_size": size}
            return c.post("/v1/predict", params=params, files={"file": ("s.jpg", crowded.data, "image/jpeg")})

        for bad in (MIN_DETECT_SIZE - 1, MAX_DETECT_SIZE + 1, 0):
            r = post(bad)
            assert r.status_code == 422, r.text
            r = c.post("/v1/predict/snapshot", json={**snapshot, "detect_size": bad})
            assert r.status_code == 422, r.text
        small, default, large = (post(size) for size in (MIN_DETECT_SIZE, None, MAX_DETECT_SIZE))
        for r in (small, default, large):
            assert r.status_code == 200, r.text
        n_small, n_default, n_large = (len(r.json()["faces"]) for r in (small, default, large))
        assert n_small < n_default, "a 160 px detector input finds fewer of a crowd's faces"
        # the largest input is the same photo seen in more detail: boxes in the photo's own pixels, each
        # inside it, and at least as many of the crowd's faces as the default input finds
        body = large.json()
        assert (body["image"]["width"], body["image"]["height"]) == (crowded.width, crowded.height)
        for face in body["faces"]:
            x, y, w, h = face["box"]
            assert min(x, y) >= 0 and min(w, h) > 0, face
            assert x + w <= crowded.width and y + h <= crowded.height, face
        assert n_large >= n_default, (n_large, n_default)
        r = c.post("/v1/predict/snapshot", json={**snapshot, "detect_size": MIN_DETECT_SIZE})
        assert r.status_code == 200 and len(r.json()["faces"]) == n_small


def test_models_route_names_the_detector_runtime(live_server: str) -> None:
    det = httpx.get(f"{live_server}/v1/models", timeout=30).json()["detector"]
    assert det["available"] is True
    assert det["runtime"] == "litert" and det["max_side"] == 640
