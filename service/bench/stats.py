"""Latency statistics and process memory, without extra dependencies."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np

PERCENTILES = (50, 90, 99)


def summarize(samples_ms: list[float] | np.ndarray) -> dict[str, float | int]:
    """p50/p90/p99, mean, sd, min, max and n of a list of latencies in milliseconds."""
    arr = np.asarray(samples_ms, dtype=np.float64)
    if arr.size == 0:
        return {"n": 0}
    out: dict[str, float | int] = {"n": int(arr.size)}
    for p, value in zip(PERCENTILES, np.percentile(arr, PERCENTILES), strict=True):
        out[f"p{p}"] = round(float(value), 4)
    out["mean"] = round(float(arr.mean()), 4)
    out["sd"] = round(float(arr.std(ddof=1)) if arr.size > 1 else 0.0, 4)
    out["min"] = round(float(arr.min()), 4)
    out["max"] = round(float(arr.max()), 4)
    return out


def _status_kb(pid: int | str, key: str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_mb(pid: int | str = "self") -> float | None:
    """Current resident set size of a process (Linux /proc), MB."""
    kb = _status_kb(pid, "VmRSS")
    return None if kb is None else round(kb / 1024, 1)


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """Peak resident set size (VmHWM) of a process, MB; getrusage for ourselves where /proc is missing."""
    kb = _status_kb(pid, "VmHWM")
    if kb is None and pid == "self":
        kb = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return None if kb is None else round(kb / 1024, 1)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


SIMD_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "amx_int8",
    "asimd",
    "asimddp",
)


def cpu_flags() -> list[str]:
    """The SIMD features that decide int8 vs float32 speed (VNNI/dot-product make int8 fast)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            have = set(line.split(":", 1)[1].split())
            return [f for f in SIMD_FLAGS if f in have]
    return []


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def git_commit(repo: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - a missing package is just "unknown"
        return None


def machine_info() -> dict[str, object]:
    """Where a number was measured: cores, CPU, load average and library versions."""
    import cv2

    return {
        "hostname": platform.node(),
        "nproc": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "load_avg": load_average(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": {
            "ai-edge-litert": _version("ai-edge-litert"),
            "opencv": cv2.__version__,
            "numpy": np.__version__,
            "fastapi": _version("fastapi"),
            "uvicorn": _version("uvicorn"),
            "httpx": _version("httpx"),
        },
    }
