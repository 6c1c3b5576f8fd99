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

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from service.benchmark_job import MAX_UPLOADED_IMAGES, BenchmarkRequest, benchmark_params
from service.bodies import PartRule, job_body_doc
from service.jobsubmit import JOB_ROUTE, start_job
from service.security import require_job_access

router = APIRouter(tags=["jobs"], dependencies=[Depends(require_job_access)])

_IMAGES_DOC = {
    "type": "array",
    "items": {"type": "string", "format": "binary"},
    "description": f"up to {MAX_UPLOADED_IMAGES} images to time the pipeline on",
}


@router.post(
    "/v1/benchmark",
    openapi_extra=job_body_doc(BenchmarkRequest, {"images": _IMAGES_DOC}),
    summary="Start a benchmark job: classifier and pipeline latency, HTTP overhead, scenes recall",
    **JOB_ROUTE,
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
