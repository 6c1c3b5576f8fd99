"""POST /v1/predict (multipart upload or raw image body) and POST /v1/predict/snapshot (base64 JSON)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from masklite.image import ImageTooLarge, UndecodableImage, UnsupportedImageType
from service import metrics
from service.errors import ApiError, error_responses, request_id_of
from service.multipart import MultipartImageReader
from service.routers.deps import get_runtime
from service.runtime import InferenceResult, Runtime
from service.schemas import (
    MAX_DETECT_SIZE,
    MAX_MIN_FACE,
    MIN_DETECT_SIZE,
    MODEL_PATTERN,
    Face,
    ImageSize,
    ModelRef,
    PredictResponse,
    SnapshotRequest,
    Timings,
)
from service.security import predict_guard

router = APIRouter(tags=["predict"], dependencies=[Depends(predict_guard)])

_RAW_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "application/octet-stream")
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
            **{t: _binary for t in _RAW_TYPES},
        },
    }
}
_ERRORS = error_responses(400, 401, 403, 408, 413, 415, 422, 503)

ModelParam = Annotated[
    str, Query(pattern=MODEL_PATTERN, description="a precision from /v1/models: int8 (default), float32, ...")
]
DetectParam = Annotated[bool, Query(description="false: the whole image is one face crop")]
MinFaceParam = Annotated[int, Query(ge=0, le=MAX_MIN_FACE, description="ignore faces smaller than this (px)")]
DetectSizeParam = Annotated[
    int | None,
    Query(
        ge=MIN_DETECT_SIZE,
        le=MAX_DETECT_SIZE,
        description="detector input's longer side (px); smaller is faster, finds fewer small faces",
    ),
]


@router.post(
    "/v1/predict",
    response_model=PredictResponse,
    responses=_ERRORS,
    openapi_extra=_UPLOAD_BODY,
    summary="Faces and mask labels for an uploaded image",
)
async def predict(
    request: Request,
    model: ModelParam = "int8",
    detect_faces: DetectParam = True,
    min_face_size: MinFaceParam = 0,
    detect_size: DetectSizeParam = None,
) -> PredictResponse:
    """Send `multipart/form-data` with a `file` field, or the raw image bytes with an image content type."""
    t0 = time.perf_counter()
    rt = get_runtime(request)
    precision = rt.check_model(model)
    rt.check_detector(detect_faces)
    ctype = request.headers.get("content-type", "")
    media = ctype.split(";", 1)[0].strip().lower()
    if media != "multipart/form-data" and media not in _RAW_TYPES:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"content type {media or 'none'!r}: send multipart/form-data with a 'file' field, "
            "or raw image bytes as image/jpeg, image/png, image/webp or image/bmp",
        )
    rt.admit()  # before reading the body: a full server refuses without buffering anything
    try:
        data = await _read_body(request, media, ctype, rt.settings.body_timeout_s)
        result = await _infer(rt, data, precision, detect_faces, min_face_size, detect_size)
    finally:
        rt.release()
    return _response(request, rt, precision, result, t0)


async def _read_body(request: Request, media: str, ctype: str, timeout_s: float) -> bytes:
    """The upload, in memory; 408 when it has not fully arrived within `timeout_s` (frees the slot)."""
    try:
        async with asyncio.timeout(timeout_s):
            if media == "multipart/form-data":
                return await MultipartImageReader(ctype).read(request.stream())
            return await request.body()
    except TimeoutError as exc:
        raise ApiError(
            408,
            "request_timeout",
            f"request body not received within {timeout_s:g} s (MASKLITE_BODY_TIMEOUT_S)",
            {"Connection": "close"},
        ) from exc


@router.post(
    "/v1/predict/snapshot",
    response_model=PredictResponse,
    responses=_ERRORS,
    summary="Faces and mask labels for a base64 camera frame",
)
async def predict_snapshot(request: Request, body: SnapshotRequest) -> PredictResponse:
    """JSON `{"image": "<base64 or data:image/...;base64,...>", "model", "detect_faces", "min_face_size"}`."""
    t0 = time.perf_counter()
    rt = get_runtime(request)
    precision = rt.check_model(body.model)
    rt.check_detector(body.detect_faces)
    data = decode_base64_image(body.image)
    rt.admit()
    try:
        result = await _infer(rt, data, precision, body.detect_faces, body.min_face_size, body.detect_size)
    finally:
        rt.release()
    return _response(request, rt, precision, result, t0)


_DATA_URL = re.compile(r"^data:([^,;]*)((?:;[^,;]*)*),", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


def decode_base64_image(text: str) -> bytes:
    """Plain or URL-safe base64, padding optional, or a data: URL with an image/* type → bytes."""
    if text[:5].lower() == "data:":
        m = _DATA_URL.match(text[:256])
        if m is None:
            raise ApiError(422, "invalid_data_url", "data URL without a ',' separator")
        media, params = m.group(1).strip().lower(), m.group(2).lower()
        if media and not media.startswith("image/"):
            raise ApiError(415, "unsupported_media_type", f"data URL type {media!r} is not an image")
        if ";base64" not in params:
            raise ApiError(422, "invalid_data_url", "data URL must be base64-encoded (';base64,')")
        text = text[m.end() :]
    if _WHITESPACE.search(text):
        text = _WHITESPACE.sub("", text)
    if "-" in text or "_" in text:
        text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(422, "invalid_base64", f"image is not valid base64: {exc}") from exc


async def _infer(
    rt: Runtime, data: bytes, precision: str, detect_faces: bool, min_face: int, detect_size: int | None
) -> InferenceResult:
    try:
        return await rt.run(
            rt.infer, data, precision, detect_faces, min_face, time.perf_counter(), detect_size
        )
    except ImageTooLarge as exc:
        metrics.REJECTIONS.labels("image_too_large").inc()
        raise ApiError(413, "image_too_large", str(exc)) from exc
    except UnsupportedImageType as exc:
        raise ApiError(415, "unsupported_image_type", str(exc)) from exc
    except UndecodableImage as exc:
        raise ApiError(422, "undecodable_image", str(exc)) from exc


def _response(
    request: Request, rt: Runtime, precision: str, res: InferenceResult, t0: float
) -> PredictResponse:
    card = rt.card
    assert card is not None
    pred = res.prediction
    total = (time.perf_counter() - t0) * 1e3
    detect, classify = pred.timings_ms.get("detect", 0.0), pred.timings_ms.get("classify", 0.0)
    stages = {
        "queue": res.queue_ms,
        "decode": res.decode_ms,
        "detect": detect,
        "classify": classify,
        "total": total,
    }
    for stage, ms in stages.items():
        metrics.STAGE_LATENCY.labels(stage, precision).observe(ms / 1e3)
    for f in pred.faces:
        metrics.FACES.labels(precision, f.label).inc()
    return PredictResponse(
        request_id=request_id_of(request),
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
            for f in pred.faces
        ],
        timings_ms=Timings(
            decode=round(res.decode_ms, 3),
            detect=round(detect, 3),
            classify=round(classify, 3),
            total=round(total, 3),
            queue=round(res.queue_ms, 3),
        ),
        warnings=pred.warnings,
    )
