"""The job kinds this service runs, registered in one place, and how a route submits one.

    register_job_kinds()          create_app calls it once: robustness, benchmark
    start_job(request, kind, Model, uploads, prepare)   a job route, whole: body -> checks -> 202
    submit_job(request, kind, params, public)           -> 202 {job_id, state, status_url}; 429 / 503

A kind is a module-level function `fn(params, progress, out_dir) -> result` (the job runner pickles it by
reference into a spawned process). Each kind has an adapter here: its request model, the checks that need
the model files (422 before anything is queued), and the job function. This is the only service module
that imports the robustness and benchmark code; the routers import this module, never each other.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from masklite import charts_available
from masklite.card import ModelCard, load_card
from masklite.evalset import EvalSetError, EvalSetLimits, default_evalset_path, load_evalset
from masklite.image import ImageError, decode_image
from masklite.paths import ENV_DETECTOR_PATH, env_path
from robustness.errors import RobustnessError
from robustness.evaluate import run_job as robustness_job
from robustness.spec import MAX_CELLS, GridSpec
from robustness.surgery import TFLiteModel
from service.bodies import Part, PartRule, read_job_body
from service.errors import ApiError, error_responses
from service.jobqueue import JobFn, JobQueue, QueueFull, StorageUnavailable, UnknownKind, register_job_kind
from service.schemas import JobAccepted
from service.settings import Settings

if TYPE_CHECKING:  # the benchmark code itself is imported by the job process only (run_benchmark_job)
    from bench.images import BenchImage
    from bench.inprocess import Progress

M = TypeVar("M", bound=BaseModel)

# ---------------------------------------------------------------- submitting


def get_jobs(request: Request) -> JobQueue:
    manager = getattr(request.app.state, "jobs", None)
    if manager is None:
        raise ApiError(503, "jobs_unavailable", "the job runner is not started", {"Retry-After": "1"})
    return manager


def status_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def submit_job(
    request: Request, kind: str, params: dict[str, Any], public_params: dict[str, Any] | None = None
) -> JSONResponse:
    """Queue a job and answer 202 {job_id, state, status_url}; 429 when the queue is full, 503 when job
    results cannot be stored."""
    manager = get_jobs(request)
    try:
        job = manager.submit(kind, params, public_params)
    except QueueFull as exc:
        raise ApiError(429, "job_queue_full", str(exc), {"Retry-After": str(manager.retry_after_s)}) from exc
    except StorageUnavailable as exc:
        raise ApiError(503, "jobs_storage_unavailable", str(exc), {"Retry-After": "60"}) from exc
    except UnknownKind as exc:
        raise ApiError(500, "internal_error", str(exc)) from exc
    url = status_url(job.id)
    body = JobAccepted(job_id=job.id, state=job.state, status_url=url)  # type: ignore[arg-type]
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": url})


# what every job route answers: 202 + the job's id and URL, or an error in the envelope
JOB_ROUTE: dict[str, Any] = {
    "status_code": 202,
    "response_model": JobAccepted,
    "responses": error_responses(400, 401, 403, 413, 415, 422, 429, 503),
}


async def start_job(
    request: Request,
    kind: str,
    model: type[M],
    uploads: Mapping[str, PartRule],
    prepare: Callable[[M, ModelCard, Settings, dict[str, list[Part]]], tuple[dict[str, Any], dict[str, Any]]],
    **limits: Any,
) -> JSONResponse:
    """A job route, whole: read and validate the body (service/bodies.py), check it against the card and the
    model files (`prepare`, on a thread: it reads files), queue the job -> 202."""
    spec, parts = await read_job_body(request, model, uploads, **limits)
    card = await asyncio.to_thread(job_card, request)
    settings = request.app.state.settings
    params, public = await asyncio.to_thread(prepare, spec, card, settings, parts)
    return submit_job(request, kind, params, public)


def job_card(request: Request) -> ModelCard:
    """The card the running models came from (read from disk while they load); 503 when unusable."""
    card = getattr(getattr(request.app.state, "runtime", None), "card", None)
    if card is not None:
        return card
    try:
        return load_card(Path(request.app.state.settings.models_dir))
    except (OSError, ValueError) as exc:
        raise ApiError(
            503, "models_unavailable", f"no usable model card: {exc}", {"Retry-After": "5"}
        ) from exc


# ---------------------------------------------------------------- robustness


def evalset_limits(settings: Settings) -> EvalSetLimits:
    return EvalSetLimits(
        max_zip_bytes=settings.evalset_max_bytes,
        max_uncompressed_bytes=settings.evalset_max_uncompressed_bytes,
        max_files=settings.evalset_max_files,
        max_image_pixels=min(settings.max_pixels, EvalSetLimits.max_image_pixels),
    )


@lru_cache(maxsize=4)
def _layer_model(path: str) -> TFLiteModel:
    """Parsed once per file; only the layer list is used here (the job process re-reads and verifies)."""
    try:
        return TFLiteModel.from_file(path)
    except (OSError, RobustnessError) as exc:
        raise ApiError(
            503, "models_unavailable", f"model file unusable: {exc}", {"Retry-After": "5"}
        ) from exc


def robustness_params(
    spec: GridSpec, card: ModelCard, settings: Settings, parts: dict[str, list[Part]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Blocking (run it on a thread): the grid checked against the model and the evaluation set (the
    uploaded part `evalset`, or the shipped one) -> (the job's parameters, what GET /v1/jobs shows of
    them); 422 for anything the job would fail on."""
    upload = parts["evalset"][0].data if "evalset" in parts else None
    if spec.precision not in card.models:
        known = ", ".join(card.models)
        raise ApiError(422, "invalid_parameters", f"precision: {spec.precision!r} is not one of {known}")
    models_dir = Path(settings.models_dir)
    model = _layer_model(str(models_dir / card.models[spec.precision].file))
    try:
        layers = model.resolve_layers(spec.layers)
    except RobustnessError as exc:
        raise ApiError(422, "invalid_parameters", f"layers: {exc}") from exc
    cells = len(layers) * len(spec.perturbations())
    if cells > MAX_CELLS:
        raise ApiError(422, "invalid_parameters", f"{cells:,} cells requested; the limit is {MAX_CELLS:,}")
    limits = evalset_limits(settings)
    if upload is not None:
        if not upload:
            raise ApiError(422, "invalid_evalset", "evalset: the uploaded file is empty (0 bytes)")
        try:
            evalset = load_evalset(upload, card, limits, "upload")
        except EvalSetError as exc:
            raise ApiError(422, "invalid_evalset", f"evalset: {exc}") from exc
        evalset_info: dict[str, Any] = {
            "source": "upload",
            "bytes": len(upload),
            "sha256": hashlib.sha256(upload).hexdigest(),
            "images": len(evalset),
            "per_label": evalset.counts(),
        }
    else:
        path = default_evalset_path(models_dir)
        if not path.is_file():
            raise ApiError(
                422,
                "no_evalset",
                "this service has no default evaluation set (models/evalset.zip); upload one as the "
                "multipart part 'evalset' (a zip with one folder per label)",
            )
        evalset_info = {"source": path.name}
    params = {
        "spec": spec.model_dump(),
        "models_dir": str(models_dir),
        "evalset_zip": upload,
        "limits": limits.__dict__,
        "workers": settings.job_workers,
        "threads": 1,
    }
    public = {**spec.model_dump(), "layers_resolved": len(layers), "cells": cells, "evalset": evalset_info}
    return params, public


# ---------------------------------------------------------------- benchmark

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


def benchmark_params(
    spec: BenchmarkRequest,
    card: ModelCard,
    settings: Settings,
    parts: dict[str, list[Part]],
    detector: Path | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Blocking (run it on a thread): the request checked against the card and the uploaded `images`
    decoded once (a bad image fails here, not minutes later) -> (the job's parameters, their public
    part). `detector`: the file the service runs (default: the card's)."""
    images = parts.get("images", [])
    unknown = [m for m in spec.models or () if m not in card.models]
    if unknown:
        known = ", ".join(sorted(card.models))
        raise ApiError(422, "invalid_parameters", f"models: {', '.join(unknown)} not in {known}")
    named = [(part.filename or f"image{i}", part.data) for i, part in enumerate(images)]
    for name, data in named:
        if not data:
            raise ApiError(422, "invalid_image", f"images: {name[:60]!r} is empty (0 bytes)")
        try:
            decode_image(data, settings.max_pixels)
        except ImageError as exc:
            raise ApiError(422, "invalid_image", f"images: {name[:60]!r}: {exc}") from exc
    headers = {}
    if settings.protect_predict and settings.api_key is not None:
        headers["X-API-Key"] = settings.api_key.get_secret_value()
    params = {
        "request": spec.model_dump(),
        "images": named,
        "models_dir": str(settings.models_dir),
        "detector_path": str(detector) if detector else None,
        # with a broker the job runs on a worker, where no API listens on loopback: no HTTP section
        "self_url": None if settings.broker_url else loopback_url(settings.host, settings.port),
        "headers": headers,
    }
    public = {
        **spec.model_dump(),
        "images": [
            {"name": n[:100], "bytes": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in named
        ],
    }
    return params, public


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
    """In-process benchmark (+ HTTP round trip against this service) -> artifacts in out_dir; the result.
    result.json has the schema of `python -m bench`'s benchmark.json."""
    # imported here, in the job process: the API process never runs a benchmark, and these modules (with
    # httpx and rich) would add ~9 MB to every API worker
    from bench.httpbench import http_vs_inprocess
    from bench.images import BenchImage
    from bench.inprocess import BenchConfig, run_benchmark
    from bench.report import format_result, save_chart
    from bench.targets import checks_as_json, evaluate_targets, format_checks

    uploaded = [BenchImage(name[:100], data) for name, data in images[:MAX_UPLOADED_IMAGES]]
    config = BenchConfig(
        models_dir=models_dir,
        precisions=request.models,
        images=uploaded or None,
        detector_path=detector_path or env_path(ENV_DETECTOR_PATH),
        **request.model_dump(exclude={"models", "http_runs"}),
    )
    do_http = request.http_runs > 0 and self_url is not None
    split = 0.8 if do_http else 1.0  # share of the progress bar for the in-process part
    result = run_benchmark(config, _scaled(progress, 0.0, split))
    target = _http_image(uploaded) if do_http else None
    if request.http_runs > 0 and self_url is None:
        result["http_skipped"] = "the service is not bound to a loopback address"
    elif do_http and target is None:
        result["http_skipped"] = "no image: upload one or set MASKLITE_SCENES_DIR"
    elif target is not None:
        result["http"] = http_vs_inprocess(
            self_url,  # type: ignore[arg-type]
            target,
            models_dir,
            list(result["config"]["precisions"]),  # type: ignore[index]
            runs=request.http_runs,
            warmup=min(5, request.warmup),
            detector_path=config.detector_path,
            headers=headers,
            progress=_scaled(progress, split, 1.0),
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
    return result


def _scaled(progress: Progress | None, lo: float, hi: float) -> Progress:
    """`progress` mapped onto [lo, hi] of the whole bar."""

    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress(lo + (hi - lo) * fraction, message)

    return report


def _http_image(uploaded: list[BenchImage]) -> BenchImage | None:
    from bench.images import load_scenes, make_target_image, scenes_dir  # job process only, as above

    if uploaded:
        return uploaded[0]
    directory = scenes_dir()
    if directory is None or not (directory / "images").is_dir():
        return None
    return make_target_image(load_scenes(directory))


def benchmark_job(params: dict[str, Any], progress: Any, out_dir: Path) -> dict[str, Any]:
    """The benchmark kind's entry point, in the job worker process.

    params: request (BenchmarkRequest as a dict), images [(name, bytes)] kept in memory, models_dir,
    detector_path, self_url (this service on loopback, or None), headers (API key for predict, if needed)."""
    detector = params.get("detector_path")
    return run_benchmark_job(
        BenchmarkRequest.model_validate(params["request"]),
        list(params.get("images") or []),
        Path(params["models_dir"]),
        Path(detector) if detector else None,
        params.get("self_url"),
        out_dir,
        progress=lambda fraction, message: progress(fraction, {"stage": message}),
        headers=params.get("headers") or None,
    )


# ---------------------------------------------------------------- registration

JOB_KINDS: dict[str, JobFn] = {"robustness": robustness_job, "benchmark": benchmark_job}
# kinds that run alone on their host (service/jobqueue/locks.py): a benchmark must not measure another job
EXCLUSIVE_KINDS = frozenset({"benchmark"})


def register_job_kinds(register: Callable[[str, JobFn, bool], None] = register_job_kind) -> None:
    """Make every kind submittable: create_app and the job worker call this, importing a router registers
    nothing."""
    for name, fn in JOB_KINDS.items():
        register(name, fn, name in EXCLUSIVE_KINDS)
