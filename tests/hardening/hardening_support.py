"""Helpers for the hardening tests: the error-envelope check, process memory, the CI/long profile.

Profiles: `MASKLITE_HARDENING_PROFILE=ci` (default, what `make test` runs: a few minutes in all) or `long`
(`make reliability`, `make fuzz`, `make overload`: >= 1,000 fuzz cases, 30 s of 200-client overload).
Tests record what they tried with pytest's `record_property("cases", n)`; tools/reliability_report.py
collects those into RELIABILITY.md.
"""

from __future__ import annotations

import os
import struct
import time
import uuid
import zlib
from pathlib import Path

import httpx
import pytest

# every route that spends the host's CPU on a job or reads job results: behind the key (or loopback only)
JOB_ID = str(uuid.UUID(int=1, version=4))
JOB_ROUTES = [
    ("GET", "/v1/jobs"),
    ("GET", f"/v1/jobs/{JOB_ID}"),
    ("DELETE", f"/v1/jobs/{JOB_ID}"),
    ("GET", f"/v1/jobs/{JOB_ID}/heatmap.png"),
    ("GET", f"/v1/jobs/{JOB_ID}/artifacts/grid.csv"),
    ("POST", "/v1/robustness"),
    ("POST", "/v1/benchmark"),
    ("POST", "/v1/video"),
]

PROFILE = os.environ.get("MASKLITE_HARDENING_PROFILE", "ci").strip().lower() or "ci"
LONG = PROFILE == "long"

long_only = pytest.mark.skipif(
    not LONG, reason="long profile only: run `make reliability` (MASKLITE_HARDENING_PROFILE=long)"
)


def assert_envelope(
    r: httpx.Response, status: int | tuple[int, ...], code: str | tuple[str, ...] | None
) -> dict:
    """The documented error: status, JSON `{"error": {"code", "message", "request_id"}}`, X-Request-ID."""
    statuses = (status,) if isinstance(status, int) else status
    assert r.status_code in statuses, (r.status_code, r.text[:500])
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"code", "message", "request_id"}, err
    assert isinstance(err["message"], str) and err["message"], err
    assert err["request_id"] and err["request_id"] == r.headers.get("x-request-id"), (err, r.headers)
    if code is not None:
        codes = (code,) if isinstance(code, str) else code
        assert err["code"] in codes, err
    if r.status_code in (429, 503):
        assert int(r.headers["retry-after"]) > 0, r.headers
    return err


# ---------------------------------------------------------------- process memory


def proc_status_kb(pid: int, field: str) -> int:
    """A `kB` field of /proc/<pid>/status (VmRSS: resident now, VmHWM: peak resident)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(f"{field} not in /proc/{pid}/status")


def rss_mb(pid: int) -> float:
    return proc_status_kb(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int) -> float:
    return proc_status_kb(pid, "VmHWM") / 1024


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0, own processes); False where not permitted."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def wait_healthy(url: str, timeout: float = 30.0) -> None:
    """/health/ready answers 200 (the server survived whatever came before)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url + "/health/ready", timeout=10)
            if r.status_code == 200:
                return
            last = r.text[:300]
        except httpx.TransportError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise AssertionError(f"{url} not healthy after {timeout:.0f} s: {last}")


# ---------------------------------------------------------------- hand-made PNGs


def png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, bit_depth: int, color_type: int, row: bytes) -> bytes:
    """A valid PNG whose every row is `row` (filter byte 0 is added), compressed row by row."""
    comp = zlib.compressobj(9)
    line = b"\x00" + row
    idat = b"".join(comp.compress(line) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def png_bomb(side: int = 20_000) -> bytes:
    """side x side 1-bit grey zeros: ~50 kB on the wire, 400 MP (1.2 GB as RGB) once decoded."""
    return png_bytes(side, side, 1, 0, b"\x00" * ((side + 7) // 8))
