"""/v1/jobs: list, inspect, download artifacts of, and cancel background jobs (see service/jobqueue/).

The JobQueue is started in create_app's lifespan, beside the runtime; job routes submit through
`service.jobsubmit`. Every replica answers for every job: records live in the job store (SQLite or
Redis), files on the shared jobs folder.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from service.errors import ApiError, error_responses
from service.jobqueue.model import FINISHED, StorageUnavailable
from service.jobqueue.queue import JobQueue
from service.jobsubmit import get_jobs, job_router, status_url
from service.schemas import JobState

log = logging.getLogger("masklite.jobs")

MEDIA_TYPES = {"png": "image/png", "csv": "text/csv", "json": "application/json", "txt": "text/plain",
               "md": "text/markdown", "jsonl": "application/x-ndjson", "mp4": "video/mp4"}  # fmt: skip


router = job_router()


class JobSummary(BaseModel):
    id: str
    kind: str
    state: JobState
    progress: float = Field(ge=0, le=1)
    created: str | None
    started: str | None
    finished: str | None
    elapsed_s: float | None = None
    error: str | None
    worker: str | None = Field(None, description="host name of the worker that runs / ran it")
    status_url: str


class JobDetail(JobSummary):
    params: dict[str, Any]
    artifacts: dict[str, str] = Field(description="file name -> download URL")
    partial: dict[str, Any] | None = Field(description="results so far, while the job runs")
    result: dict[str, Any] | None


class JobList(BaseModel):
    jobs: list[JobSummary]
    running: int
    queued: int
    max_running: int = Field(description="jobs the live workers run at once")
    queue_size: int
    workers: int = Field(description="live job runners (API processes or workers)")
    backend: Literal["sqlite", "redis"]


T = TypeVar("T")


async def _call(fn: Callable[..., T], *args: Any) -> T:
    """A store call off the event loop; an unreachable store is 503 (predict is unaffected)."""
    try:
        return await asyncio.to_thread(fn, *args)
    except StorageUnavailable as exc:
        raise ApiError(503, "jobs_storage_unavailable", str(exc), {"Retry-After": "5"}) from exc


async def _job_or_404(manager: JobQueue, job_id: str) -> Any:
    try:
        uuid.UUID(job_id)
    except ValueError:
        job = None
    else:
        job = await _call(manager.get, job_id)
    if job is None:
        raise ApiError(404, "job_not_found", f"no job with id {job_id[:64]!r}")
    return job


def _summary(job: Any) -> dict[str, Any]:
    return {**job.summary(), "status_url": status_url(job.id)}


@router.get("/v1/jobs", response_model=JobList, responses=error_responses(401, 403, 503), summary="List jobs")
async def list_jobs(
    request: Request,
    kind: Annotated[str | None, Query(max_length=32, description="only jobs of this kind")] = None,
    state: Annotated[JobState | None, Query(description="only jobs in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    manager = get_jobs(request)
    every = await _call(manager.list)
    jobs = [j for j in every if (kind is None or j.kind == kind) and (state is None or j.state == state)]
    return {
        "jobs": [_summary(j) for j in jobs[:limit]],
        "running": sum(j.state == "running" for j in every),
        "queued": sum(j.state == "queued" for j in every),
        "max_running": await _call(manager.capacity),
        "queue_size": manager.queue_size,
        "workers": await _call(manager.workers),
        "backend": manager.backend,
    }


@router.get(
    "/v1/jobs/{job_id}",
    response_model=JobDetail,
    responses=error_responses(401, 403, 404, 503),
    summary="A job: state, progress, partial and final results",
)
async def get_job(request: Request, job_id: str) -> dict[str, Any]:
    job = await _job_or_404(get_jobs(request), job_id)
    detail = job.detail()
    detail["artifacts"] = {name: f"{status_url(job.id)}/artifacts/{name}" for name in detail["artifacts"]}
    return {**detail, "status_url": status_url(job.id)}


async def _artifact(request: Request, job_id: str, name: str) -> FileResponse:
    manager = get_jobs(request)
    job = await _job_or_404(manager, job_id)
    path = manager.artifacts.path(job.id, name, job.artifacts)
    if path is None:
        hint = "" if job.state == "done" else f" (the job is {job.state})"
        skipped = (job.result or {}).get("charts_skipped")
        if skipped and name.endswith(".png"):
            hint = f": it drew no charts, {skipped}"
        raise ApiError(404, "artifact_not_found", f"job {job.id} has no artifact {name[:100]!r}{hint}")
    media = MEDIA_TYPES.get(name.rsplit(".", 1)[-1], "application/octet-stream")
    return FileResponse(path, media_type=media, headers={"Cache-Control": "no-store"})


@router.get(
    "/v1/jobs/{job_id}/heatmap.png",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}}, **error_responses(401, 403, 404, 503)},
    summary="A finished robustness job's heatmap",
)
async def get_heatmap(request: Request, job_id: str) -> FileResponse:
    return await _artifact(request, job_id, "heatmap.png")


@router.get(
    "/v1/jobs/{job_id}/artifacts/{name}",
    response_class=FileResponse,
    responses={
        200: {"content": {"image/png": {}, "text/csv": {}, "application/json": {}}},
        **error_responses(401, 403, 404, 503),
    },  # fmt: skip
    summary="A file the job wrote (only names listed in the job's artifacts)",
)
async def get_artifact(request: Request, job_id: str, name: str) -> FileResponse:
    return await _artifact(request, job_id, name)


@router.delete(
    "/v1/jobs/{job_id}",
    response_model=JobDetail,
    responses=error_responses(401, 403, 404, 409, 503),
    summary="Cancel a queued or running job",
)
async def cancel_job(request: Request, job_id: str) -> dict[str, Any]:
    manager = get_jobs(request)
    job = await _job_or_404(manager, job_id)
    if job.state in FINISHED:
        raise ApiError(409, "job_finished", f"job {job.id} already finished ({job.state}); nothing to cancel")
    await _call(manager.cancel, job.id)
    return await get_job(request, job.id)
