"""In-process pipeline vs the HTTP round trip of /v1/predict for the same image, on loopback.

In-process uses the service's own settings for one request: a 1-thread LiteRT interpreter and YuNet,
masklite.pipeline.predict_image. HTTP posts the same bytes as multipart, one request at a time, and also
reads the server's own `timings_ms.total` (what the server spent, without the client and the socket).
The two alternate request by request, so a burst of background load hits both alike.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from bench import stats
from bench.images import BenchImage
from bench.inprocess import STAGES, Progress, detector_or_problem, load_classifiers, run_pipeline_once
from bench.loadgen import check_loopback
from masklite.card import load_card


def _post(client: httpx.Client, image: BenchImage, precision: str) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    resp = client.post(
        "/v1/predict", params={"model": precision}, files={"file": ("image.jpg", image.data, "image/jpeg")}
    )
    elapsed = (time.perf_counter() - t0) * 1e3
    if resp.status_code != 200:
        raise RuntimeError(f"/v1/predict answered {resp.status_code}: {resp.text[:300]}")
    return elapsed, resp.json()


def measure_pair(
    client: httpx.Client,
    image: BenchImage,
    models_dir: Path,
    precision: str,
    runs: int,
    warmup: int,
    detector_path: Path | None,
) -> dict[str, Any]:
    """In-process and HTTP runs alternated one by one, so both see the same background load."""
    card = load_card(models_dir)
    classifier = load_classifiers(card, models_dir, [precision])[precision]
    detector, _ = detector_or_problem(card, detector_path)
    rows, round_trip, server_total, faces = [], [], [], 0
    for i in range(warmup + runs):
        timings, _found = run_pipeline_once(image, card, classifier, detector, precision=precision)
        elapsed, body = _post(client, image, precision)
        if i >= warmup:
            rows.append(timings)
            round_trip.append(elapsed)
            server_total.append(float(body["timings_ms"]["total"]))
            faces = len(body["faces"])
    return {
        "inprocess": {s: stats.summarize([r[s] for r in rows]) for s in STAGES},
        "http_ms": stats.summarize(round_trip),
        "server_total_ms": stats.summarize(server_total),
        "faces": faces,
    }


def http_vs_inprocess(
    base_url: str,
    image: BenchImage,
    models_dir: Path,
    precisions: list[str],
    runs: int = 50,
    warmup: int = 5,
    detector_path: Path | None = None,
    headers: dict[str, str] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Per precision: in-process p50, HTTP round-trip p50, server-side p50 and the HTTP/in-process ratio."""
    check_loopback(base_url)
    out: dict[str, Any] = {"url": base_url, "image": image.name, "bytes": len(image.data), "runs": runs}
    models: dict[str, Any] = {}
    with httpx.Client(base_url=base_url, timeout=30, headers=headers or {}, trust_env=False) as client:
        for i, precision in enumerate(precisions):
            http = measure_pair(client, image, models_dir, precision, runs, warmup, detector_path)
            inproc = http.pop("inprocess")
            a, b = inproc["total"]["p50"], http["http_ms"]["p50"]
            models[precision] = {
                "inprocess_ms": inproc["total"],
                "inprocess_stages_ms": {k: v["p50"] for k, v in inproc.items()},
                **http,
                "ratio_p50": round(b / a, 3) if a else None,
                "server_over_inprocess_p50": round(http["server_total_ms"]["p50"] / a, 3) if a else None,
                "transport_ms_p50": round(b - http["server_total_ms"]["p50"], 3),
            }
            if progress is not None:
                progress((i + 1) / len(precisions), f"http vs in-process: {precision}")
    out["models"] = models
    return out
