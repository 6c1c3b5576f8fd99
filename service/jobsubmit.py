"""How a job route submits a job: body -> checks -> queue -> 202, in the project's error envelope.

    job_router(), job_route(router, path, Model, ...)   declare a job route
    start_job(request, kind, Model, uploads, prepare)   a job route's body, whole
    submit_job(request, kind, params, public)           -> 202 {job_id, state, status_url}; 429 / 503
    get_jobs(request)                                   the app's JobQueue (started in create_app's lifespan)

The kinds themselves are registered by name in service/jobkinds.py; each kind's request checks live in its
adapter (service/robustness_job.py, service/benchmark_job.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.types import DecoratedCallable
from pydantic import BaseModel

from masklite.card import ModelCard, load_card
from service.bodies import Part, PartRule, job_body_doc, read_job_body
from service.errors import ApiError, error_responses
from service.jobqueue.model import QueueFull, StorageUnavailable, UnknownKind
from service.jobqueue.queue import JobQueue
from service.schemas import JobAccepted
from service.security import require_job_access
from service.settings import Settings

M = TypeVar("M", bound=BaseModel)

# what every job route answers: 202 + the job's id and URL, or an error in the envelope
JOB_ROUTE: dict[str, Any] = {
    "status_code": 202,
    "response_model": JobAccepted,
    "responses": error_responses(400, 401, 403, 413, 415, 422, 429, 503),
}


def job_router() -> APIRouter:
    """A router of job routes: tagged "jobs", every route behind require_job_access."""
    return APIRouter(tags=["jobs"], dependencies=[Depends(require_job_access)])


def job_route(
    router: APIRouter, path: str, params: type[BaseModel], uploads: Mapping[str, dict[str, Any]], summary: str
) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """Declares a POST route that starts a job (JOB_ROUTE), its body documented by job_body_doc."""
    return router.post(path, openapi_extra=job_body_doc(params, uploads), summary=summary, **JOB_ROUTE)


def get_jobs(request: Request) -> JobQueue:
    queue = getattr(request.app.state, "jobs", None)
    if queue is None:
        raise ApiError(503, "jobs_unavailable", "the job queue is not started", {"Retry-After": "1"})
    return queue


def status_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def submit_job(
    request: Request, kind: str, params: dict[str, Any], public_params: dict[str, Any] | None = None
) -> JSONResponse:
    """Queue a job and answer 202 {job_id, state, status_url}; 429 when the queue is full, 503 when job
    results cannot be stored."""
    queue = get_jobs(request)
    try:
        job = queue.submit(kind, params, public_params)
    except QueueFull as exc:
        raise ApiError(429, "job_queue_full", str(exc), {"Retry-After": str(queue.retry_after_s)}) from exc
    except StorageUnavailable as exc:
        raise ApiError(503, "jobs_storage_unavailable", str(exc), {"Retry-After": "60"}) from exc
    except UnknownKind as exc:
        raise ApiError(500, "internal_error", str(exc)) from exc
    url = status_url(job.id)
    body = JobAccepted(job_id=job.id, state=job.state, status_url=url)  # type: ignore[arg-type]
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": url})


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
