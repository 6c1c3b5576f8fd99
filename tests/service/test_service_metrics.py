"""/metrics counts what happens; /openapi.json documents the error envelope; /docs is served."""

from __future__ import annotations

import io

import httpx
import numpy as np
from PIL import Image

from tests.helpers.http import metric_value


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((240, 320, 3), 90, np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def test_metrics_count_requests(live_server: str) -> None:
    with httpx.Client(base_url=live_server, timeout=60) as c:
        before = c.get("/metrics")
        assert before.status_code == 200
        assert before.headers["content-type"].startswith("text/plain")
        b = before.text
        assert c.post("/v1/predict", files={"file": ("x.jpg", _jpeg())}).status_code == 200
        assert (
            c.post("/v1/predict", params={"model": "float32"}, files={"file": ("x.jpg", _jpeg())}).status_code
            == 200
        )
        assert c.post("/v1/predict", files={"file": ("x.txt", b"text")}).status_code == 415
        assert c.get("/no/such/route").status_code == 404
        a = c.get("/metrics").text
    req = "masklite_http_requests_total"
    assert (
        metric_value(a, req, route="/v1/predict", status="200")
        == metric_value(b, req, route="/v1/predict", status="200") + 2
    )
    assert (
        metric_value(a, req, route="/v1/predict", status="415")
        == metric_value(b, req, route="/v1/predict", status="415") + 1
    )
    assert (
        metric_value(a, req, route="unmatched", status="404")
        >= metric_value(b, req, route="unmatched", status="404") + 1
    )
    stage = "masklite_stage_duration_seconds_count"
    for precision in ("int8", "float32"):
        for s in ("decode", "detect", "classify", "total"):
            assert (
                metric_value(a, stage, stage=s, model=precision)
                == metric_value(b, stage, stage=s, model=precision) + 1
            )
    assert metric_value(a, "masklite_http_request_duration_seconds_count", route="/v1/predict") >= 3
    # one request at a time: each ran alone, on the solo interpreters (MASKLITE_SOLO_THREADS)
    assert (
        metric_value(a, "masklite_solo_requests_total") == metric_value(b, "masklite_solo_requests_total") + 2
    )
    assert "masklite_inflight_requests" in a
    assert "# TYPE masklite_rejections_total counter" in a
    assert metric_value(a, "masklite_ready") == 1.0


def test_openapi_documents_the_envelope(live_server: str) -> None:
    spec = httpx.get(f"{live_server}/openapi.json").json()
    for path in (
        "/v1/predict",
        "/v1/predict/snapshot",
        "/v1/models",
        "/health/live",
        "/health/ready",
        "/metrics",
    ):
        assert path in spec["paths"], path
    predict = spec["paths"]["/v1/predict"]["post"]
    assert "multipart/form-data" in predict["requestBody"]["content"]
    for status in ("413", "415", "422", "503"):
        assert predict["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith(
            "ErrorResponse"
        )
    assert "HTTPValidationError" not in str(spec)
    assert httpx.get(f"{live_server}/docs").status_code == 200
