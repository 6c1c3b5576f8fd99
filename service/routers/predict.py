"""POST /v1/predict (multipart upload or raw image body) and POST /v1/predict/snapshot (base64 JSON)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from masklite.image import ImageTooLarge, UndecodableImage, UnsupportedImageType
from masklite.pipeline import ImageResult, PredictOptions
from service import telemetry
from service.bodies import IMAGE_TYPES, decode_base64_image, image_media, read_image
from service.errors import ApiError, error_responses
from service.runtime import Runtime, get_runtime
from service.schemas import (
    Face,
    ImageSize,
    ModelRef,
    PredictQuery,
    PredictResponse,
    SnapshotRequest,
    Timings,
)
from service.security import require_api_key

_binary = {"schema": {"type": "string", "format": "binary"}}
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "JPEG, PNG, WebP or BMP; the type is read from the bytes",
                        }
                    },
                }
            },
            **{t: _binary for t in IMAGE_TYPES},
        },
    }
}
_ERRORS = error_responses(400, 401, 403, 408, 413, 415, 422, 503)


async def predict(request: Request, query: Annotated[PredictQuery, Query()]) -> PredictResponse:
    """Send `multipart/form-data` with a `file` field, or the raw image bytes with an image content type."""
    t0 = time.perf_counter()
    rt = get_runtime(request)
    options = _options(rt, query)
    media = image_media(request.headers.get("content-type", ""))
    rt.admit()  # before reading the body: a full server refuses without buffering anything
    try:
        data = await read_image(request, media, rt.settings.body_timeout_s)
        result = await _predict(rt, data, options)
    finally:
        rt.release()
    return _response(request, rt, result, t0)


async def predict_snapshot(request: Request, body: SnapshotRequest) -> PredictResponse:
    """JSON `{"image": "<base64 or data:image/...;base64,...>"}` plus the query's options as fields."""
    t0 = time.perf_counter()
    rt = get_runtime(request)
    options = _options(rt, body)
    data = decode_base64_image(body.image)
    rt.admit()
    try:
        result = await _predict(rt, data, options)
    finally:
        rt.release()
    return _response(request, rt, result, t0)


def _options(rt: Runtime, query: PredictQuery) -> PredictOptions:
    """The request's options, once the runtime can serve them (else a 4xx/503 ApiError)."""
    rt.resolve_precision(query.model)
    rt.check_detector(query.detect_faces)
    asked = query.model_dump(include=set(PredictQuery.model_fields))  # a snapshot's image is no option
    return PredictOptions(**asked, max_pixels=rt.settings.max_pixels)


async def _predict(rt: Runtime, data: bytes, options: PredictOptions) -> ImageResult:
    try:
        return await rt.predict(data, options)
    except ImageTooLarge as exc:
        telemetry.REJECTIONS.labels("image_too_large").inc()
        raise ApiError(413, "image_too_large", str(exc)) from exc
    except UnsupportedImageType as exc:
        raise ApiError(415, "unsupported_image_type", str(exc)) from exc
    except UndecodableImage as exc:
        raise ApiError(422, "undecodable_image", str(exc)) from exc


def _response(request: Request, rt: Runtime, res: ImageResult, t0: float) -> PredictResponse:
    """The wire format (PredictResponse), built from the core's result in this one place."""
    card, precision = rt.card, res.precision
    assert card is not None and precision is not None
    timings = {
        "queue": 0.0,
        "decode": 0.0,
        "detect": 0.0,
        "classify": 0.0,
        **res.timings_ms,
        "total": (time.perf_counter() - t0) * 1e3,
    }
    for stage in ("queue", "decode", "detect", "classify", "total"):
        telemetry.STAGE_LATENCY.labels(stage, precision).observe(timings[stage] / 1e3)
    for f in res.faces:
        telemetry.FACES.labels(precision, f.label).inc()
    return PredictResponse(
        request_id=request.state.request_id,  # set by the middleware
        model=ModelRef(
            name=card.name, precision=precision, version=card.version, sha256=card.models[precision].sha256
        ),
        image=ImageSize(width=res.width, height=res.height),
        faces=[
            Face(
                box=f.box,
                detector_score=f.detector_score,
                label=f.label,
                mask_probability=min(1.0, max(0.0, f.mask_probability)),
                too_small=f.too_small,
            )
            for f in res.faces
        ],
        timings_ms=Timings(
            **{stage: round(ms, 3) for stage, ms in timings.items() if stage in Timings.model_fields}
        ),
        warnings=res.warnings,
    )


def make_router(protected: bool) -> APIRouter:
    """The predict routes. `protected` (MASKLITE_PROTECT_PREDICT) puts them behind the API key; an open
    service attaches no check at all, so a predict request runs nothing for it."""
    router = APIRouter(tags=["predict"], dependencies=[Depends(require_api_key)] if protected else [])
    common: dict[str, Any] = {"methods": ["POST"], "response_model": PredictResponse, "responses": _ERRORS}
    router.add_api_route(
        "/v1/predict",
        predict,
        openapi_extra=_UPLOAD_BODY,
        summary="Faces and mask labels for an uploaded image",
        **common,
    )
    router.add_api_route(
        "/v1/predict/snapshot",
        predict_snapshot,
        summary="Faces and mask labels for a base64 camera frame",
        **common,
    )
    return router
