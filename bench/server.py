"""Start a real `python -m service` on a free loopback port, for the HTTP benchmark, load runs and CI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from bench import stats
from masklite.paths import REPO_ROOT

STARTUP_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_pids(pid: int) -> list[int]:
    """Direct children of a process."""
    try:
        return sorted(child.pid for child in psutil.Process(pid).children())
    except psutil.Error:
        return []


def stop_process(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM, `grace_s` to shut down cleanly, then SIGKILL."""
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@dataclass
class ServerProcess:
    url: str
    proc: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def logs(self, tail: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:] if self.log_path.exists() else ""

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: uvicorn's workers, or the server itself with one worker."""
        # uvicorn --workers N spawns N processes through multiprocessing; one worker serves in-process
        return spawned_children(self.proc.pid) or [self.proc.pid]

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process and every worker so far."""
        pids = {self.proc.pid, *child_pids(self.proc.pid)}
        return sum(stats.process_cpu_seconds(psutil.Process(pid)) for pid in pids if psutil.pid_exists(pid))

    def memory(self) -> dict[str, dict[str, float | None]]:
        """Current and peak RSS of every serving process, MB."""
        return {
            str(pid): {"rss_mb": stats.rss_mb(pid), "peak_rss_mb": stats.peak_rss_mb(pid)}
            for pid in self.worker_pids()
        }

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT_S, in_a_row: int = 20) -> None:
        """Until /health/ready answers 200 `in_a_row` times on fresh connections: with several uvicorn
        workers each one loads its own models, and one ready worker must not start the measurement."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        streak = 0
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"service exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                r = httpx.get(self.url + "/health/ready", timeout=5, trust_env=False)
                if r.status_code == 200:
                    streak += 1
                    if streak >= in_a_row:
                        return
                    time.sleep(0.02)
                    continue
                last = r.text[:300]
            except httpx.TransportError as exc:
                last = type(exc).__name__
            streak = 0
            time.sleep(0.2)
        raise RuntimeError(f"service not ready after {timeout:.0f} s ({last}):\n{self.logs()}")

    def stop(self) -> None:
        if self.alive():
            stop_process(self.proc, grace_s=20)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ready_replicas(url: str, replicas: int, timeout: float) -> set[str]:
    """Poll /health/ready behind a load balancer until `replicas` distinct instances (X-Masklite-Instance)
    have answered 200, or `timeout` s pass; returns the instances seen (fewer on timeout)."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < replicas and time.monotonic() < deadline:
        try:
            r = httpx.get(url + "/health/ready", timeout=5)
            if r.status_code == 200:
                seen.add(r.headers["x-masklite-instance"])
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    return seen


def spawned_children(pid: int) -> list[int]:
    """Children that multiprocessing's `spawn` started: uvicorn's workers, or a job's worker process."""
    return [p for p in child_pids(pid) if "spawn_main" in _cmdline(p)]


def _cmdline(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


def start_server(
    env: dict[str, str] | None = None, log_dir: Path | None = None, wait: bool = True
) -> ServerProcess:
    """`python -m service` on 127.0.0.1:<free port>; `env` overrides MASKLITE_* (workers, threads, models)."""
    port = free_port()
    full_env = dict(os.environ)
    full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="masklite-bench-"))
    full_env.update(
        {
            "MASKLITE_HOST": "127.0.0.1",
            "MASKLITE_PORT": str(port),
            "MASKLITE_ACCESS_LOG": "false",  # a log line per request would be measured too
            "MASKLITE_LOG_LEVEL": "warning",
            "MASKLITE_JOBS_DIR": str(log_dir / "jobs"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    full_env.update(env or {})
    log_path = log_dir / f"server-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service"],
            cwd=REPO_ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", proc, log_path)
    if wait:
        try:
            server.wait_ready()
        except Exception:
            server.stop()
            raise
    return server
