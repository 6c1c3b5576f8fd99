"""The load generator stops on its own within its bounds (count, time) and refuses non-loopback hosts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.loadgen import LoadConfig, NotLoopback, check_loopback, run_load_sync


class _Handler(BaseHTTPRequestHandler):
    """Answers every POST after `delay` s with `status` (503 carries Retry-After)."""

    delay = 0.02
    status = 200

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        self.rfile.read(int(self.headers.get("content-length", 0)))
        time.sleep(self.delay)
        body = b'{"faces": []}'
        try:
            self.send_response(self.status)
            if self.status in (429, 503):
                self.send_header("Retry-After", "1")
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the timeout test): nothing to answer

    def log_message(self, *args: object) -> None:
        pass


def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


HUNG_S = 30.0  # the slow stub's answer time: a run that waited for one answer took this long


@pytest.fixture
def stub_url() -> Iterator[str]:
    yield from _serve(_Handler)


@pytest.fixture
def busy_url() -> Iterator[str]:
    class Busy(_Handler):
        status = 503
        delay = 0.0

    yield from _serve(Busy)


@pytest.fixture
def slow_url() -> Iterator[str]:
    class Slow(_Handler):
        delay = HUNG_S

    yield from _serve(Slow)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:8000",
        "http://example.com",
        "http://192.168.1.5",
        "https://8.8.8.8/",
        "ftp://127.0.0.1/",
        "http://localhost.example.com:80",
        "http://[2001:db8::1]:8000",
    ],
)
def test_refuses_non_loopback(url: str) -> None:
    with pytest.raises(NotLoopback):
        check_loopback(url)
    with pytest.raises(NotLoopback):
        run_load_sync(LoadConfig(base_url=url, image=b"x", concurrency=1, duration_s=1))


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://127.5.0.1", "http://localhost:1", "http://[::1]:80"]
)
def test_accepts_loopback(url: str) -> None:
    assert check_loopback(url) == url


@pytest.mark.parametrize(
    "kwargs",
    [
        {"concurrency": 0},
        {"concurrency": 10_000},
        {"duration_s": 0},
        {"duration_s": 1e6},
        {"max_requests": 0},
    ],
)
def test_rejects_unbounded_settings(kwargs: dict) -> None:
    cfg = LoadConfig(base_url="http://127.0.0.1:1", image=b"x", **{"duration_s": 1.0, **kwargs})
    with pytest.raises(ValueError):
        cfg.validate()


def test_stops_at_max_requests(stub_url: str) -> None:
    cfg = LoadConfig(base_url=stub_url, image=b"x", concurrency=4, duration_s=30, max_requests=25)
    run = run_load_sync(cfg)
    assert run["requests"] == 25
    assert run["status_counts"] == {"200": 25}
    # which bound ended the run: 25 requests of 20 ms on 4 clients take ~0.2 s, the duration 30 s
    assert run["elapsed_s"] < cfg.duration_s / 2, "the request bound, not the duration, must end the run"
    assert run["latency_ms"]["p50"] >= 15  # the stub sleeps 20 ms: latencies are real
    assert run["requests_per_s"] > 0


def test_stops_at_duration(stub_url: str) -> None:
    cfg = LoadConfig(base_url=stub_url, image=b"x", concurrency=3, duration_s=1.0)
    run = run_load_sync(cfg)
    assert run["elapsed_s"] >= cfg.duration_s
    # a deadline: no new request after `duration_s`; the ones in flight (20 ms each) finish, at worst they
    # are cancelled at the hard deadline, duration + client timeout + 1 s
    assert run["elapsed_s"] <= cfg.duration_s + cfg.timeout_s + 1, run["elapsed_s"]
    assert run["requests"] > 10
    assert run["errors"] == 0


def test_hard_deadline_cancels_hung_requests(slow_url: str) -> None:
    """Requests that hang (the stub answers after 30 s) end at the hard deadline, duration + client
    timeout + 1 s = 2.5 s, not when they are answered."""
    cfg = LoadConfig(base_url=slow_url, image=b"x", concurrency=2, duration_s=0.5, timeout_s=1.0)
    run = run_load_sync(cfg)
    # 2.5 s due; 10 s leaves 4x for a loaded 2-core machine and is a third of waiting for one answer
    assert run["elapsed_s"] < HUNG_S / 3, run["elapsed_s"]
    assert run["errors"] >= 1
    assert "ReadTimeout" in run["error_kinds"]


def test_counts_rejections_and_retry_after(busy_url: str) -> None:
    run = run_load_sync(
        LoadConfig(base_url=busy_url, image=b"x", concurrency=2, duration_s=5, max_requests=10)
    )
    assert run["status_counts"] == {"503": 10}
    assert run["rejected_with_retry_after"] == {"503": 10}
    assert run["rejected_without_retry_after"] == 0
    assert run["ok_per_s"] == 0


def test_connection_refused_is_counted_not_spun(stub_url: str) -> None:
    from bench.server import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    cfg = LoadConfig(base_url=url, image=b"x", concurrency=2, duration_s=0.5)
    run = run_load_sync(cfg)
    assert run["requests"] == run["errors"] > 0
    # each client pauses 10 ms after a refusal (bench/loadgen.py), so at most duration / 10 ms attempts per
    # client however fast the machine (a slow one makes fewer); a busy loop makes thousands
    most = cfg.concurrency * (round(run["elapsed_s"] / 0.01) + 1)
    assert run["requests"] <= most, (
        "a refused connection must back off, not busy-loop",
        run["requests"],
        most,
    )
