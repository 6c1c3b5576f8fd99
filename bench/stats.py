"""Latency statistics, process memory and CPU time (psutil), and whether the machine was quiet."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil

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


def rss_mb(pid: int | None = None) -> float | None:
    """Current resident set size of a process (default: this one), MB; None when it is gone."""
    try:
        return round(psutil.Process(pid).memory_info().rss / 2**20, 1)
    except psutil.Error:
        return None


def peak_rss_mb(pid: int | None = None) -> float | None:
    """Peak resident set size of a process, MB (Linux VmHWM, which psutil does not read; getrusage for
    this process elsewhere)."""
    try:
        for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(float(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    if pid is None:
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return None


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


# ---------------------------------------------------------------- is the machine quiet enough to measure?

# 1-minute load average per core above which numbers are not comparable with a quiet machine's
NOISY_LOAD_PER_CORE = 0.5
# Share of the machine's CPU that OTHER processes used during a benchmark above which it is noisy. The load
# average cannot tell: a benchmark's own load generator, server and earlier sections raise it (8 clients
# keep both cores busy, and the 1-minute average carries that into the next section), so on Linux the
# verdict counts only the CPU time of processes outside the benchmark's own process tree.
NOISY_FOREIGN_SHARE = 0.25
NOISY_NOTE = "noisy: do not compare"


def cpu_counters() -> dict[str, float] | None:
    """The machine's CPU time so far, seconds: total, steal (time a hypervisor gave this VM's vCPUs to
    someone else) and busy (neither idle, iowait nor steal)."""
    try:
        t = psutil.cpu_times()
    except (psutil.Error, OSError):
        return None
    # guest time is already inside user
    parts = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    total = sum(getattr(t, name, 0.0) for name in parts)
    steal = getattr(t, "steal", 0.0)
    idle = t.idle + getattr(t, "iowait", 0.0)
    return {"total": total, "steal": steal, "busy": total - idle - steal}


def process_cpu_seconds(process: psutil.Process, children: bool = False) -> float:
    """user + system CPU time of one process, seconds; `children`: plus its reaped children's. 0 when it
    is gone."""
    try:
        t = process.cpu_times()
    except psutil.Error:
        return 0.0
    return t.user + t.system + (t.children_user + t.children_system if children else 0.0)


def own_cpu_seconds(root: int | None = None) -> float | None:
    """CPU seconds used by `root` (this process) and every descendant, including children already reaped:
    the benchmark's own share of the machine's busy time."""
    try:
        top = psutil.Process(root)
        tree = [top, *top.children(recursive=True)]
    except psutil.Error:
        return None
    return sum(process_cpu_seconds(p, children=True) for p in tree)


def snapshot() -> dict[str, object]:
    """Load average and CPU counters now; take one before and one after a benchmark."""
    load = load_average()
    return {
        "time": round(time.time(), 3),
        "load_avg_1m": load[0] if load else None,
        "cpu": cpu_counters(),
        "own_cpu_s": own_cpu_seconds(),
    }


def conditions(
    before: dict[str, object], after: dict[str, object], cores: int | None = None
) -> dict[str, object]:
    """What the machine was doing around a benchmark: load average before/after, steal % during it, the
    share of the CPU other processes used during it, and `noisy`: when that share is known, above
    NOISY_FOREIGN_SHARE; otherwise, when the 1-minute load per core exceeded NOISY_LOAD_PER_CORE
    at either end."""
    cores = cores or (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    loads = [x for x in (before.get("load_avg_1m"), after.get("load_avg_1m")) if isinstance(x, int | float)]
    per_core = max(loads) / cores if loads else None
    steal_pct = foreign = None
    c0, c1 = before.get("cpu"), after.get("cpu")
    if isinstance(c0, dict) and isinstance(c1, dict) and c1["total"] > c0["total"]:
        elapsed = c1["total"] - c0["total"]
        steal_pct = round(100.0 * (c1["steal"] - c0["steal"]) / elapsed, 2)
        own0, own1 = before.get("own_cpu_s"), after.get("own_cpu_s")
        if "busy" in c0 and "busy" in c1 and isinstance(own0, int | float) and isinstance(own1, int | float):
            # the busy time of all CPUs minus this process tree's (both in seconds)
            foreign = max(0.0, (c1["busy"] - c0["busy"] - (own1 - own0)) / elapsed)
    if foreign is not None:
        noisy = foreign > NOISY_FOREIGN_SHARE
    else:
        noisy = per_core is not None and per_core > NOISY_LOAD_PER_CORE
    return {
        "load_avg_1m_before": before.get("load_avg_1m"),
        "load_avg_1m_after": after.get("load_avg_1m"),
        "cores": cores,
        "load_per_core_max": None if per_core is None else round(per_core, 3),
        "steal_pct": steal_pct,
        "other_cpu_pct": None if foreign is None else round(100.0 * foreign, 1),
        "noisy": noisy,
        "note": NOISY_NOTE if noisy else "",
    }


def conditions_line(cond: dict[str, object] | None) -> str:
    """One line for printed reports; starts with the warning when the run was noisy."""
    if not cond:
        return "machine conditions: not recorded"
    head = f"{str(NOISY_NOTE).upper()}: " if cond.get("noisy") else ""
    load = (
        f"load avg 1m {cond.get('load_avg_1m_before')} -> {cond.get('load_avg_1m_after')} "
        f"on {cond.get('cores')} cores"
    )
    if cond.get("other_cpu_pct") is None:
        return f"{head}{load} (noisy above {NOISY_LOAD_PER_CORE}/core), steal {cond.get('steal_pct')} %"
    return (
        f"{head}other processes used {cond.get('other_cpu_pct')} % of the CPU (noisy above "
        f"{NOISY_FOREIGN_SHARE:.0%}); {load}, steal {cond.get('steal_pct')} %"
    )
