"""Prometheus metrics (served by routers/metrics.py as GET /metrics).

Single process: the default registry. Several uvicorn workers: `python -m service` points
PROMETHEUS_MULTIPROC_DIR at a fresh folder before the workers start, every worker writes its values
there, and /metrics aggregates all workers (prometheus_client multiprocess mode).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import multiprocess as _mp

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# the *_created series double the exposition size and nobody graphs them
disable_created_metrics()

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.5, 10.0)

HTTP_REQUESTS = Counter(
    "masklite_http_requests_total",
    "HTTP requests by route template, method and status",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "masklite_http_request_duration_seconds",
    "Server-side HTTP latency by route template",
    ["route"],
    buckets=_LATENCY_BUCKETS,
)
STAGE_LATENCY = Histogram(
    "masklite_stage_duration_seconds",
    "Inference stage latency (queue, decode, detect, classify, total) by model precision",
    ["stage", "model"],
    buckets=_LATENCY_BUCKETS,
)
INFLIGHT = Gauge(
    "masklite_inflight_requests", "Predict requests admitted and not finished", multiprocess_mode="livesum"
)
REJECTIONS = Counter("masklite_rejections_total", "Requests refused before inference, by reason", ["reason"])
FACES = Counter("masklite_faces_total", "Faces returned, by model precision and label", ["model", "label"])
SOLO = Counter(
    "masklite_solo_requests_total", "Requests that ran alone in flight, on solo_threads LiteRT threads"
)
READY = Gauge("masklite_ready", "1 when models are loaded and warmed up", multiprocess_mode="min")


def render() -> tuple[bytes, str]:
    """The exposition text for /metrics (all workers in multiprocess mode)."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        _mp.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
