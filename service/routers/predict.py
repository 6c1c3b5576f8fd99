"""POST /v1/predict (multipart upload or raw image body) and POST /v1/predict/snapshot (base64 JSON)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from masklite.draw import DrawnFace, render_jpeg
from masklite.image import ImageTooLarge, UndecodableImage, UnsupportedImageType
from service import telemetry
from service.bodies import IMAGE_TYPES, decode_base64_image, image_media, read_image
from service.errors import ApiError, error_responses
from service.runtime import InferenceResult, Runtime, get_runtime
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


async def predict(
    request: Request,
    model: ModelParam = "int8",
    detect_faces: DetectParam = True,
    min_face_size: MinFaceParam = 0,
    detect_size: DetectSizeParam = None,
    render: RenderParam = None,
    blur: BlurParam = False,
) -> PredictResponse | Response:
    """Send `multipart/form-data` with a `file` field, or the raw image bytes with an image content type."""
    t0 = time.perf_counter()
    rt = get_runtime(request)
    precision = rt.check_model(model)
    rt.check_detector(detect_faces)
    media = image_media(request.headers.get("content-type", ""))
    rt.admit()  # before reading the body: a full server refuses without buffering anything
    try:
        data = await read_image(request, media, rt.settings.body_timeout_s)
        result = await _infer(rt, data, precision, detect_faces, min_face_size, detect_size)
        if wants_jpeg(render, request.headers.get("accept", "")):
            return await rendered_jpeg(rt, data, result, blur)
    finally:
        rt.release()
    return _response(request, rt, precision, result, t0)


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


async def _infer(
    rt: Runtime, data: bytes, precision: str, detect_faces: bool, min_face: int, detect_size: int | None
) -> InferenceResult:
    try:
        return await rt.run(
            rt.infer, data, precision, detect_faces, min_face, time.perf_counter(), detect_size
        )
    except ImageTooLarge as exc:
        telemetry.REJECTIONS.labels("image_too_large").inc()
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
        telemetry.STAGE_LATENCY.labels(stage, precision).observe(ms / 1e3)
    for f in pred.faces:
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
                landmarks=list(f.landmarks),
            )
            for f in pred.faces
        ],
        summary=dict(Counter(f.label for f in pred.faces)),
        timings_ms=Timings(
            decode=round(res.decode_ms, 3),
            detect=round(detect, 3),
            classify=round(classify, 3),
            total=round(total, 3),
            queue=round(res.queue_ms, 3),
        ),
        warnings=pred.warnings,
    )


RenderParam = Annotated[
    Literal["json", "jpeg"] | None,
    Query(description="jpeg: answer the image with boxes and labels drawn (so does Accept: image/jpeg)"),
]
BlurParam = Annotated[bool, Query(description="with render=jpeg: pixelate every face in the image")]
_JPEG_ANSWER = {200: {"content": {"application/json": {}, "image/jpeg": {}}}}


def wants_jpeg(render: str | None, accept: str) -> bool:
    """render=jpeg, or no render and an Accept that names image/jpeg before (or without) JSON."""
    if render is not None:
        return render == "jpeg"
    types = [part.split(";", 1)[0].strip().lower() for part in accept.split(",")]
    if "image/jpeg" not in types:
        return False
    return "application/json" not in types or types.index("image/jpeg") < types.index("application/json")


async def rendered_jpeg(rt: Runtime, data: bytes, res: InferenceResult, blur: bool) -> Response:
    """The uploaded image, decoded again at full size, with the faces drawn (masklite.draw: the same
    drawing as the video path); the numbers stay in headers."""
    faces = [DrawnFace(f.box, f.label) for f in res.prediction.faces]
    jpeg = await rt.run(render_jpeg, data, faces, blur, rt.settings.max_pixels)
    counts = Counter(f.label for f in faces)
    headers = {"X-Masklite-Faces": ",".join(f"{label}={n}" for label, n in sorted(counts.items()))}
    return Response(jpeg, media_type="image/jpeg", headers=headers)


def make_router(protected: bool) -> APIRouter:
    """The predict routes. `protected` (MASKLITE_PROTECT_PREDICT) puts them behind the API key; an open
    service attaches no check at all, so a predict request runs nothing for it."""
    router = APIRouter(tags=["predict"], dependencies=[Depends(require_api_key)] if protected else [])
    common: dict[str, Any] = {"methods": ["POST"], "response_model": PredictResponse, "responses": _ERRORS}
    router.add_api_route(
        "/v1/predict",
        predict,
        openapi_extra=_UPLOAD_BODY,
        summary="Faces and mask labels for an uploaded image (or the image with them drawn: render=jpeg)",
        **{**common, "responses": {**_ERRORS, **_JPEG_ANSWER}},
    )
    router.add_api_route(
        "/v1/predict/snapshot",
        predict_snapshot,
        summary="Faces and mask labels for a base64 camera frame",
        **common,
    )
    return router
