"""Does a running robustness job slow /v1/predict down? `python -m bench.jobs_latency`

Starts a real server (`python -m service`, shipped models, $MASKLITE_DETECTOR_PATH when set), measures
sequential /v1/predict latency on one image before a job, while a full robustness grid runs (worker
niced, one core), and after cancelling it; then, because a shared machine's background load drifts, in
alternating short windows with the job's worker paused (SIGSTOP) and running. Prints p50/p90 and the p50
rise (target: <= 30 %, judged on the interleaved windows) and writes benchmarks/jobs_latency.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from bench.server import spawned_children, start_server
from masklite.paths import ENV_SCENES_DIR, REPO_ROOT, env_path

TARGET_RISE = 0.30
JOB = {"layers": "all", "kinds": ["multiply", "add"]}


def _image() -> tuple[str, bytes]:
    scenes = env_path(ENV_SCENES_DIR)
    if scenes and (scenes / "images").is_dir():
        first = sorted((scenes / "images").glob("*.jpg"))
        if first:
            return first[0].name, first[0].read_bytes()
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(buf, "JPEG")
    return "synthetic-640x480.jpg", buf.getvalue()


def _measure(client: httpx.Client, image: bytes, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.post("/v1/predict", files={"file": ("img.jpg", image, "image/jpeg")})
        times.append((time.perf_counter() - t0) * 1e3)
        r.raise_for_status()
    return times


def _worker_pid(server_pid: int) -> int:
    """The job's worker: the server's multiprocessing-spawn child."""
    workers = spawned_children(server_pid)
    if not workers:
        raise SystemExit("no job worker process found")
    return workers[0]


def _stats(times: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(times), 2),
        "p90_ms": round(float(np.percentile(times, 90)), 2),
        "mean_ms": round(statistics.fmean(times), 2),
        "n": len(times),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.jobs_latency", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="sequential requests per phase")
    parser.add_argument("--rounds", type=int, default=8, help="paused/running windows, interleaved")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "jobs_latency.json")
    args = parser.parse_args(argv)

    name, image = _image()
    # start_server: loopback, a fresh jobs folder, no access log, ready 20 times in a row
    server = start_server()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            _measure(c, image, 20)  # warm-up
            before = _measure(c, image, args.requests)
            job_id = c.post("/v1/robustness", json=JOB).json()["job_id"]
            while True:  # wait until the worker is past start-up and evaluating cells
                job = c.get(f"/v1/jobs/{job_id}").json()
                if job["state"] == "running" and job["partial"] and job["partial"].get("cells_done", 0) > 0:
                    break
                if job["state"] not in ("queued", "running"):
                    raise SystemExit(f"job ended early: {job['state']} {job['error']}")
                time.sleep(0.2)
            during = _measure(c, image, args.requests)
            # the machine may be shared and its load drifts: also alternate short windows with the job's
            # worker paused (SIGSTOP) and running, so both conditions see the same background
            worker = _worker_pid(server.proc.pid)
            paused: list[float] = []
            resumed: list[float] = []
            window = max(5, args.requests // args.rounds)
            for _ in range(args.rounds):
                os.kill(worker, signal.SIGSTOP)
                try:
                    paused += _measure(c, image, window)
                finally:
                    os.kill(worker, signal.SIGCONT)
                resumed += _measure(c, image, window)
            job = c.get(f"/v1/jobs/{job_id}").json()
            still_running = job["state"] == "running"
            c.delete(f"/v1/jobs/{job_id}")
            time.sleep(1.0)
            after = _measure(c, image, args.requests)
    finally:
        server.stop()

    result: dict[str, Any] = {
        "image": name,
        "job": JOB,
        "job_was_running_throughout": still_running,
        "cpu_count": os.cpu_count(),
        "loadavg": [round(v, 2) for v in os.getloadavg()],
        "before": _stats(before),
        "during": _stats(during),
        "after": _stats(after),
        "interleaved": {"job_paused": _stats(paused), "job_running": _stats(resumed), "rounds": args.rounds},
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    rise = result["during"]["p50_ms"] / result["before"]["p50_ms"] - 1.0
    inter = result["interleaved"]
    rise_interleaved = inter["job_running"]["p50_ms"] / inter["job_paused"]["p50_ms"] - 1.0
    result["p50_rise"] = round(rise, 4)
    result["p50_rise_interleaved"] = round(rise_interleaved, 4)
    result["target_p50_rise"] = TARGET_RISE
    result["meets_target"] = rise_interleaved <= TARGET_RISE
    print(f"/v1/predict on {name}, {args.requests} sequential requests per phase ({os.cpu_count()} cores)")
    for phase in ("before", "during", "after"):
        s = result[phase]
        print(
            f"  {phase:>6}: p50 {s['p50_ms']:7.2f} ms   p90 {s['p90_ms']:7.2f} ms   "
            f"mean {s['mean_ms']:7.2f} ms"
        )
    for phase in ("job_paused", "job_running"):
        s = inter[phase]
        print(f"  {phase:>11} (interleaved): p50 {s['p50_ms']:7.2f} ms   p90 {s['p90_ms']:7.2f} ms")
    print(f"  load average {result['loadavg']} on {os.cpu_count()} cores")
    print(f"  p50 rise, before -> during:            {100 * rise:+.1f} %")
    print(
        f"  p50 rise, interleaved paused -> running: {100 * rise_interleaved:+.1f} % "
        f"(target <= {100 * TARGET_RISE:.0f} %)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
