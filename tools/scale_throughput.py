"""Throughput of 1 vs 2 API replicas behind the scale profile's load balancer (HAProxy), on this machine.

    eval "$(../shared/tools/docker-engine.sh env)"
    python tools/scale_throughput.py [--build] [--clients 8] [--seconds 20] [--replicas 1,2]

For each replica count: `docker compose --profile scale up -d --scale worker=0` (no job
workers: the replicas get the CPU), wait until that many replicas answer /health/ready through the
balancer, warm up, then bench.loadgen posts the bundled sample photo (768x384, 2 faces) to
/v1/predict for --seconds at --clients concurrent clients, on loopback. Prints req/s, latency, how the
answers split over the replicas, and the 1-minute load average before and after (each run first waits up
to 2 minutes for it to settle below 1.0; a run that starts above is marked noisy). The load generator
shares the CPUs with the replicas. Everything is torn down at the end (`compose down -v`). Images:
MASKLITE_IMAGE, MASKLITE_REDIS_IMAGE, MASKLITE_LB_IMAGE as in docker-compose.yml, or --build.

On a 2-core machine 2 replicas cannot beat 1: one replica already uses both cores (2 inference threads +
YuNet), so a second one only splits the same CPU. Replicas scale throughput when each gets its own cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loadgen import LoadConfig, run_load_sync  # noqa: E402
from bench.server import ready_replicas  # noqa: E402

SAMPLE = ROOT / "models" / "samples" / "astronaut_pair.jpg"
PROJECT = "masklite-throughput"


def sh(*args: str, env: dict[str, str], timeout: float = 600) -> str:
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result.stdout


def wait_ready(url: str, replicas: int, timeout: float = 180) -> None:
    seen = ready_replicas(url, replicas, timeout)
    if len(seen) < replicas:
        raise SystemExit(f"only {len(seen)} of {replicas} replicas ready after {timeout:.0f} s")


def settle(limit: float = 1.0, timeout: float = 120) -> float:
    """Wait (bounded) for the 1-minute load average to fall below `limit`: the previous run's own load
    lingers in it for a minute or more. Returns the load average when the wait ended."""
    deadline = time.monotonic() + timeout
    while os.getloadavg()[0] >= limit and time.monotonic() < deadline:
        time.sleep(5)
    return os.getloadavg()[0]


def spread(url: str, image: bytes, n: int = 40) -> dict[str, int]:
    with httpx.Client(base_url=url, timeout=30) as c:
        return dict(
            Counter(
                c.post("/v1/predict", files={"file": ("s.jpg", image, "image/jpeg")}).headers[
                    "x-masklite-instance"
                ]
                for _ in range(n)
            )
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--replicas", default="1,2", help="replica counts to measure")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--build", action="store_true", help="build the three images first")
    args = parser.parse_args(argv)
    env = dict(
        os.environ, MASKLITE_PUBLISH_PORT=str(args.port), DOCKER_BUILDKIT="0", COMPOSE_DOCKER_CLI_BUILD="0"
    )
    compose = ["docker", "compose", "-p", PROJECT, "-f", "docker-compose.yml", "--profile", "scale"]
    if args.build:
        sh(*compose, "build", "replica", "redis", "lb", env=env, timeout=1800)
    url, image = f"http://127.0.0.1:{args.port}", SAMPLE.read_bytes()
    rows = []
    try:
        for replicas in (int(r) for r in args.replicas.split(",")):
            env["MASKLITE_REPLICAS"] = str(replicas)
            sh(*compose, "up", "-d", "--no-build", "--scale", "worker=0",
               "--scale", f"replica={replicas}", env=env)  # fmt: skip
            wait_ready(url, replicas)
            split = spread(url, image)  # also the warm-up
            load_before = settle()
            cfg = LoadConfig(
                url, image, concurrency=args.clients, duration_s=args.seconds, label=f"{replicas}r"
            )
            result = run_load_sync(cfg)
            load_after = os.getloadavg()[0]
            rows.append(
                {
                    "replicas": replicas,
                    "clients": args.clients,
                    "ok_per_s": result["ok_per_s"],
                    "p50_ms": result["ok_latency_ms"].get("p50"),
                    "p99_ms": result["ok_latency_ms"].get("p99"),
                    "status": result["status_counts"],
                    "split": split,
                    "load_before": round(load_before, 2),
                    "load_after": round(load_after, 2),
                    "noisy": load_before > 1.0,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    finally:
        subprocess.run([*compose, "down", "-v", "--timeout", "20"], cwd=ROOT, env=env, capture_output=True)
    cores = os.cpu_count()
    print(f"\n{cores} CPUs; /v1/predict, sample photo, {args.clients} clients, {args.seconds:.0f} s each")
    print("| replicas | req/s | p50 ms | p99 ms | answers split | load before → after |")
    print("|---:|---:|---:|---:|---|---|")
    for r in rows:
        mark = " (noisy)" if r["noisy"] else ""
        print(f"| {r['replicas']} | {r['ok_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {r['split']} | "
              f"{r['load_before']} → {r['load_after']}{mark} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
