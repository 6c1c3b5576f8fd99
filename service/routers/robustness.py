"""POST /v1/robustness: start a per-layer weight-robustness job (masklite/robustness.py) → 202 + job id.

Body, either
    application/json      the parameters (all optional): {"precision": "int8", "layers": "all",
                          "kinds": ["multiply", "add"], "scalars": [...], "noise_sigmas": [...],
                          "bitflip_rates": [...], "seed": 0, "max_images": null}
    multipart/form-data   part `params` (that JSON, optional) and part `evalset` (optional): a zip with one
                          folder per label. It is validated here, in memory (422 when it is not a usable
                          set), and handed to the job process without ever touching the disk.
Without an upload the job uses the evaluation set shipped beside the models (models/evalset.zip).
"""

from __future__ import annotations

import asyncio
import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from masklite.card import ModelCard, load_card
from masklite.evalset import EvalSetError, EvalSetLimits, default_evalset_path, load_evalset
from robustness.errors import RobustnessError
from robustness.run import run_job
from robustness.spec import MAX_CELLS, GridSpec
from robustness.surgery import TFLiteModel
from service.errors import ApiError, error_responses
from service.jobs import register_job_kind
from service.routers.jobs import JobAccepted, parse_json_params, submit_job
from service.security import require_api_key

register_job_kind("robustness", run_job)

router = APIRouter(tags=["jobs"], dependencies=[Depends(require_api_key)])

_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {
            "application/json": {"schema": GridSpec.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "params": {"type": "string", "description": "GridSpec as JSON"},
                        "evalset": {
                            "type": "string",
                            "format": "binary",
                            "description": "zip, a folder per label",
                        },
                    },
                }
            },
        },
    }
}


@router.post(
    "/v1/robustness",
    status_code=202,
    response_model=JobAccepted,
    responses=error_responses(400, 401, 403, 413, 415, 422, 429, 503),
    openapi_extra=_BODY_DOC,
    summary="Start a robustness job: perturb each layer's weights, re-measure accuracy",
)
async def start_robustness(request: Request) -> JSONResponse:
    settings = request.app.state.settings
    limits = EvalSetLimits(
        max_zip_bytes=settings.evalset_max_bytes,
        max_uncompressed_bytes=settings.evalset_max_uncompressed_bytes,
        max_files=settings.evalset_max_files,
        max_image_pixels=min(settings.max_pixels, EvalSetLimits.max_image_pixels),
    )
    raw_params, upload = await _read_body(request, limits.max_zip_bytes)
    try:
        spec = GridSpec.model_validate(raw_params)
    except ValidationError as exc:
        raise ApiError(422, "invalid_parameters", _validation_message(exc)) from exc

    card = await asyncio.to_thread(_card, request)
    if spec.precision not in card.models:
        raise ApiError(
            422, "invalid_parameters", f"precision: {spec.precision!r} is not one of {', '.join(card.models)}"
        )
    models_dir = Path(settings.models_dir)
    model = await asyncio.to_thread(_model, str(models_dir / card.models[spec.precision].file))
    try:
        layers = model.resolve_layers(spec.layers)
    except RobustnessError as exc:
        raise ApiError(422, "invalid_parameters", f"layers: {exc}") from exc
    cells = len(layers) * len(spec.perturbations())
    if cells > MAX_CELLS:
        raise ApiError(422, "invalid_parameters", f"{cells:,} cells requested; the limit is {MAX_CELLS:,}")

    if upload is not None:
        try:
            evalset = await asyncio.to_thread(load_evalset, upload, card, limits, "upload")
        except EvalSetError as exc:
            raise ApiError(422, "invalid_evalset", f"evalset: {exc}") from exc
        evalset_info: dict[str, Any] = {
            "source": "upload",
            "bytes": len(upload),
            "sha256": hashlib.sha256(upload).hexdigest(),
            "images": len(evalset),
            "per_label": evalset.counts(),
        }
    else:
        path = default_evalset_path(models_dir)
        if not path.is_file():
            raise ApiError(
                422,
                "no_evalset",
                "this service has no default evaluation set (models/evalset.zip); upload one as the "
                "multipart part 'evalset' (a zip with one folder per label)",
            )
        evalset_info = {"source": path.name}

    params = {
        "spec": spec.model_dump(),
        "models_dir": str(models_dir),
        "evalset_zip": upload,
        "limits": limits.__dict__,
        "workers": settings.job_workers,
        "threads": 1,
    }
    public = {**spec.model_dump(), "layers_resolved": len(layers), "cells": cells, "evalset": evalset_info}
    return submit_job(request, "robustness", params, public)


def _card(request: Request) -> ModelCard:
    runtime = getattr(request.app.state, "runtime", None)
    card = getattr(runtime, "card", None)
    if card is not None:
        return card
    try:
        return load_card(Path(request.app.state.settings.models_dir))
    except (OSError, ValueError) as exc:
        raise ApiError(
            503, "models_unavailable", f"no usable model card: {exc}", {"Retry-After": "5"}
        ) from exc


@lru_cache(maxsize=4)
def _model(path: str) -> TFLiteModel:
    """Parsed once per file; only the layer list is used here (the job process re-reads and verifies)."""
    try:
        return TFLiteModel.from_file(path)
    except (OSError, RobustnessError) as exc:
        raise ApiError(
            503, "models_unavailable", f"model file unusable: {exc}", {"Retry-After": "5"}
        ) from exc


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        parts.append(f"{loc or 'parameters'}: {msg}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


async def _read_body(request: Request, max_zip_bytes: int) -> tuple[Any, bytes | None]:
    """(parameters as parsed JSON, uploaded zip or None) from a JSON or multipart body."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        parts = await _MultipartCollector(content_type, {"params", "evalset"}, max_zip_bytes).read(request)
        upload = parts.get("evalset")
        if upload is not None and not upload:
            raise ApiError(422, "invalid_evalset", "evalset: the uploaded file is empty (0 bytes)")
        return parse_json_params(parts.get("params", b"")), upload
    body = await request.body()
    if media not in ("", "application/json") and body:
        raise ApiError(415, "unsupported_media_type", "send application/json or multipart/form-data")
    return parse_json_params(body), None


class _MultipartCollector:
    """Collects the named parts of a multipart body in memory (Starlette's parser would spool big uploads
    to a temporary file; uploads must never touch the disk). Unknown parts are rejected."""

    def __init__(self, content_type: str, fields: set[str], max_part_bytes: int):
        _, options = parse_options_header(content_type)
        boundary = options.get(b"boundary")
        if not boundary:
            raise ApiError(400, "invalid_multipart", "multipart/form-data without a boundary")
        self.fields = fields
        self.max_part_bytes = max_part_bytes
        self.parts: dict[str, bytearray] = {}
        self._current: str | None = None
        self._name = bytearray()
        self._value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._error: ApiError | None = None
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._begin,
                "on_header_field": lambda d, s, e: self._name.extend(d[s:e]),
                "on_header_value": lambda d, s, e: self._value.extend(d[s:e]),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_done,
                "on_part_data": self._data,
            },
        )

    async def read(self, request: Request) -> dict[str, bytes]:
        try:
            async for chunk in request.stream():
                if chunk:
                    self._parser.write(chunk)
                if self._error is not None:
                    raise self._error
            self._parser.finalize()
        except FormParserError as exc:
            raise ApiError(400, "invalid_multipart", f"malformed multipart body: {exc}") from exc
        return {k: bytes(v) for k, v in self.parts.items()}

    def _begin(self) -> None:
        self._headers, self._current = {}, None

    def _header_end(self) -> None:
        self._headers[bytes(self._name).lower()] = bytes(self._value)
        self._name.clear()
        self._value.clear()

    def _headers_done(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name not in self.fields:
            self._error = ApiError(
                422,
                "invalid_parameters",
                f"unexpected multipart part {name[:40]!r}; send 'params' and 'evalset'",
            )
            return
        if name in self.parts:
            self._error = ApiError(422, "invalid_parameters", f"multipart part {name!r} sent twice")
            return
        self._current = name
        self.parts[name] = bytearray()

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._current is None:
            return
        part = self.parts[self._current]
        part.extend(data[start:end])
        if len(part) > self.max_part_bytes and self._error is None:
            what = "the evaluation-set zip" if self._current == "evalset" else f"part {self._current!r}"
            self._error = ApiError(
                413, "payload_too_large", f"{what} is larger than {self.max_part_bytes:,} bytes"
            )
            self._current = None
