"""Overload: 200 concurrent clients on loopback (bench/loadgen.py, bounded in count and time, stops by
itself) against a REAL server with the default admission limit (MASKLITE_MAX_INFLIGHT=16).

Every answer is 200, 429 or 503, every refusal carries Retry-After, no connection fails, the server stays
up, the accepted requests' p99 stays within what the admission limit implies, its RSS stays bounded, and
afterwards single requests are as fast as before the flood.

CI profile: 6 s of load on the shared live server. Long profile (`make overload`): 30 s on a fresh server.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from bench.images import load_scenes, make_target_image
from bench.loadgen import LoadConfig, run_load_sync
from tests.conftest import ServerFactory, ServerHandle
from tests.hardening.hardening_support import LONG, long_only, rss_mb, wait_healthy
from tests.helpers.http import read_all, stalled_upload

CLIENTS = 200
CLIENT_TIMEOUT_S = 30.0
RSS_GROWTH_MB = 300
# Admission bounds the queue: an accepted request waits for at most MAX_INFLIGHT / THREADS others, so it
# takes at most ~(MAX_INFLIGHT + THREADS) / (accepted per second) -- Little's law with every slot full.
# Service times under the flood are several times the single-request time (the same 2 cores also run
# the 200 client coroutines and the refusals), so the bound uses the throughput measured during the
# flood, x2 for the tail. Server-side latency is each request's access-log line (body upload included).
# The client-side latency also holds the load generator's own waits (200 coroutines in one Python process
# on the same 2 cores): reported, not bounded; a separate curl process probes /health/live meanwhile to
# show the server's event loop keeps answering.
SERVER_P99_SLACK = 2.0
KEEPALIVE_RACE = {"ReadError", "RemoteProtocolError", "WriteError"}
SERVER_P99_FLOOR_MS = 1000.0
RECOVERY_SLACK = 2.0
RECOVERY_FLOOR_MS = 150.0
_ACCESS_200 = re.compile(r"\] POST /v1/predict 200 ([0-9.]+)ms")


def solo_latencies(url: str, image: bytes, n: int = 20) -> list[float]:
    out = []
    with httpx.Client(base_url=url, timeout=30) as c:
        for _ in range(n):
            t0 = time.perf_counter()
            r = c.post("/v1/predict", files={"file": ("s.jpg", image, "image/jpeg")})
            out.append((time.perf_counter() - t0) * 1e3)
            assert r.status_code == 200, r.text
    return out


class LivenessProbe(threading.Thread):
    """GET /health/live with curl (its own process, so the load generator's event loop is not in the
    measurement) every 0.5 s: how long the server's event loop takes to answer during the flood."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.times_ms, self._halt = url + "/health/live", [], threading.Event()
        self.curl = shutil.which("curl")

    def run(self) -> None:
        while self.curl and not self._halt.wait(0.5):
            out = subprocess.run(
                [
                    self.curl,
                    "-s",
                    "-o",
                    "/dev/null",
                    "-m",
                    "30",
                    "-w",
                    "%{http_code} %{time_total}",
                    self.url,
                ],
                capture_output=True,
                text=True,
            ).stdout.split()
            if len(out) == 2 and out[0] == "200":
                self.times_ms.append(float(out[1]) * 1e3)
            else:
                self.times_ms.append(float("inf"))

    def stop(self) -> list[float]:
        self._halt.set()
        self.join(timeout=35)
        return sorted(self.times_ms)


class RssSampler(threading.Thread):
    """Max VmRSS of a process, sampled every 0.2 s until stopped."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.max_mb, self._halt = pid, rss_mb(pid), threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.2):
            try:
                self.max_mb = max(self.max_mb, rss_mb(self.pid))
            except OSError:
                return

    def stop(self) -> float:
        self._halt.set()
        self.join(timeout=5)
        return self.max_mb


def accepted_server_ms(log_text: str) -> list[float]:
    """Server-side latency of every accepted predict in this log text (the access line of each request)."""
    return [float(ms) for ms in _ACCESS_200.findall(log_text)]


def overload(handle: ServerHandle, image: bytes, duration_s: float, record_property: Callable) -> None:
    wait_healthy(handle.url)
    ready = httpx.get(handle.url + "/health/ready").json()
    max_inflight, threads = ready["max_inflight"], ready["threads"]
    solo_latencies(handle.url, image, 3)  # warm the connection path
    before = solo_latencies(handle.url, image)
    p50_before = statistics.median(before)
    pid = handle.proc.pid
    rss_before = rss_mb(pid)
    log_mark = len(handle.logs())
    sampler, probe = RssSampler(pid), LivenessProbe(handle.url)
    sampler.start()
    probe.start()
    try:
        run = run_load_sync(
            LoadConfig(
                base_url=handle.url,
                image=image,
                concurrency=CLIENTS,
                duration_s=duration_s,
                timeout_s=CLIENT_TIMEOUT_S,
                label="overload",
            )
        )
    finally:
        rss_peak = sampler.stop()
        live_ms = probe.stop()
    in_order = accepted_server_ms(handle.logs()[log_mark:])
    server_ms = sorted(in_order)
    time.sleep(1.0)
    after = solo_latencies(handle.url, image)
    p50_after = statistics.median(after)
    ok = run["ok_latency_ms"]
    live_p50 = statistics.median(live_ms) if live_ms else 0.0
    live_max = live_ms[-1] if live_ms else 0.0
    server_p99 = server_ms[min(len(server_ms) - 1, int(0.99 * len(server_ms)))] if server_ms else 0.0
    ok_rate = len(server_ms) / run["elapsed_s"]
    server_bound = (
        SERVER_P99_SLACK * (max_inflight + threads) / max(ok_rate, 1e-9) * 1e3 + SERVER_P99_FLOOR_MS
    )
    codes = run["status_counts"]
    record_property("cases", run["requests"])
    record_property(
        "detail",
        f"{CLIENTS} clients x {duration_s:.0f} s: {run['requests']} requests, status {codes}, "
        f"transport errors {run['errors']}; "
        f"{ok_rate:.1f} accepted/s; accepted: server-side p99 {server_p99:.0f} ms "
        f"(bound {server_bound:.0f}), client-side p50 "
        f"{ok.get('p50', 0):.0f} / p99 {ok.get('p99', 0):.0f} ms; "
        f"/health/live during the flood (curl, n={len(live_ms)}): "
        f"median {live_p50:.0f} / max {live_max:.0f} ms; "
        f"solo p50 {p50_before:.0f} ms before, {p50_after:.0f} ms after; "
        f"RSS {rss_before:.0f} -> peak {rss_peak:.0f} MB",
    )
    print(run)
    assert set(codes) <= {"200", "429", "503"}, codes
    # A connection error is allowed only as the HTTP keep-alive race: the server closes a connection idle
    # for its keep-alive timeout (uvicorn: 5 s) just as a starved client reuses it. Rare, never a refusal
    # to answer, and the server log must show nothing (asserted below).
    assert set(run["error_kinds"]) <= KEEPALIVE_RACE, run["error_kinds"]
    assert run["errors"] <= max(1, 0.005 * run["requests"]), run["error_kinds"]
    assert run["cancelled_clients"] == 0, run
    assert run["rejected_without_retry_after"] == 0, run
    assert int(codes.get("200", 0)) > 0 and int(codes.get("503", 0)) + int(codes.get("429", 0)) > 0, codes
    assert handle.alive(), handle.logs()[-3000:]
    assert "unhandled error" not in handle.logs()
    assert not re.search(r" (ERROR|WARNING) .*(uvicorn|masklite)", handle.logs()[log_mark:]), handle.logs()[
        -3000:
    ]
    assert len(server_ms) == int(codes.get("200", 0)), (len(server_ms), codes)
    # the event loop kept answering: every liveness probe answered, within the client timeout (a deadline:
    # a probe that waited longer was not answered at all as far as any client is concerned)
    assert live_max < CLIENT_TIMEOUT_S * 1e3, live_ms
    assert rss_peak < rss_before + RSS_GROWTH_MB, (rss_before, rss_peak)
    # recovered: nothing left in flight
    assert httpx.get(handle.url + "/health/ready").json()["inflight"] == 0
    # Latency under and after the flood is a measurement of a quiet machine: on the shared 2-core CI box the
    # suite's other processes decide it. The long profile (`make reliability`, RELIABILITY.md) holds these
    # bounds; the short one records the figures above and checks what does not depend on the clock.
    if LONG:
        assert server_p99 <= server_bound, (server_p99, server_bound)
        if len(in_order) >= 30:  # no growth over the run: the last third is no slower than the first
            third = len(in_order) // 3
            first, last = statistics.median(in_order[:third]), statistics.median(in_order[-third:])
            assert last <= 2 * first + SERVER_P99_FLOOR_MS, (first, last)
        assert p50_after <= RECOVERY_SLACK * p50_before + RECOVERY_FLOOR_MS, (before, after)


@pytest.fixture(scope="module")
def camera_frame(scenes_dir: Path) -> bytes:
    """The 640x480 frame with 2-4 faces the benchmarks use (a camera-sized request)."""
    target = make_target_image(load_scenes(scenes_dir))
    assert target is not None
    return target.data


def test_overload_short(
    live_server_handle: ServerHandle, camera_frame: bytes, record_property: Callable
) -> None:
    overload(live_server_handle, camera_frame, 6.0, record_property)


@long_only
@pytest.mark.slow
def test_overload_30s_fresh_server(
    server_factory: ServerFactory, camera_frame: bytes, record_property: Callable
) -> None:
    """The issue's exact scenario on a server that served nothing before (its RSS is the cleanest)."""
    handle = server_factory.start()
    try:
        overload(handle, camera_frame, 30.0, record_property)
    finally:
        handle.stop()


def test_stalled_uploads_release_their_slots(
    server_factory: ServerFactory, camera_frame: bytes, record_property: Callable
) -> None:
    """MAX_INFLIGHT clients that stall mid-upload (slowloris) lock predict out only until
    MASKLITE_BODY_TIMEOUT_S: then each gets 408 and its slot is free again."""
    timeout_s = 2.0
    handle = server_factory.start(
        {
            "MASKLITE_MAX_INFLIGHT": "2",
            "MASKLITE_BODY_TIMEOUT_S": str(timeout_s),
            "MASKLITE_THREADS": "1",
            "MASKLITE_WARMUP_RUNS": "0",
        }
    )
    try:
        t0 = time.monotonic()
        stalled = [stalled_upload(handle.url) for _ in range(2)]
        with httpx.Client(base_url=handle.url, timeout=30) as c:
            deadline = time.monotonic() + timeout_s  # both admitted: an event, not a 0.5 s guess
            while c.get("/health/ready").json()["inflight"] < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            files = {"file": ("f.jpg", camera_frame, "image/jpeg")}
            busy = c.post("/v1/predict", files=files)
            assert busy.status_code == 503 and busy.json()["error"]["code"] == "overloaded", busy.text
            answers = [read_all(s) for s in stalled]
            freed_after = time.monotonic() - t0
            for a in answers:
                assert a.startswith("HTTP/1.1 408") and "request_timeout" in a, a[:300]
            # a deadline the product promises: 408 at MASKLITE_BODY_TIMEOUT_S (2 s) after the last byte;
            # +5 s for a loaded 2-core machine; a slot held to the 30 s socket timeout fails it
            assert freed_after < timeout_s + 5, freed_after
            ok = c.post("/v1/predict", files=files)
            assert ok.status_code == 200, ok.text
            assert c.get("/health/ready").json()["inflight"] == 0
        record_property("cases", 3)
        record_property(
            "detail", f"2 stalled uploads answered 408 after {freed_after:.1f} s (limit {timeout_s:g} s)"
        )
    finally:
        for s in stalled:
            s.close()
        handle.stop()
