"""/metrics counts what happens; /openapi.json documents the error envelope; /docs is served."""

from __future__ import annotations

import io
import re
import time

import httpx
import numpy as np
from PIL import Image

from tests.conftest import ServerFactory
from tests.helpers.http import metric_value

# a served predict's access-log line: `<date> <time> INFO <pid> masklite.access [<id>] POST /v1/predict 200`
PREDICT_200 = re.compile(r" INFO (\d+) masklite\.access \[\w+\] POST /v1/predict 200 ")


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


def test_metrics_are_summed_over_the_workers(server_factory: ServerFactory) -> None:
    """MASKLITE_WORKERS=2: whichever process answers /metrics, it counts every process's requests (the
    multiprocess files). The access log says which process served each request; both must have served."""
    handle = server_factory.start({"MASKLITE_WORKERS": "2"})
    try:
        data = _jpeg()
        req = "masklite_http_requests_total"
        served = 0
        with httpx.Client(base_url=handle.url, timeout=60) as c:
            before = metric_value(c.get("/metrics").text, req, route="/v1/predict", status="200")
            # new connections, so the kernel spreads them over both processes; until both served some
            while len(set(PREDICT_200.findall(handle.logs()))) < 2 and served < 200:
                with httpx.Client(base_url=handle.url, timeout=60) as one:
                    r = one.post("/v1/predict", files={"file": ("a.jpg", data, "image/jpeg")})
                    assert r.status_code == 200, r.text
                    served += 1
            pids = set(PREDICT_200.findall(handle.logs()))
            assert len(pids) == 2, f"one process served all {served} requests: {pids}"
            # every request logged (and so counted: the same middleware does both, after the response)
            deadline = time.monotonic() + 10
            while len(PREDICT_200.findall(handle.logs())) < served and time.monotonic() < deadline:
                time.sleep(0.05)
            for _ in range(6):  # several scrapes: answered by either process, always the sum
                got = metric_value(c.get("/metrics").text, req, route="/v1/predict", status="200")
                assert got == before + served, (got, before, served)
    finally:
        handle.stop()
