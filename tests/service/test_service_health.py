"""Readiness transitions: warming up, no detector, broken or missing models. Liveness never changes."""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from masklite.paths import YUNET_FILENAME
from tests.conftest import REPO_ROOT, STARTUP_TIMEOUT_S, ServerFactory, ServerHandle, flip_middle_byte


def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((240, 320, 3), 128, np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def upload(base: str, model: str = "int8") -> httpx.Response:
    return httpx.post(
        f"{base}/v1/predict", params={"model": model}, files={"file": ("x.jpg", jpeg())}, timeout=60
    )


def test_ready_server(live_server: str) -> None:
    live = httpx.get(f"{live_server}/health/live")
    assert live.status_code == 200 and live.json()["status"] == "alive"
    r = httpx.get(f"{live_server}/health/ready")
    assert r.status_code == 200
    body = r.json()
    assert body["ready"] is True and body["phase"] == "ready" and body["reasons"] == []
    assert body["detector"]["available"] is True and body["detector"]["sha256_ok"] is True
    assert body["detector"]["name"] == "yunet" and body["detector"]["file"] == YUNET_FILENAME
    assert "path" not in body["detector"]
    _assert_no_server_paths(r.text)
    assert body["models"] and all(m["loaded"] for m in body["models"].values())
    assert {"int8", "float32"} <= set(body["models"])


def test_models_endpoint(live_server: str, models_dir: Path) -> None:
    card = json.loads((models_dir / "model_card.json").read_text())
    body = httpx.get(f"{live_server}/v1/models").json()
    assert body["labels"] == card["labels"]
    assert body["input"]["size"] == card["input"]["size"]
    assert body["default_model"] == "int8"
    assert body["detector"]["available"] is True
    by_precision = {m["precision"]: m for m in body["models"]}
    assert set(by_precision) == set(card["models"])
    for precision, entry in card["models"].items():
        got = by_precision[precision]
        assert (got["sha256"], got["bytes"], got["file"]) == (entry["sha256"], entry["bytes"], entry["file"])
        assert got["loaded"] is True
        assert got["metrics"] == entry.get("metrics", {})
        # each model's own input: micro has a smaller one than the card's default
        assert got["input"]["size"] == entry.get("input", card["input"])["size"]
    assert by_precision["micro"]["input"]["size"] != body["input"]["size"]


def test_not_ready_until_warmed_up(server_factory: ServerFactory) -> None:
    """A warm-up that cannot finish while the test looks (a million runs): once the server says it is
    warming, it is not ready and refuses predicts with Retry-After. No race on how fast 60 runs go; that
    a finished warm-up makes it ready is what every other test server's start waits for."""
    handle = server_factory.start(
        {"MASKLITE_WARMUP_RUNS": "1000000", "MASKLITE_THREADS": "1"}, wait="/health/live"
    )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        r = httpx.get(f"{handle.url}/health/ready")
        while r.json()["phase"] != "warming":  # loading the models first
            assert r.status_code == 503 and time.monotonic() < deadline, r.text
            time.sleep(0.1)
            r = httpx.get(f"{handle.url}/health/ready")
        assert r.status_code == 503, r.text
        assert r.json()["ready"] is False
        assert r.headers["retry-after"]
        p = upload(handle.url)
        assert p.status_code == 503 and p.json()["error"]["code"] == "not_ready"
        assert p.headers["retry-after"]
        assert httpx.get(f"{handle.url}/health/ready").json()["phase"] == "warming"
    finally:
        handle.stop()


def upload_whole(base: str) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/predict",
        params={"model": "int8", "detect_faces": "false"},
        files={"file": ("x.jpg", jpeg())},
        timeout=60,
    )


def _assert_no_server_paths(text: str, *paths: Path) -> None:
    """Unauthenticated routes name files, never the server's directories."""
    for path in (REPO_ROOT, *paths):
        assert str(path) not in text, f"{path} leaked: {text}"


def _assert_detector_not_ready(handle: ServerHandle, needle: str, *paths: Path) -> None:
    """503 not-ready with the detector's reason; faces are refused, whole images still served."""
    body = _wait_settled(handle.url)
    r = httpx.get(f"{handle.url}/health/ready")
    assert r.status_code == 503 and r.headers["retry-after"], r.text
    assert body["ready"] is False and body["phase"] == "degraded", body
    assert body["detector"]["available"] is False and body["detector"]["optional"] is False
    assert needle in body["detector"]["error"], body
    assert any("face detector" in reason and needle in reason for reason in body["reasons"]), body
    assert all(m["loaded"] for m in body["models"].values())  # the classifiers are fine
    _assert_no_server_paths(r.text, *paths)
    faces = upload(handle.url)
    assert faces.status_code == 503, faces.text
    assert faces.json()["error"]["code"] == "detector_unavailable" and faces.headers["retry-after"]
    _assert_no_server_paths(faces.text, *paths)
    whole = upload_whole(handle.url)  # asked for explicitly: still served
    assert whole.status_code == 200, whole.text
    out = whole.json()
    assert [f["box"] for f in out["faces"]] == [[0, 0, 320, 240]] and out["warnings"] == []
    models = httpx.get(f"{handle.url}/v1/models")
    assert models.json()["detector"]["available"] is False
    _assert_no_server_paths(models.text, *paths)
    assert handle.alive() and httpx.get(f"{handle.url}/health/live").status_code == 200


def test_missing_detector_is_not_ready(server_factory: ServerFactory, tmp_path: Path) -> None:
    handle = server_factory.start(
        {"MASKLITE_DETECTOR_PATH": str(tmp_path / "absent.onnx")}, wait="/health/live"
    )
    try:
        _assert_detector_not_ready(handle, "absent.onnx", tmp_path)
    finally:
        handle.stop()
    assert "face detector unavailable, NOT READY" in handle.logs()


def test_corrupt_shipped_detector_is_not_ready(
    server_factory: ServerFactory, models_dir: Path, tmp_path: Path
) -> None:
    """One flipped byte in the models folder's detector: OpenCV would still load it, the sha256 does not."""
    broken = _copy_models(models_dir, tmp_path / "models")
    card = json.loads((broken / "model_card.json").read_text())
    flip_middle_byte(broken / card["detector"]["file"])
    env = {"MASKLITE_MODELS_DIR": str(broken), "MASKLITE_DETECTOR_PATH": ""}
    handle = server_factory.start(env, wait="/health/live")
    try:
        _assert_detector_not_ready(handle, "sha256", broken)
        assert httpx.get(f"{handle.url}/health/ready").json()["detector"]["sha256_ok"] is False
    finally:
        handle.stop()


def test_corrupt_litert_detector_is_not_ready(
    server_factory: ServerFactory, models_dir: Path, tmp_path: Path
) -> None:
    """The file the default runtime really loads (the derived LiteRT YuNet), one byte flipped: its own
    sha256 in the card's runtime_files stops it, as the .onnx's does for OpenCV."""
    broken = _copy_models(models_dir, tmp_path / "models")
    card = json.loads((broken / "model_card.json").read_text())
    assert card["detector"]["runtime"] == "litert"
    tflite = broken / card["detector"]["runtime_files"]["litert"]["file"]
    flip_middle_byte(tflite)
    env = {"MASKLITE_MODELS_DIR": str(broken), "MASKLITE_DETECTOR_PATH": ""}
    handle = server_factory.start(env, wait="/health/live")
    try:
        _assert_detector_not_ready(handle, "sha256", broken)
        # (/health/ready's detector.sha256_ok speaks of the card's .onnx only, which is intact here)
        assert tflite.name in handle.logs()  # the log names the file (the answers do not: no server paths)
    finally:
        handle.stop()


def test_detector_optional_opts_in_to_whole_images(server_factory: ServerFactory, tmp_path: Path) -> None:
    env = {"MASKLITE_DETECTOR_PATH": str(tmp_path / "absent.onnx"), "MASKLITE_DETECTOR_OPTIONAL": "true"}
    handle = server_factory.start(env)
    try:
        r = httpx.get(f"{handle.url}/health/ready")
        assert r.status_code == 200
        body = r.json()
        assert body["ready"] is True and body["detector"]["optional"] is True
        assert body["detector"]["available"] is False and "absent.onnx" in body["detector"]["error"]
        assert body["warnings"]
        _assert_no_server_paths(r.text, tmp_path)
        p = upload(handle.url)
        assert p.status_code == 200
        out = p.json()
        assert [f["box"] for f in out["faces"]] == [[0, 0, 320, 240]]
        assert out["faces"][0]["detector_score"] is None
        assert out["warnings"] and "detector" in out["warnings"][0]
    finally:
        handle.stop()
    assert "face detector unavailable, whole images will be classified" in handle.logs()


def _copy_models(models_dir: Path, target: Path) -> Path:
    shutil.copytree(models_dir, target)
    return target


def test_corrupt_model_means_not_ready_but_alive(
    server_factory: ServerFactory, models_dir: Path, tmp_path: Path
) -> None:
    broken = _copy_models(models_dir, tmp_path / "models")
    card = json.loads((broken / "model_card.json").read_text())
    flip_middle_byte(broken / card["models"]["int8"]["file"])
    handle = server_factory.start({"MASKLITE_MODELS_DIR": str(broken)}, wait="/health/live")
    try:
        handle.wait_for("/health/live")
        body = _wait_settled(handle.url)
        assert body["ready"] is False and body["phase"] == "degraded"
        assert body["models"]["int8"]["loaded"] is False
        assert "sha256" in body["models"]["int8"]["error"]
        assert any("int8" in reason for reason in body["reasons"])
        assert httpx.get(f"{handle.url}/health/live").status_code == 200
        bad = upload(handle.url, "int8")
        assert bad.status_code == 503 and bad.json()["error"]["code"] == "model_unavailable"
        assert upload(handle.url, "float32").status_code == 200  # the good model keeps serving
        assert handle.alive()
    finally:
        handle.stop()
    assert "NOT READY" in handle.logs()


def test_missing_model_file_and_missing_card(
    server_factory: ServerFactory, models_dir: Path, tmp_path: Path
) -> None:
    partial = _copy_models(models_dir, tmp_path / "partial")
    card = json.loads((partial / "model_card.json").read_text())
    (partial / card["models"]["float32"]["file"]).unlink()
    empty = tmp_path / "empty"
    empty.mkdir()
    for folder, phase, needle in ((partial, "degraded", "missing"), (empty, "failed", "model card")):
        handle = server_factory.start({"MASKLITE_MODELS_DIR": str(folder)}, wait="/health/live")
        try:
            body = _wait_settled(handle.url)
            assert body["ready"] is False and body["phase"] == phase, body
            assert any(needle in reason for reason in body["reasons"]), body
            assert httpx.get(f"{handle.url}/health/live").status_code == 200
            if phase == "failed":
                p = upload(handle.url)
                assert p.status_code == 503 and p.json()["error"]["code"] == "not_ready"
                assert httpx.get(f"{handle.url}/v1/models").status_code == 503
        finally:
            handle.stop()


def _wait_settled(base: str, timeout: float = 120.0) -> dict:
    """/health/ready once loading has finished (ready, degraded or failed)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = httpx.get(f"{base}/health/ready").json()
        if body["phase"] not in ("starting", "loading", "warming"):
            return body
        time.sleep(0.1)
    raise AssertionError("loading did not finish")
