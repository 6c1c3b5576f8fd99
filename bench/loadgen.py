"""Load generator: N concurrent clients POST an image to /v1/predict for T seconds, on loopback only.

Strictly bounded: at most MAX_CONCURRENCY clients, MAX_DURATION_S seconds and `max_requests` requests,
and a hard deadline (duration + request timeout + 1 s) after which anything still in flight is cancelled.
Non-loopback targets are refused: this is a measuring tool, not a way to flood someone else's server.

    python -m bench.loadgen --url http://127.0.0.1:8000 --image photo.jpg -c 1,4,8,16 -d 10
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import stats
from bench.images import load_scenes, make_target_image, scenes_dir

MAX_CONCURRENCY = 512
MAX_DURATION_S = 600.0
MAX_REQUESTS = 1_000_000


class NotLoopback(ValueError):
    pass


def check_loopback(url: str) -> str:
    """Return the URL if its host is a literal loopback address or 'localhost'; raise NotLoopback otherwise.

    Names other than 'localhost' are not resolved: a DNS answer could point anywhere.
    """
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https"):
        raise NotLoopback(f"{url!r}: only http(s) URLs are accepted")
    host = (parsed.host or "").strip("[]").lower()
    if host == "localhost":
        return url
    try:
        if ipaddress.ip_address(host).is_loopback:
            return url
    except ValueError:
        pass
    raise NotLoopback(f"refusing to load-test {host or url!r}: only loopback (127.0.0.0/8, ::1, localhost)")


@dataclass
class LoadConfig:
    base_url: str
    image: bytes
    concurrency: int = 8
    duration_s: float = 10.0
    max_requests: int | None = None
    path: str = "/v1/predict"
    params: dict[str, str] = field(default_factory=lambda: {"model": "int8"})
    filename: str = "image.jpg"
    content_type: str = "image/jpeg"
    timeout_s: float = 10.0
    headers: dict[str, str] = field(default_factory=dict)
    label: str = ""

    def validate(self) -> None:
        check_loopback(self.base_url)
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be 1..{MAX_CONCURRENCY}")
        if not 0 < self.duration_s <= MAX_DURATION_S:
            raise ValueError(f"duration must be in (0, {MAX_DURATION_S}] seconds")
        if self.max_requests is not None and not 1 <= self.max_requests <= MAX_REQUESTS:
            raise ValueError(f"max_requests must be 1..{MAX_REQUESTS}")
        if not 0 < self.timeout_s <= 60:
            raise ValueError("timeout must be in (0, 60] seconds")


@dataclass
class _Sample:
    latency_ms: float
    status: int | None  # None: transport error
    retry_after: bool
    error: str | None = None


async def _client(
    http: httpx.AsyncClient, cfg: LoadConfig, stop_at: float, budget: list[int], out: list[_Sample]
) -> None:
    files = {"file": (cfg.filename, cfg.image, cfg.content_type)}
    while time.perf_counter() < stop_at:
        if budget[0] <= 0:
            return
        budget[0] -= 1  # single-threaded event loop: no lock needed
        t0 = time.perf_counter()
        try:
            resp = await http.post(cfg.path, params=cfg.params, files=files)
            await resp.aread()
            out.append(
                _Sample((time.perf_counter() - t0) * 1e3, resp.status_code, "retry-after" in resp.headers)
            )
        except httpx.HTTPError as exc:
            out.append(_Sample((time.perf_counter() - t0) * 1e3, None, False, type(exc).__name__))
            await asyncio.sleep(0.01)  # a refused connection must not turn into a busy loop


async def run_load(cfg: LoadConfig) -> dict[str, Any]:
    """Run one load level; returns requests/s, latency percentiles and status-code counts."""
    cfg.validate()
    samples: list[_Sample] = []
    budget = [cfg.max_requests or MAX_REQUESTS]
    limits = httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency)
    timeout = httpx.Timeout(cfg.timeout_s)
    t_start = time.perf_counter()
    stop_at = t_start + cfg.duration_s
    hard_deadline = cfg.duration_s + cfg.timeout_s + 1.0
    cancelled = 0
    async with httpx.AsyncClient(
        base_url=cfg.base_url, limits=limits, timeout=timeout, headers=cfg.headers, trust_env=False
    ) as http:
        tasks = [
            asyncio.create_task(_client(http, cfg, stop_at, budget, samples)) for _ in range(cfg.concurrency)
        ]
        done, pending = await asyncio.wait(tasks, timeout=hard_deadline)
        for task in pending:
            task.cancel()
            cancelled += 1
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    elapsed = time.perf_counter() - t_start
    return summarize_samples(cfg, samples, elapsed, cancelled)


def summarize_samples(
    cfg: LoadConfig, samples: list[_Sample], elapsed: float, cancelled: int
) -> dict[str, Any]:
    codes = Counter(str(s.status) for s in samples if s.status is not None)
    retry_after = Counter(str(s.status) for s in samples if s.status in (429, 503) and s.retry_after)
    errors = Counter(s.error for s in samples if s.error)
    ok = [s.latency_ms for s in samples if s.status == 200]
    return {
        "label": cfg.label,
        "concurrency": cfg.concurrency,
        "duration_s": cfg.duration_s,
        "max_requests": cfg.max_requests,
        "elapsed_s": round(elapsed, 3),
        "requests": len(samples),
        "requests_per_s": round(len(samples) / elapsed, 2) if elapsed > 0 else 0.0,
        "ok_per_s": round(len(ok) / elapsed, 2) if elapsed > 0 else 0.0,
        "latency_ms": stats.summarize([s.latency_ms for s in samples if s.status is not None]),
        "ok_latency_ms": stats.summarize(ok),
        "status_counts": dict(sorted(codes.items())),
        "rejected_with_retry_after": dict(sorted(retry_after.items())),
        "rejected_without_retry_after": sum(
            1 for s in samples if s.status in (429, 503) and not s.retry_after
        ),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "cancelled_clients": cancelled,
        "params": cfg.params,
    }


def run_load_sync(cfg: LoadConfig) -> dict[str, Any]:
    return asyncio.run(run_load(cfg))


def sweep(
    base_url: str,
    image: bytes,
    levels: list[int],
    duration_s: float,
    params: dict[str, str] | None = None,
    label: str = "",
    headers: dict[str, str] | None = None,
    max_requests: int | None = None,
) -> list[dict[str, Any]]:
    """One run per concurrency level, in order."""
    runs = []
    for level in levels:
        cfg = LoadConfig(
            base_url=base_url,
            image=image,
            concurrency=level,
            duration_s=duration_s,
            params=params or {"model": "int8"},
            label=label,
            headers=headers or {},
            max_requests=max_requests,
        )
        runs.append(run_load_sync(cfg))
    return runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000", help="service base URL (loopback only)")
    ap.add_argument("--image", type=Path, help="image to post (default: the 640x480 target from the scenes)")
    ap.add_argument("-c", "--concurrency", default="1,4,8,16", help="comma-separated client counts")
    ap.add_argument("-d", "--duration", type=float, default=10.0, help="seconds per level")
    ap.add_argument("-n", "--max-requests", type=int, default=None, help="stop a level after this many")
    ap.add_argument("--model", default="int8")
    ap.add_argument("--api-key", default=None, help="sent as X-API-Key when the service requires one")
    ap.add_argument("--json", type=Path, default=None, help="write the runs here")
    args = ap.parse_args(argv)
    try:
        check_loopback(args.url)
    except NotLoopback as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.image:
        image = args.image.read_bytes()
    else:
        directory = scenes_dir()
        target = make_target_image(load_scenes(directory)) if directory else None
        if target is None:
            print("error: give --image or set MASKLITE_SCENES_DIR", file=sys.stderr)
            return 2
        image = target.data
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    runs = []
    before = stats.snapshot()
    for level in levels:
        run = run_load_sync(
            LoadConfig(
                base_url=args.url,
                image=image,
                concurrency=level,
                duration_s=args.duration,
                max_requests=args.max_requests,
                params={"model": args.model},
                headers=headers,
            )
        )
        runs.append(run)
        lat = run["latency_ms"]
        print(
            f"c={level:3d}  {run['requests_per_s']:7.1f} req/s  p50 {lat.get('p50', 0):7.2f}  "
            f"p99 {lat.get('p99', 0):7.2f} ms  status {run['status_counts']}  errors {run['errors']}",
            flush=True,
        )
    cond = stats.conditions(before, stats.snapshot())
    print(stats.conditions_line(cond))
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "conditions": cond}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
