"""The benchmark as a service job: the request schema and the function the job machinery runs.

The job runs outside the request path (the job runner's worker), serialised with other jobs so two
benchmarks never measure each other. Its artifacts: result.json (the same schema as `python -m
service.bench`), chart.png and table.txt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from masklite import charts_available
from masklite.paths import ENV_DETECTOR_PATH, env_path
from service.bench.images import BenchImage, load_scenes, make_target_image, scenes_dir
from service.bench.report import format_result, save_chart
from service.bench.runner import BenchConfig, Progress, run_benchmark
from service.bench.targets import checks_as_json, evaluate_targets, format_checks

MAX_UPLOADED_IMAGES = 16
ModelName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,32}$")]
RESULT_FILE, CHART_FILE, TABLE_FILE = "result.json", "chart.png", "table.txt"


class BenchmarkRequest(BaseModel):
    """What to measure. Bounded so one job cannot hold the CPU for long (about a minute at the defaults)."""

    model_config = ConfigDict(extra="forbid")

    models: list[ModelName] | None = Field(
        None, min_length=1, max_length=4, description="precisions from /v1/models (default: all)"
    )
    threads: list[Annotated[int, Field(ge=1, le=8)]] = Field(
        [1, 2], min_length=1, max_length=4, description="LiteRT/OpenCV threads"
    )
    batch_sizes: list[Annotated[int, Field(ge=1, le=32)]] = Field(
        [1, 4], min_length=1, max_length=4, description="classifier batch sizes"
    )
    runs: int = Field(50, ge=1, le=1000, description="timed classifier calls per model x threads x batch")
    warmup: int = Field(5, ge=0, le=100)
    pipeline_runs: int = Field(20, ge=0, le=500, description="timed runs on the 640x480 target image")
    scene_repeats: int = Field(1, ge=1, le=5, description="timed passes over the image set")
    scene_limit: int | None = Field(None, ge=0, le=1000, description="first N scenes only")
    http_runs: int = Field(20, ge=0, le=500, description="HTTP vs in-process requests per model; 0: skip")


def loopback_url(host: str, port: int) -> str | None:
    """Where the job reaches its own service, or None when it is bound to one non-loopback interface."""
    if host in ("0.0.0.0", "::", "", "127.0.0.1", "localhost"):  # noqa: S104 - comparing, not binding
        return f"http://127.0.0.1:{port}"
    if host == "::1":
        return f"http://[::1]:{port}"
    return None


def run_benchmark_job(
    request: BenchmarkRequest,
    images: list[tuple[str, bytes]],
    models_dir: Path,
    detector_path: Path | None,
    self_url: str | None,
    out_dir: Path,
    progress: Progress | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """In-process benchmark (+ HTTP round trip against this service) -> artifacts in out_dir; the result."""

    def stage(lo: float, hi: float) -> Progress:
        def report(fraction: float, message: str) -> None:
            if progress is not None:
                progress(lo + (hi - lo) * fraction, message)

        return report

    uploaded = [BenchImage(name[:100], data) for name, data in images[:MAX_UPLOADED_IMAGES]]
    config = BenchConfig(
        models_dir=models_dir,
        precisions=request.models,
        threads=request.threads,
        batch_sizes=request.batch_sizes,
        runs=request.runs,
        warmup=request.warmup,
        pipeline_runs=request.pipeline_runs,
        scene_repeats=request.scene_repeats,
        scene_limit=request.scene_limit,
        images=uploaded or None,
        detector_path=detector_path or env_path(ENV_DETECTOR_PATH),
        include_pipeline=True,
    )
    do_http = request.http_runs > 0 and self_url is not None
    result = run_benchmark(config, stage(0.0, 0.8 if do_http else 1.0))
    if request.http_runs > 0 and self_url is None:
        result["http_skipped"] = "the service is not bound to a loopback address"
    if do_http:
        target = _http_image(uploaded)
        if target is None:
            result["http_skipped"] = "no image: upload one or set MASKLITE_SCENES_DIR"
        else:
            from service.bench.httpbench import http_vs_inprocess

            result["http"] = http_vs_inprocess(
                self_url,  # type: ignore[arg-type]
                target,
                models_dir,
                list(result["config"]["precisions"]),  # type: ignore[index]
                runs=request.http_runs,
                warmup=min(5, request.warmup),
                detector_path=config.detector_path,
                headers=headers,
                progress=stage(0.8, 1.0),
            )
    checks = evaluate_targets(result)
    result["targets"] = checks_as_json(checks)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RESULT_FILE).write_text(json.dumps(result, indent=2) + "\n")
    noisy = bool((result.get("conditions") or {}).get("noisy"))
    text = format_result(result) + "\n\n" + format_checks(checks, noisy=noisy)
    (out_dir / TABLE_FILE).write_text(text + "\n")
    if charts_available():  # optional (extra `charts`): the Docker image has no matplotlib
        save_chart(result, out_dir / CHART_FILE)
    return result


def _http_image(uploaded: list[BenchImage]) -> BenchImage | None:
    if uploaded:
        return uploaded[0]
    directory = scenes_dir()
    if directory is None or not (directory / "images").is_dir():
        return None
    return make_target_image(load_scenes(directory))


def benchmark_job(params: dict[str, Any], progress: Any, out_dir: Path) -> dict[str, Any]:
    """The job-kind entry point (service/jobs.py calls it in a spawned worker process).

    params: request (BenchmarkRequest as a dict), images [(name, bytes)] kept in memory, models_dir,
    detector_path, self_url (this service on loopback, or None), headers (API key for predict, if needed).
    """
    request = BenchmarkRequest.model_validate(params["request"])

    def report(fraction: float, message: str) -> None:
        progress(fraction, {"stage": message})

    detector = params.get("detector_path")
    return run_benchmark_job(
        request,
        list(params.get("images") or []),
        Path(params["models_dir"]),
        Path(detector) if detector else None,
        params.get("self_url"),
        out_dir,
        progress=report,
        headers=params.get("headers") or None,
    )
