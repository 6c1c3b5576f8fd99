"""MASKLITE_DETECTOR_RUNTIME through the service: a real server on each of the other two runtimes (OpenCV's
FaceDetectorYN on the upstream .onnx, onnxruntime on the derived .onnx) answers like the default LiteRT one,
and says which runtime it runs."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import REPO_ROOT, ServerFactory, iou

SAMPLE = REPO_ROOT / "models" / "samples" / "astronaut_pair.jpg"


def predict(url: str) -> dict:
    files = {"file": (SAMPLE.name, SAMPLE.read_bytes(), "image/jpeg")}
    r = httpx.post(f"{url}/v1/predict", params={"model": "int8"}, files=files, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("runtime", ["opencv", "onnxruntime"])
def test_service_on_another_detector_runtime(
    server_factory: ServerFactory, live_server: str, runtime: str
) -> None:
    handle = server_factory.start({"MASKLITE_DETECTOR_RUNTIME": runtime})
    try:
        det = httpx.get(f"{handle.url}/v1/models", timeout=30).json()["detector"]
        assert det["available"] is True and det["runtime"] == runtime, det
        ready = httpx.get(f"{handle.url}/health/ready", timeout=30).json()
        assert ready["ready"] is True and ready["detector"]["sha256_ok"] is True, ready
        got, ref = predict(handle.url), predict(live_server)  # live_server: the default, LiteRT
    finally:
        handle.stop()
    assert len(got["faces"]) == len(ref["faces"]) == 2, (got["faces"], ref["faces"])
    for a, b in zip(
        sorted(got["faces"], key=lambda f: f["box"]),
        sorted(ref["faces"], key=lambda f: f["box"]),
        strict=True,
    ):
        # the same network and decoding: the same faces, the same labels (test_yunet.py holds the scores)
        assert iou(tuple(a["box"]), tuple(b["box"])) >= 0.9, (a, b)
        assert a["label"] == b["label"], (a, b)
        assert a["mask_probability"] == pytest.approx(b["mask_probability"], abs=0.05), (a, b)
