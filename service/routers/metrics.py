"""GET /metrics: Prometheus exposition (all worker processes when several run)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from service import telemetry

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}
    },
    summary="Prometheus metrics",
)
async def prometheus_metrics() -> Response:
    body, content_type = telemetry.render()
    return Response(body, media_type=content_type)
