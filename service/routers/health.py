"""GET /health/live (the process answers) and GET /health/ready (models loaded and warmed up)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.runtime import get_runtime
from service.schemas import LiveResponse, ReadyDetector, ReadyModel, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/health/live", response_model=LiveResponse, summary="Liveness: the process serves requests")
async def live(request: Request) -> LiveResponse:
    return LiveResponse(uptime_s=round(time.time() - get_runtime(request).started_at, 3))


@router.get(
    "/health/ready",
    response_model=ReadyResponse,
    responses={503: {"model": ReadyResponse, "description": "not ready; `reasons` says why"}},
    summary="Readiness: models and face detector loaded, verified and warmed up (200), else 503",
)
async def ready(request: Request) -> JSONResponse:
    rt = get_runtime(request)
    det = rt.detector
    warnings = []
    if rt.phase in ("ready", "degraded") and not det.available:
        if rt.settings.detector_optional:
            warnings.append(f"face detector unavailable ({det.error}); whole images are classified")
        else:
            warnings.append("face detector unavailable: only detect_faces=false requests are served")
    body = ReadyResponse(
        ready=rt.ready,
        phase=rt.phase,
        reasons=rt.reasons(),
        models={p: ReadyModel(loaded=m.loaded, error=m.error) for p, m in rt.models.items()},
        detector=ReadyDetector(
            name=det.name,
            file=det.file,
            available=det.available,
            optional=rt.settings.detector_optional,
            error=det.error,
            sha256_ok=det.sha256_ok,
        ),
        warnings=warnings,
        threads=rt.settings.threads,
        inflight=rt.inflight,
        max_inflight=rt.settings.max_inflight,
    )
    headers = {} if rt.ready else {"Retry-After": str(rt.settings.retry_after_s)}
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if rt.ready else 503, headers=headers)
