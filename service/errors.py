"""One JSON error envelope for every error: {"error": {"code", "message", "request_id"}}.

Raise `ApiError(status, code, message, headers=None)` anywhere; FastAPI's own 404/405/422 and
unexpected exceptions (500) are rewritten into the same envelope.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("masklite.service")


class ApiError(StarletteHTTPException):
    """An error for the client. Subclasses Starlette's HTTPException so FastAPI re-raises it untouched
    even when it comes out of body parsing (e.g. the body limit)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(status_code=status, detail=message, headers=headers)
        self.code = code
        self.message = message


class ErrorBody(BaseModel):
    code: str
    message: str
    request_id: str


class ErrorResponse(BaseModel):
    error: ErrorBody


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", "") or ""


def error_response(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    rid = request_id_of(request)
    out_headers = dict(headers or {})
    if rid:
        out_headers["X-Request-ID"] = rid
    # a message may quote client text: a lone surrogate there would make the JSON unsendable (a 500)
    sendable = message.encode("utf-8", "backslashreplace").decode("utf-8")
    body = {"error": {"code": code, "message": sendable, "request_id": rid}}
    return JSONResponse(body, status_code=status, headers=out_headers)


_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


def code_for(status: int) -> str:
    return _CODES.get(status) or HTTPStatus(status).phrase.lower().replace(" ", "_")


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(request, exc.status_code, exc.code, exc.message, exc.headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    if status == 404 and exc.detail == "Not Found":
        message = f"no route {request.method} {request.url.path}"
    elif status == 405:
        message = f"method {request.method} not allowed on {request.url.path}"
        allowed = allowed_methods(request.app.routes, request.url.path)
        if allowed:
            # Starlette lists only the first matching route's methods; one path may have several routes
            return error_response(request, 405, code_for(405), message, {"Allow": ", ".join(allowed)})
    else:
        message = str(exc.detail)
    return error_response(request, status, code_for(status), message, exc.headers)


def allowed_methods(routes: Iterable[Any], path: str) -> list[str]:
    """Every method any route serves on `path` (also inside included routers), for the 405 `Allow`."""
    methods: set[str] = set()
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            methods.update(allowed_methods(inner.routes, path))
            continue
        regex, route_methods = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and route_methods and regex.match(path):
            methods.update(route_methods)
    return sorted(methods)


def validation_message(errors: Sequence[Mapping[str, Any]], root: str, skip: Iterable[str] = ()) -> str:
    """The first five problems as "field.path: message"; `skip`: location parts that name no field (FastAPI's
    "body", "query"), `root`: the name of a problem with the whole input. Shared by FastAPI's own 422s and
    the job routes' parameter checks (service/bodies.py)."""
    skipped = set(skip)
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in skipped)
        parts.append(f"{loc or root}: {str(err.get('msg', 'invalid')).removeprefix('Value error, ')}")
    more = len(errors) - 5
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message = validation_message(exc.errors(), "request", skip=("body", "query"))
    return error_response(request, 422, "validation_error", message)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(request, 500, "internal_error", "internal server error; quote the request id")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)


def error_responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI `responses=` entries documenting the envelope for these statuses."""
    return {s: {"model": ErrorResponse, "description": HTTPStatus(s).phrase} for s in statuses}
