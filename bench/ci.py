"""CI benchmark client (`make bench-ci`): start the service, POST /v1/benchmark, check RATIOS, keep a trail.

    python -m bench.ci [--url http://127.0.0.1:8000] [--runs 40] [--history benchmarks/history.jsonl]

Without --url it starts its own `python -m service` on a free loopback port. It prints the result table,
appends one JSON line (commit, machine, load/steal, key numbers, ratio checks) to the history file, and exits
    0  the job finished and every ratio holds (int8 >= 1.5x faster than float32, 1.3x on AVX-512 CPUs;
       HTTP <= 2x in-process),
       or the machine was noisy and the ratio verdict was skipped (said so, with the reason)
    1  a ratio failed
    2  an error: the service did not start, the job failed or timed out, the result was malformed
First it waits (up to --quiet-wait s) for the 1-minute load average to fall below --quiet-load: CI runs
right after the test suite. Absolute times never fail CI, and neither does noise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from bench import stats
from bench.loadgen import check_loopback
from bench.report import format_result
from bench.server import start_server
from bench.targets import ci_noise_reason, ci_ratio_failures, dig, evaluate_targets, format_checks
from masklite.paths import REPO_ROOT

DEFAULT_HISTORY = REPO_ROOT / "benchmarks" / "history.jsonl"
TERMINAL = ("done", "failed", "cancelled")


class CiError(RuntimeError):
    pass


def job_request(args: argparse.Namespace) -> dict[str, Any]:
    """A short benchmark: 1 thread (what the service deploys), few runs, a few scenes, HTTP comparison."""
    body: dict[str, Any] = {
        "threads": [int(t) for t in args.threads.split(",")],
        "runs": args.runs,
        "pipeline_runs": args.pipeline_runs,
        "scene_limit": args.scene_limit,
        "http_runs": args.http_runs,
    }
    if args.models:
        body["models"] = args.models.split(",")
    return body


def submit_and_wait(client: httpx.Client, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """POST /v1/benchmark, poll GET /v1/jobs/{id} with a progress bar; the finished job document."""
    resp = client.post("/v1/benchmark", json=body)
    if resp.status_code != 202:
        raise CiError(f"POST /v1/benchmark answered {resp.status_code}: {resp.text[:500]}")
    job_id = resp.json()["job_id"]
    deadline = time.monotonic() + timeout_s
    with tqdm(total=100, desc=f"benchmark job {job_id[:8]}", unit="%", file=sys.stderr) as bar:
        while True:
            resp = client.get(f"/v1/jobs/{job_id}")
            if resp.status_code != 200:
                raise CiError(f"GET /v1/jobs/{job_id} answered {resp.status_code}: {resp.text[:500]}")
            job = resp.json()
            bar.n = int(100 * float(job.get("progress") or 0.0))
            stage = (job.get("partial") or {}).get("stage") or job.get("state")
            bar.set_postfix_str(str(stage)[:60], refresh=True)
            if job.get("state") in TERMINAL:
                break
            if time.monotonic() > deadline:
                client.delete(f"/v1/jobs/{job_id}")
                raise CiError(f"benchmark job {job_id} not finished after {timeout_s:.0f} s: {job}")
            time.sleep(0.5)
    if job["state"] != "done":
        raise CiError(f"benchmark job {job_id} {job['state']}: {job.get('error')}")
    return job


def fetch_result(client: httpx.Client, job: dict[str, Any]) -> dict[str, Any]:
    result = job.get("result")
    if isinstance(result, dict) and result.get("kind") == "masklite-benchmark":
        return result
    url = (job.get("artifacts") or {}).get("result.json") or f"/v1/jobs/{job['id']}/artifacts/result.json"
    resp = client.get(url)
    if resp.status_code != 200:
        raise CiError(f"benchmark result not available ({resp.status_code}): {resp.text[:300]}")
    return resp.json()


def key_numbers(result: dict[str, Any]) -> dict[str, Any]:
    """The numbers worth a trail, flat: classifier/pipeline p50 per model x threads, HTTP, scenes."""
    out: dict[str, Any] = {}
    for precision, entry in (result.get("models") or {}).items():
        out[f"{precision}.bytes"] = entry.get("bytes")
        for threads, t in (entry.get("threads") or {}).items():
            for batch, c in (t.get("classifier") or {}).items():
                out[f"{precision}.t{threads}.classifier_{batch}_per_face_p50_ms"] = dig(
                    c, "per_face_ms", "p50"
                )
            out[f"{precision}.t{threads}.pipeline_target_p50_ms"] = dig(
                t, "target", "stages_ms", "total", "p50"
            )
        out[f"{precision}.scenes_recall"] = dig(entry, "scenes", "recall")
        out[f"{precision}.scenes_label_accuracy"] = dig(entry, "scenes", "label_accuracy")
    for precision, h in (dig(result, "http", "models") or {}).items():
        out[f"{precision}.http_p50_ms"] = dig(h, "http_ms", "p50")
        out[f"{precision}.server_total_p50_ms"] = dig(h, "server_total_ms", "p50")
        out[f"{precision}.inprocess_p50_ms"] = dig(h, "inprocess_ms", "p50")
        out[f"{precision}.http_ratio_p50"] = h.get("ratio_p50")
    for name, per in (result.get("speedup") or {}).items():
        for threads, row in per.items():
            for k, v in row.items():
                out[f"speedup.{name}.t{threads}.{k}"] = v
    return out


def wait_for_quiet(max_wait_s: float, below: float, poll_s: float = 5.0) -> tuple[bool, float | None]:
    """Wait until the 1-minute load average is below `below`, at most `max_wait_s`: (quiet, last load)."""
    deadline = time.monotonic() + max_wait_s
    load = (stats.load_average() or [None])[0]
    with tqdm(
        total=int(max_wait_s), desc=f"waiting for load avg < {below}", unit="s", file=sys.stderr
    ) as bar:
        while load is not None and load >= below and time.monotonic() < deadline:
            bar.set_postfix_str(f"load {load}", refresh=True)
            time.sleep(poll_s)
            bar.update(int(poll_s))
            load = (stats.load_average() or [None])[0]
    return load is None or load < below, load


def history_record(
    result: dict[str, Any] | None,
    failures: list[str],
    error: str | None,
    duration_s: float,
    skipped: str | None = None,
) -> dict[str, Any]:
    return {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": stats.git_commit(REPO_ROOT),
        "ci": os.environ.get("CI") == "true",
        "machine": (result or {}).get("machine") or stats.machine_info(),
        "config": (result or {}).get("config"),
        "numbers": key_numbers(result) if result else {},
        "conditions": (result or {}).get("conditions"),
        "ratio_failures": failures,
        "ratio_verdict_skipped": skipped,
        "error": error,
        "ok": error is None and not failures,
        "duration_s": round(duration_s, 1),
    }


def append_history(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")


def run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    result: dict[str, Any] | None = None
    failures: list[str] = []
    error: str | None = None
    skipped: str | None = None
    server = None
    quiet, load = wait_for_quiet(args.quiet_wait, args.quiet_load)
    if not quiet:
        skipped = (
            f"{stats.NOISY_NOTE}: load avg 1m still {load} after {args.quiet_wait:.0f} s "
            f"(needs < {args.quiet_load})"
        )
        print(skipped, file=sys.stderr)
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    try:
        url = args.url
        if url is None:
            print("starting the service ...", file=sys.stderr, flush=True)
            server = start_server({"MASKLITE_API_KEY": args.api_key} if args.api_key else None)
            url = server.url
        before = stats.snapshot()
        with httpx.Client(base_url=url, timeout=30, headers=headers, trust_env=False) as client:
            job = submit_and_wait(client, job_request(args), args.timeout)
            result = fetch_result(client, job)
        # the whole job window, seen from here (the job records its own too)
        result["conditions"] = stats.conditions(before, stats.snapshot())
        skipped = skipped or ci_noise_reason(result)
        print(format_result(result))
        print()
        print(format_checks(evaluate_targets(result), noisy=skipped is not None))
        failures = [] if skipped else ci_ratio_failures(result)
    except (CiError, httpx.HTTPError, RuntimeError, KeyError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        if server is not None:
            server.stop()
    record = history_record(result, failures, error, time.monotonic() - t0, skipped)
    if args.history:
        append_history(args.history, record)
        print(f"\nappended to {args.history}", file=sys.stderr)
    if error:
        print(f"\nBENCHMARK ERROR: {error}", file=sys.stderr)
        return 2
    if failures:
        print("\nRATIO CHECKS FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    if skipped:
        print(f"\nNOISY: ratio verdict skipped ({skipped})", file=sys.stderr)
        return 0
    print(
        "\nratio checks: int8 >= 1.5x faster than float32 (1.3x on AVX-512), HTTP <= 2x in-process: OK",
        file=sys.stderr,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ci", description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=None, help="a running service (loopback); default: start one")
    ap.add_argument("--models", default=None, help="comma-separated precisions (default: all)")
    ap.add_argument("--threads", default="1")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--pipeline-runs", type=int, default=20)
    ap.add_argument("--scene-limit", type=int, default=30)
    ap.add_argument("--http-runs", type=int, default=30)
    ap.add_argument("--timeout", type=float, default=150.0, help="seconds to wait for the job")
    ap.add_argument("--history", default=str(DEFAULT_HISTORY), help="JSONL trail ('' to skip)")
    ap.add_argument("--quiet-wait", type=float, default=180.0, help="seconds to wait for a quiet machine")
    ap.add_argument(
        "--quiet-load", type=float, default=1.0, help="1-minute load average that counts as quiet"
    )
    ap.add_argument("--api-key", default=os.environ.get("MASKLITE_API_KEY") or None)
    args = ap.parse_args(argv)
    args.history = Path(args.history) if args.history else None
    if args.url is not None:
        check_loopback(args.url)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
