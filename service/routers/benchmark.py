"""POST /v1/benchmark: measure the shipped models on this machine as a background job → 202 + job id.

Body, either
    application/json      the parameters, all optional (service.bench.job.BenchmarkRequest):
                          {"models": ["int8", "float32"], "threads": [1, 2], "batch_sizes": [1, 4],
                           "runs": 50, "pipeline_runs": 20, "scene_limit": null, "http_runs": 20}
    multipart/form-data   part `params` (that JSON, optional) and up to 16 parts `images` (JPEG/PNG/WebP/BMP):
                          the pipeline is timed on these instead of the scenes. They stay in memory and go
                          to the job process without touching the disk.
The job (kind "benchmark", GET /v1/jobs/{id}) runs in its own process, one job at a time, so benchmarks
never measure each other or a robustness job. Artifacts: result.json, chart.png, table.txt.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from masklite.card import load_card
from masklite.image import ImageError, decode_image
from service.bench.job import MAX_UPLOADED_IMAGES, BenchmarkRequest, benchmark_job, loopback_url
from service.errors import ApiError, error_responses
from service.jobs import register_job_kind
from service.routers.jobs import JobAccepted, parse_json_params, submit_job
from service.security import require_api_key

register_job_kind("benchmark", benchmark_job, exclusive=True)  # alone on its host

router = APIRouter(tags=["jobs"], dependencies=[Depends(require_api_key)])

MAX_PARAMS_BYTES = 64_000

_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {
            "application/json": {"schema": BenchmarkRequest.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "params": {"type": "string", "description": "BenchmarkRequest as JSON"},
                        "images": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": f"up to {MAX_UPLOADED_IMAGES} images to time the pipeline on",
                        },
                    },
                }
            },
        },
    }
}


@router.post(
    "/v1/benchmark",
    status_code=202,
    response_model=JobAccepted,
    responses=error_responses(400, 401, 403, 413, 415, 422, 429, 503),
    openapi_extra=_BODY_DOC,
    summary="Start a benchmark job: classifier and pipeline latency, HTTP overhead, scenes recall",
)
async def start_benchmark(request: Request) -> JSONResponse:
    settings = request.app.state.settings
    raw, images = await _read_body(request, settings.max_body_bytes)
    try:
        spec = BenchmarkRequest.model_validate(raw)
    except ValidationError as exc:
        raise ApiError(422, "invalid_parameters", _validation_message(exc)) from exc
    models_dir = Path(settings.models_dir)
    card = await asyncio.to_thread(_card_models, models_dir)
    if spec.models:
        unknown = [m for m in spec.models if m not in card]
        if unknown:
            raise ApiError(
                422, "invalid_parameters", f"models: {', '.join(unknown)} not in {', '.join(sorted(card))}"
            )
    for name, data in images:
        try:
            # header + pixel check only costs a decode; a bad image fails here, not minutes later
            await asyncio.to_thread(decode_image, data, settings.max_pixels)
        except ImageError as exc:
            raise ApiError(422, "invalid_image", f"images: {name[:60]!r}: {exc}") from exc

    runtime = getattr(request.app.state, "runtime", None)
    detector = getattr(getattr(runtime, "detector", None), "path", None) or settings.detector_path
    headers = {}
    if settings.protect_predict and settings.api_key is not None:
        headers["X-API-Key"] = settings.api_key.get_secret_value()
    params = {
        "request": spec.model_dump(),
        "images": images,
        "models_dir": str(models_dir),
        "detector_path": str(detector) if detector else None,
        # with a broker the job runs on a worker, where no API listens on loopback: no HTTP section
        "self_url": None if settings.broker_url else loopback_url(settings.host, settings.port),
        "headers": headers,
    }
    public = {
        **spec.model_dump(),
        "images": [
            {"name": n[:100], "bytes": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in images
        ],
    }
    return submit_job(request, "benchmark", params, public)


def _card_models(models_dir: Path) -> list[str]:
    try:
        return list(load_card(models_dir).models)
    except (OSError, ValueError) as exc:
        raise ApiError(
            503, "models_unavailable", f"no usable model card: {exc}", {"Retry-After": "5"}
        ) from exc


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc or 'parameters'}: {err.get('msg', 'invalid').removeprefix('Value error, ')}")
    return "; ".join(parts)


async def _read_body(request: Request, max_bytes: int) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        collector = _Parts(content_type, max_bytes)
        await collector.read(request)
        return parse_json_params(collector.params), collector.images
    body = await request.body()
    if media not in ("", "application/json") and body:
        raise ApiError(415, "unsupported_media_type", "send application/json or multipart/form-data")
    return parse_json_params(body), []


class _Parts:
    """`params` once and `images` up to MAX_UPLOADED_IMAGES times, collected in memory; other parts → 422."""

    def __init__(self, content_type: str, max_bytes: int):
        _, options = parse_options_header(content_type)
        boundary = options.get(b"boundary")
        if not boundary:
            raise ApiError(400, "invalid_multipart", "multipart/form-data without a boundary")
        self.max_bytes = max_bytes
        self.params = b""
        self.images: list[tuple[str, bytes]] = []
        self._buf: bytearray | None = None
        self._field: str | None = None
        self._filename = ""
        self._total = 0
        self._hname, self._hvalue = bytearray(), bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._error: ApiError | None = None
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._begin,
                "on_header_field": lambda d, s, e: self._hname.extend(d[s:e]),
                "on_header_value": lambda d, s, e: self._hvalue.extend(d[s:e]),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_done,
                "on_part_data": self._data,
                "on_part_end": self._end,
            },
        )

    async def read(self, request: Request) -> None:
        try:
            async for chunk in request.stream():
                if chunk:
                    self._parser.write(chunk)
                if self._error is not None:
                    raise self._error
            self._parser.finalize()
        except FormParserError as exc:
            raise ApiError(400, "invalid_multipart", f"malformed multipart body: {exc}") from exc
        if self._error is not None:
            raise self._error

    def _fail(self, status: int, code: str, message: str) -> None:
        if self._error is None:
            self._error = ApiError(status, code, message)
        self._field, self._buf = None, None

    def _begin(self) -> None:
        self._headers, self._field, self._buf = {}, None, None

    def _header_end(self) -> None:
        self._headers[bytes(self._hname).lower()] = bytes(self._hvalue)
        self._hname.clear()
        self._hvalue.clear()

    def _headers_done(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name == "params" and not self.params:
            self._field, self._buf = name, bytearray()
        elif name == "images":
            if len(self.images) >= MAX_UPLOADED_IMAGES:
                self._fail(422, "invalid_parameters", f"at most {MAX_UPLOADED_IMAGES} images")
                return
            self._field, self._buf = name, bytearray()
            self._filename = (
                options.get(b"filename", b"").decode("utf-8", "replace") or f"image{len(self.images)}"
            )
        else:
            self._fail(
                422, "invalid_parameters", f"unexpected multipart part {name[:40]!r}; send 'params', 'images'"
            )

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._buf is None:
            return
        self._buf.extend(data[start:end])
        self._total += end - start
        if self._total > self.max_bytes:
            self._fail(413, "payload_too_large", f"uploads larger than {self.max_bytes:,} bytes in total")
        elif self._field == "params" and len(self._buf) > MAX_PARAMS_BYTES:
            self._fail(413, "payload_too_large", f"params larger than {MAX_PARAMS_BYTES:,} bytes")

    def _end(self) -> None:
        if self._buf is None:
            return
        if self._field == "params":
            self.params = bytes(self._buf)
        elif self._field == "images":
            if not self._buf:
                self._fail(422, "invalid_image", f"images: {self._filename[:60]!r} is empty (0 bytes)")
                return
            self.images.append((self._filename, bytes(self._buf)))
        self._field, self._buf = None, None
