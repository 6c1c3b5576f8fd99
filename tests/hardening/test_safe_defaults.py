"""Safe defaults on REAL servers: loopback unless told, job routes closed beyond loopback without an API key
(predict stays open), and an opaque X-Masklite-Instance instead of the host name."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

from service.settings import Settings
from tests.conftest import REPO_ROOT, ServerFactory, ServerHandle, free_port
from tests.hardening.hardening_support import JOB_ROUTES, assert_envelope


def test_the_default_bind_is_loopback(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.delenv("MASKLITE_HOST", raising=False)
    assert Settings().host == "127.0.0.1"
    env = {k: v for k, v in os.environ.items() if k != "MASKLITE_HOST"}
    port = free_port()
    env.update(MASKLITE_PORT=str(port), MASKLITE_JOBS_DIR=str(tmp_path), MASKLITE_WARMUP_RUNS="0")
    proc = subprocess.Popen(
        [sys.executable, "-m", "service"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)
        listening = {
            c.laddr.ip
            for c in psutil.Process(proc.pid).net_connections("tcp")
            if c.status == psutil.CONN_LISTEN
        }
        assert listening == {"127.0.0.1"}, listening
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def everywhere(
    server_factory: ServerFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerHandle]:
    """Listening on every interface, no MASKLITE_API_KEY (the handle's URL is its loopback address)."""
    env = {"MASKLITE_HOST": "0.0.0.0", "MASKLITE_JOBS_DIR": str(tmp_path_factory.mktemp("jobs-open"))}
    handle = server_factory.start(env)
    yield handle
    handle.stop()


@pytest.mark.parametrize(("method", "path"), JOB_ROUTES)
def test_job_routes_are_closed_beyond_loopback_without_a_key(
    everywhere: ServerHandle, method: str, path: str
) -> None:
    r = httpx.request(method, everywhere.url + path, json={} if method == "POST" else None, timeout=30)
    assert_envelope(r, 403, "jobs_disabled")
    message = r.json()["error"]["message"]
    assert "MASKLITE_API_KEY" in message and "X-API-Key" in message and "127.0.0.1" in message


def test_predict_stays_open_and_the_instance_header_is_opaque(everywhere: ServerHandle) -> None:
    sample = (REPO_ROOT / "models" / "samples" / "astronaut_pair.jpg").read_bytes()
    first = httpx.post(everywhere.url + "/v1/predict", files={"file": ("s.jpg", sample)}, timeout=60)
    assert first.status_code == 200 and len(first.json()["faces"]) == 2
    instance = first.headers["x-masklite-instance"]
    assert re.fullmatch(r"[0-9a-f]{12}", instance) and instance != socket.gethostname()
    assert socket.gethostname() not in first.text
    again = httpx.get(everywhere.url + "/health/live", timeout=10)
    assert again.headers["x-masklite-instance"] == instance  # one id per process
    assert f"X-Masklite-Instance {instance} is pid" in everywhere.logs()  # mapped to the host in the log only
