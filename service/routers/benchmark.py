"""POST /v1/benchmark: measure the shipped models on this machine as a background job → 202 + job id.

Body, either
    application/json      the parameters, all optional (service.benchmark_job.BenchmarkRequest):
                          {"models": ["int8", "float32"], "threads": [1, 2], "batch_sizes": [1, 4],
                           "runs": 50, "pipeline_runs": 20, "scene_limit": null, "http_runs": 20}
    multipart/form-data   part `params` (that JSON, optional) and up to 16 parts `images` (JPEG/PNG/WebP/BMP):
                          the pipeline is timed on these instead of the scenes. They stay in memory and go
                          to the job process without touching the disk.
The job (kind "benchmark", GET /v1/jobs/{id}) runs in its own process, one job at a time, so benchmarks
never measure each other or a robustness job. Artifacts: result.json, chart.png, table.txt.
"""

from __future__ import annotations

from functools import partial

from fastapi import Request
from fastapi.responses import JSONResponse

from service.benchmark_job import MAX_UPLOADED_IMAGES, BenchmarkRequest, benchmark_params
from service.bodies import PartRule
from service.jobsubmit import job_route, job_router, start_job

router = job_router()

_IMAGES_DOC = {
    "type": "array",
    "items": {"type": "string", "format": "binary"},
    "description": f"up to {MAX_UPLOADED_IMAGES} images to time the pipeline on",
}


@job_route(
    router,
    "/v1/benchmark",
    BenchmarkRequest,
    {"images": _IMAGES_DOC},
    summary="Start a benchmark job: classifier and pipeline latency, HTTP overhead, scenes recall",
)
async def start_benchmark(request: Request) -> JSONResponse:
    settings = request.app.state.settings
    images = {"images": PartRule(max_count=MAX_UPLOADED_IMAGES)}
    # the detector file the running service uses, for the job's in-process runs
    runtime = getattr(request.app.state, "runtime", None)
    detector = getattr(getattr(runtime, "detector", None), "path", None) or settings.detector_path
    prepare = partial(benchmark_params, detector=detector)
    return await start_job(
        request, "benchmark", BenchmarkRequest, images, prepare, max_total=settings.max_body_bytes
    )
