"""service/runtime.py's solo interpreters: a request alone in flight runs on MASKLITE_SOLO_THREADS LiteRT
threads (the idle cores), one with company on its inference thread's 1-thread interpreters; both answer
the same faces."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import SceneSample, iou
from tests.helpers.http import metric_value, stalled_upload

SOLO = "masklite_solo_requests_total"


def _predict(c: httpx.Client, data: bytes) -> list[dict]:
    r = c.post("/v1/predict", files={"file": ("scene.jpg", data, "image/jpeg")})
    assert r.status_code == 200, r.text
    return r.json()["faces"]


def _wait_inflight(c: httpx.Client, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while metric_value(c.get("/metrics").text, "masklite_inflight_requests") != n:
        if time.monotonic() > deadline:
            pytest.fail(f"the stalled upload was not admitted: in flight != {n}")
        time.sleep(0.05)


def test_a_lone_request_runs_solo_and_one_with_company_does_not(
    live_server: str, scene_samples: list[SceneSample]
) -> None:
    scene = max(scene_samples, key=lambda s: len(s.faces))
    with httpx.Client(base_url=live_server, timeout=60) as c:
        before = metric_value(c.get("/metrics").text, SOLO)
        alone = _predict(c, scene.data)
        after_alone = metric_value(c.get("/metrics").text, SOLO)
        # company: an admitted upload that stalls holds the other in-flight slot
        stalled = stalled_upload(live_server)
        try:
            _wait_inflight(c, 1)
            company = _predict(c, scene.data)
            after_company = metric_value(c.get("/metrics").text, SOLO)
        finally:
            stalled.close()
    assert after_alone == before + 1
    assert after_company == after_alone
    # 2 LiteRT threads or 1: the same network on the same pixels, so the same faces and labels
    assert len(alone) >= 3 and len(company) == len(alone)
    for a, b in zip(alone, company, strict=True):
        assert iou(tuple(a["box"]), tuple(b["box"])) > 0.99
        assert a["label"] == b["label"]
        assert abs(a["mask_probability"] - b["mask_probability"]) < 1e-3
