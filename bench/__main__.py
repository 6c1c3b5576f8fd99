"""`python -m bench` (`make bench`): the whole benchmark, printed and written to benchmarks/.

In-process (classifier per model x threads x batch, pipeline per stage on the 640x480 target and the
scenes, scenes recall/accuracy, RSS), CPU ms per stage and recall per detect size (bench.stage_timing),
today's OpenCV detector beside the new one on the same images (bench.detectors), a 12 MP photo
against the same photo at 1024 px (bench.phone), then against a real `python -m service` on
loopback: HTTP round trip vs in-process, and a concurrency sweep per server setup (workers x threads; the
first is the shipped default). Every number of the issue #14 targets is in the output and benchmark.json;
load average and steal time are recorded before and after, and a busy machine is marked "noisy".
Run it on a quiet machine: nothing else running, no helpers, no builds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench import stats
from bench.detectors import compare_detectors, format_detectors
from bench.httpbench import http_vs_inprocess
from bench.images import load_files, load_scenes, make_target_image, scenes_dir
from bench.inprocess import BenchConfig, run_benchmark
from bench.loadgen import sweep
from bench.phone import format_phone, phone_costs
from bench.report import format_result, save_chart
from bench.sections import SectionOptions
from bench.server import start_server
from bench.stage_timing import format_costs, stage_costs
from bench.targets import checks_as_json, evaluate_targets, format_checks
from masklite.paths import DEFAULT_MODELS_DIR, REPO_ROOT

DEFAULT_OUT = REPO_ROOT / "benchmarks"


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


SETUP_SYNTAX = "WORKERSxTHREADS[oOPENCV_THREADS][sSOLO_THREADS]"


def _setups(text: str) -> list[tuple[int, int, int | None, int | None]]:
    """'1x2,1x2s1,2x1o2' -> [(workers, threads, opencv threads, solo threads; None: the default), ...]"""
    out = []
    for part in text.lower().split(","):
        m = re.fullmatch(r"\s*(\d+)x(\d+)(?:o(-?\d+))?(?:s(\d+))?\s*", part)
        if m is None:
            raise SystemExit(f"bad server setup {part!r}: use {SETUP_SYNTAX}, e.g. 1x2s1")
        out.append((int(m[1]), int(m[2]), int(m[3]) if m[3] else None, int(m[4]) if m[4] else None))
    return out


class Bar:
    """tqdm driven by fractional progress callbacks."""

    def __init__(self, desc: str):
        self.bar = tqdm(total=1000, desc=desc, unit="‰", leave=False, file=sys.stderr)

    def __call__(self, fraction: float, message: str) -> None:
        self.bar.n = int(fraction * 1000)
        self.bar.set_postfix_str(message[:50], refresh=True)

    def close(self) -> None:
        self.bar.close()


def add_cpu_cost(run: dict[str, Any], server_cpu_s: float, client_cpu_s: float) -> None:
    """CPU cost per request, which preemption by other processes does not inflate, and the throughput it
    allows when the service has every core to itself (the load generator's own cost left out)."""
    done = run.get("requests") or 0
    if not done:
        return
    server_ms = server_cpu_s * 1e3 / done
    run["server_cpu_ms_per_request"] = round(server_ms, 3)
    run["client_cpu_ms_per_request"] = round(client_cpu_s * 1e3 / done, 3)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    run["cpu_bound_req_per_s"] = round(cores * 1e3 / server_ms, 1) if server_ms > 0 else None


def run_http_and_load(args: argparse.Namespace, result: dict[str, Any], image: Any) -> None:
    """Start the service per setup; HTTP vs in-process on the first setup; load sweep on each."""
    precisions = result["config"]["precisions"]
    env_common = {"MASKLITE_MODELS_DIR": str(args.models_dir)}
    setups = _setups(args.load_setups) if args.load_levels else []
    if not setups:
        setups = [(1, 2, None, None)]
    load_runs: list[dict[str, Any]] = []
    servers: dict[str, Any] = {}
    for i, (workers, threads, cv_threads, solo) in enumerate(setups):
        label = f"{workers}w x {threads}t" + (f" cv{cv_threads}" if cv_threads is not None else "")
        label += f" solo{solo}" if solo is not None else ""
        env = {**env_common, "MASKLITE_WORKERS": str(workers), "MASKLITE_THREADS": str(threads)}
        if cv_threads is not None:
            env["MASKLITE_OPENCV_THREADS"] = str(cv_threads)
        if solo is not None:
            env["MASKLITE_SOLO_THREADS"] = str(solo)
        print(f"starting service ({label}) ...", file=sys.stderr, flush=True)
        with start_server(env) as server:
            if i == 0 and args.http_runs:
                bar = Bar("http vs in-process")
                result["http"] = http_vs_inprocess(
                    server.url, image, args.models_dir, precisions, args.http_runs, 5, progress=bar
                )
                result["http"]["server"] = {
                    "workers": workers,
                    "threads": threads,
                    "opencv_threads": cv_threads,
                    "solo_threads": solo,
                }
                bar.close()
            if args.load_levels:
                for level in _ints(args.load_levels):
                    print(f"  load {label}: {level} clients for {args.load_duration:.0f} s", file=sys.stderr)
                    cpu0, client0 = server.cpu_seconds(), time.process_time()
                    run = sweep(
                        server.url,
                        image.data,
                        [level],
                        args.load_duration,
                        {"model": args.load_model},
                        label=label,
                    )[0]
                    add_cpu_cost(run, server.cpu_seconds() - cpu0, time.process_time() - client0)
                    run["workers"], run["threads"], run["opencv_threads"] = workers, threads, cv_threads
                    run["solo_threads"] = solo
                    run["default_setup"] = i == 0 and not args.load_setups_given
                    load_runs.append(run)
            servers[label] = {
                "workers": workers,
                "threads": threads,
                "opencv_threads": cv_threads,
                "solo_threads": solo,
                "memory": server.memory(),
            }
    if load_runs:
        result["load"] = {"model": args.load_model, "image": image.name, "runs": load_runs}
    result["servers"] = servers


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    ap.add_argument("--models", default=None, help="comma-separated precisions (default: all in the card)")
    ap.add_argument("--threads", default="1,2", help="LiteRT/OpenCV thread counts for the in-process runs")
    ap.add_argument("--batches", default="1,4", help="classifier batch sizes")
    ap.add_argument("--runs", type=int, default=200, help="timed classifier calls per setting")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--pipeline-runs", type=int, default=100, help="timed runs on the 640x480 target")
    ap.add_argument("--scene-repeats", type=int, default=2, help="timed passes over the image set")
    ap.add_argument("--scenes-dir", type=Path, default=None, help="default: $MASKLITE_SCENES_DIR")
    ap.add_argument("--images", type=Path, nargs="*", default=None, help="benchmark these images instead")
    ap.add_argument("--http-runs", type=int, default=100, help="0: skip the HTTP comparison")
    ap.add_argument("--load-levels", default="1,4,8,16", help="concurrency levels; empty: no load runs")
    ap.add_argument("--load-duration", type=float, default=10.0, help="seconds per level")
    ap.add_argument(
        "--load-setups",
        default="1x2,1x2s1,2x1",
        help=f"server setups {SETUP_SYNTAX}, comma-separated (the first: the shipped defaults)",
    )
    ap.add_argument(
        "--detect-max-side", type=int, default=None, help="what-if: YuNet input size (default 640)"
    )
    ap.add_argument("--load-model", default="int8")
    ap.add_argument("--no-server", action="store_true", help="in-process numbers only")
    ap.add_argument("--sides", default="320,480,640", help="detect sizes for the per-stage CPU table")
    ap.add_argument("--stage-runs", type=int, default=30)
    ap.add_argument("--detector-runs", type=int, default=50, help="interleaved detect() calls per detector")
    ap.add_argument("--phone-runs", type=int, default=15)
    ap.add_argument(
        "--skip",
        default="",
        help="comma-separated sections to leave out: stages,detectors,phone (for quick looks only)",
    )
    ap.add_argument("--quick", action="store_true", help="few runs: a smoke test of the whole harness")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for benchmark.json/.txt/.md/.png")
    args = ap.parse_args(argv)
    # the first setup is the shipped default (1 worker x MASKLITE_THREADS=2) unless the caller chose setups
    args.load_setups_given = any(a.startswith("--load-setups") for a in (argv or sys.argv[1:]))
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    before = stats.snapshot()
    if args.quick:
        args.runs, args.warmup, args.pipeline_runs, args.scene_repeats = 10, 2, 5, 1
        args.http_runs, args.load_duration, args.load_levels = 10, 2.0, "1,4"
        args.load_setups = args.load_setups.split(",")[0]
        args.stage_runs, args.detector_runs, args.phone_runs, args.sides = 3, 5, 3, "640"

    config = BenchConfig(
        models_dir=args.models_dir,
        precisions=args.models.split(",") if args.models else None,
        threads=_ints(args.threads),
        batch_sizes=_ints(args.batches),
        runs=args.runs,
        warmup=args.warmup,
        pipeline_runs=args.pipeline_runs,
        scene_repeats=args.scene_repeats,
        scenes_dir=args.scenes_dir,
        images=load_files(args.images) if args.images else None,
        detect_max_side=args.detect_max_side,
    )
    bar = Bar("in-process")
    result = run_benchmark(config, progress=bar)
    bar.close()

    if not args.no_server and (args.http_runs or args.load_levels):
        if args.images:
            image = load_files(args.images[:1])[0]
        else:
            directory = scenes_dir(args.scenes_dir)
            image = make_target_image(load_scenes(directory)) if directory else None
        if image is None:
            print("no image for the HTTP runs: set MASKLITE_SCENES_DIR or pass --images", file=sys.stderr)
        else:
            run_http_and_load(args, result, image)
    extra = []
    if "stages" not in skip:
        sides = _ints(args.sides)
        print("per-stage CPU per detect size ...", file=sys.stderr, flush=True)
        options = SectionOptions(args.models_dir, runs=args.stage_runs, scenes_dir=args.scenes_dir)
        result["stages"] = stage_costs(options, sides)
        extra.append(format_costs(result["stages"]))
    if "detectors" not in skip:
        print("OpenCV vs new detector ...", file=sys.stderr, flush=True)
        options = SectionOptions(args.models_dir, runs=args.detector_runs, scenes_dir=args.scenes_dir)
        result["detectors"] = compare_detectors(options)
        extra.append(format_detectors(result["detectors"]))
    if "phone" not in skip:
        print("12 MP vs 1024 px ...", file=sys.stderr, flush=True)
        result["phone"] = phone_costs(
            SectionOptions(args.models_dir, runs=args.phone_runs, scenes_dir=args.scenes_dir)
        )
        extra.append(format_phone(result["phone"]))
    result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    # the in-process part's own window, then the whole run's
    result["inprocess_conditions"] = result.get("conditions")
    result["conditions"] = stats.conditions(before, stats.snapshot())
    # the load may rise and fall within a long run: any noisy section makes the whole result noisy
    windows = [result["conditions"], result["inprocess_conditions"]] + [
        (result.get(k) or {}).get("conditions") for k in ("stages", "detectors", "phone")
    ]
    noisy = any(bool((w or {}).get("noisy")) for w in windows)
    result["conditions"]["noisy"] = noisy
    result["conditions"]["note"] = stats.NOISY_NOTE if noisy else ""
    result["noisy"] = noisy

    checks = evaluate_targets(result)
    result["targets"] = checks_as_json(checks)
    text = "\n\n".join([format_result(result), *extra, format_checks(checks, noisy=noisy)])
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "benchmark.txt").write_text(text + "\n")
    md = format_result(result, markdown=True)
    if extra:
        md += "\n\n```\n" + "\n\n".join(extra) + "\n```"
    (args.out / "benchmark.md").write_text(md + "\n")
    save_chart(result, args.out / "benchmark.png")
    print(f"\nwrote benchmark.json/.txt/.md/.png in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
