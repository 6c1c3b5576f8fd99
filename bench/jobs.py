"""The benchmark job's body: what `POST /v1/benchmark` runs, in the job process only.

The service registers it by name ("bench.jobs:run_benchmark_job", service/jobkinds.py) and the job process
imports it, so the API process never imports the benchmark code (with httpx and rich: ~9 MB per worker).
The request was validated by the service (service/benchmark_job.py); here it is a plain dict.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.httpbench import http_vs_inprocess
from bench.images import BenchImage, load_scenes, make_target_image, scenes_dir
from bench.inprocess import BenchConfig, Progress, run_benchmark
from bench.report import format_result, save_chart
from bench.targets import checks_as_json, evaluate_targets, format_checks
from masklite import CHARTS_MISSING, charts_available
from masklite.paths import ENV_DETECTOR_PATH, env_path

RESULT_FILE, CHART_FILE, TABLE_FILE = "result.json", "chart.png", "table.txt"
# request fields that are not BenchConfig fields
NOT_CONFIG = ("models", "http_runs")


def run_benchmark_job(
    params: dict[str, Any], progress: Callable[[float, dict | None], None], out_dir: Path
) -> dict[str, Any]:
    """The benchmark kind's entry point: in-process benchmark (+ HTTP round trip against this service) ->
    artifacts in out_dir; the result (result.json has the schema of `python -m bench`'s benchmark.json).

    params: request (the validated BenchmarkRequest as a dict), images [(name, bytes)] kept in memory,
    models_dir, detector_path, self_url (this service on loopback, or None), headers (API key for
    predict, if needed)."""
    request: dict[str, Any] = params["request"]
    detector = params.get("detector_path")
    # the service bounds the uploads (service/benchmark_job.py: MAX_UPLOADED_IMAGES)
    uploaded = [BenchImage(name[:100], data) for name, data in params.get("images") or []]
    models_dir = Path(params["models_dir"])
    config = BenchConfig(
        models_dir=models_dir,
        precisions=request.get("models"),
        images=uploaded or None,
        detector_path=Path(detector) if detector else env_path(ENV_DETECTOR_PATH),
        **{k: v for k, v in request.items() if k not in NOT_CONFIG},
    )

    def stage(lo: float, hi: float) -> Progress:
        """progress mapped onto [lo, hi] of the whole bar, the message as the job's partial result."""
        return lambda fraction, message: progress(lo + (hi - lo) * fraction, {"stage": message})

    self_url: str | None = params.get("self_url")
    http_runs = int(request.get("http_runs", 0))
    do_http = http_runs > 0 and self_url is not None
    split = 0.8 if do_http else 1.0  # share of the progress bar for the in-process part
    result = run_benchmark(config, stage(0.0, split))
    target = _http_image(uploaded) if do_http else None
    if http_runs > 0 and self_url is None:
        result["http_skipped"] = "the service is not bound to a loopback address"
    elif do_http and target is None:
        result["http_skipped"] = "no image: upload one or set MASKLITE_SCENES_DIR"
    elif target is not None and self_url is not None:
        result["http"] = http_vs_inprocess(
            self_url,
            target,
            models_dir,
            list(result["config"]["precisions"]),  # type: ignore[index]
            runs=http_runs,
            warmup=min(5, config.warmup),
            detector_path=config.detector_path,
            headers=params.get("headers") or None,
            progress=stage(split, 1.0),
        )
    checks = evaluate_targets(result)
    result["targets"] = checks_as_json(checks)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RESULT_FILE).write_text(json.dumps(result, indent=2) + "\n")
    noisy = bool((result.get("conditions") or {}).get("noisy"))
    (out_dir / TABLE_FILE).write_text(
        format_result(result) + "\n\n" + format_checks(checks, noisy=noisy) + "\n"
    )
    if charts_available():  # optional (extra `charts`): the Docker image has no matplotlib
        save_chart(result, out_dir / CHART_FILE)
    else:
        result["charts_skipped"] = CHARTS_MISSING
    return result


def _http_image(uploaded: list[BenchImage]) -> BenchImage | None:
    if uploaded:
        return uploaded[0]
    directory = scenes_dir()
    if directory is None or not (directory / "images").is_dir():
        return None
    return make_target_image(load_scenes(directory))
