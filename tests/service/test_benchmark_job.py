"""POST /v1/benchmark against a real server: job lifecycle, result schema, artifacts, uploads, bad input.
The CI client that drives it: tests/bench/test_ci.py."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from masklite.card import load_card
from masklite.paths import DEFAULT_MODELS_DIR

SMALL = {
    "threads": [1],
    "batch_sizes": [1, 2],
    "runs": 3,
    "warmup": 1,
    "pipeline_runs": 2,
    "scene_limit": 2,
    "http_runs": 3,
}
JOB_TIMEOUT_S = 180


def wait_done(client: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    seen_progress = []
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        seen_progress.append(job["progress"])
        if job["state"] in ("done", "failed", "cancelled"):
            assert seen_progress == sorted(seen_progress), "progress never goes back"
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} not finished after {JOB_TIMEOUT_S} s: {job}")


def test_benchmark_job_lifecycle_and_schema(client: httpx.Client, scene_samples: list) -> None:
    resp = client.post("/v1/benchmark", json=SMALL)
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["state"] == "queued"
    assert resp.headers["location"] == body["status_url"] == f"/v1/jobs/{body['job_id']}"

    job = wait_done(client, body["job_id"])
    assert job["state"] == "done", job["error"]
    assert job["kind"] == "benchmark"
    assert job["progress"] == 1.0
    assert job["params"]["runs"] == 3 and job["params"]["images"] == []

    result = job["result"]
    assert result["kind"] == "masklite-benchmark"
    shipped = set(load_card(DEFAULT_MODELS_DIR).models)  # every precision in the card (float32, int8, micro)
    assert set(result["models"]) == shipped
    for entry in result["models"].values():
        t1 = entry["threads"]["1"]
        assert set(t1["classifier"]) == {"batch1", "batch2"}
        for row in t1["classifier"].values():
            assert row["latency_ms"]["n"] == 3
            assert 0 < row["latency_ms"]["p50"] <= row["latency_ms"]["p99"]
            assert row["cpu_per_face_ms"]["p50"] > 0
        assert t1["target"]["faces"] >= 2
        assert set(t1["target"]["stages_ms"]) == {"decode", "detect", "classify", "total", "cpu"}
        assert entry["scenes"]["images"] == 2
        assert entry["bytes"] > 0
    http = result["http"]["models"]
    assert set(http) == shipped
    for h in http.values():
        assert h["http_ms"]["n"] == 3
        assert h["ratio_p50"] > 0
        assert h["server_total_ms"]["p50"] <= h["http_ms"]["p50"]
        assert h["faces"] >= 2
    assert any(t["name"].startswith("int8 classifier") for t in result["targets"])

    assert set(job["artifacts"]) == {"result.json", "chart.png", "table.txt"}
    png = client.get(job["artifacts"]["chart.png"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    saved = client.get(job["artifacts"]["result.json"]).json()
    assert saved["models"].keys() == result["models"].keys()
    assert "Classifier latency" in client.get(job["artifacts"]["table.txt"]).text

    listed = client.get("/v1/jobs", params={"kind": "benchmark"}).json()["jobs"]
    assert body["job_id"] in [j["id"] for j in listed]


def test_benchmark_on_uploaded_images(client: httpx.Client, scene_samples: list) -> None:
    picked = scene_samples[:2]
    files = [("images", (s.path.name, s.data, "image/jpeg")) for s in picked]
    params = {**SMALL, "models": ["int8"], "http_runs": 0, "batch_sizes": [1]}
    resp = client.post("/v1/benchmark", data={"params": json.dumps(params)}, files=files)
    assert resp.status_code == 202, resp.text
    job = wait_done(client, resp.json()["job_id"])
    assert job["state"] == "done", job["error"]
    result = job["result"]
    assert result["config"]["image_set"] == "uploaded"
    assert result["config"]["images"] == 2
    assert list(result["models"]) == ["int8"]
    assert "http" not in result
    # the uploads are described (name, size, sha256), never echoed or stored
    assert [i["name"] for i in job["params"]["images"]] == [s.path.name for s in picked]
    assert all(len(i["sha256"]) == 64 for i in job["params"]["images"])


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"json": {"threads": [0]}}, 422, "invalid_parameters"),
        ({"json": {"models": ["fp4"]}}, 422, "invalid_parameters"),
        ({"json": {"models": ["../../etc"]}}, 422, "invalid_parameters"),
        ({"json": {"runs": 10**6}}, 422, "invalid_parameters"),
        ({"json": {"surprise": 1}}, 422, "invalid_parameters"),
        ({"json": [1, 2]}, 422, "invalid_parameters"),
        (
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            422,
            "invalid_parameters",
        ),
        ({"content": b"runs=3", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media_type"),
        ({"files": [("images", ("x.jpg", b"not an image", "image/jpeg"))]}, 422, "invalid_image"),
        ({"files": [("images", ("x.jpg", b"", "image/jpeg"))]}, 422, "invalid_image"),
        ({"files": [("other", ("x.jpg", b"abc", "image/jpeg"))]}, 422, "invalid_parameters"),
    ],
)
def test_benchmark_rejects_bad_requests(client: httpx.Client, kwargs: dict, status: int, code: str) -> None:
    resp = client.post("/v1/benchmark", **kwargs)
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["code"] == code
    assert err["message"] and err["request_id"]


def test_too_many_uploaded_images(client: httpx.Client, scene_samples: list) -> None:
    data = scene_samples[0].data
    files = [("images", (f"{i}.jpg", data, "image/jpeg")) for i in range(17)]
    resp = client.post("/v1/benchmark", files=files)
    assert resp.status_code == 422
    assert "at most 16" in resp.json()["error"]["message"]
