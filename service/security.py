"""Optional API key (MASKLITE_API_KEY). Job routers add `Depends(require_job_access)`; the predict routes get
`require_api_key` only with MASKLITE_PROTECT_PREDICT=true (routers/predict.make_router).

Sent as `X-API-Key: <key>` or `Authorization: Bearer <key>`. Missing key → 401, wrong key → 403, both in the
error envelope. No key configured: predict is open; the job routes (CPU for minutes, a benchmark takes the
whole host) are open only while the service listens on loopback, and answer 403 `jobs_disabled` otherwise.

The headers are read by hand rather than through FastAPI's security classes so that /openapi.json only
declares a security requirement when one is actually enforced (see `document_security`): a schema that
says "key required" on an open route is a lie that fuzzers rightly flag.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute

from service.errors import ApiError

SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "Bearer": {"type": "http", "scheme": "bearer"},
}


async def require_api_key(request: Request) -> None:
    """Dependency: the configured API key must be sent (no-op when MASKLITE_API_KEY is unset)."""
    check_api_key(request)


async def require_job_access(request: Request) -> None:
    """Dependency of the job routes: the API key when one is set; without one, only on loopback."""
    settings = request.app.state.settings
    if settings.api_key is None and not is_loopback(settings.host):
        raise ApiError(
            403,
            "jobs_disabled",
            f"job routes are off: this service listens on {settings.host}, beyond loopback, without an API "
            "key. Set MASKLITE_API_KEY on the server and send it as X-API-Key (or Authorization: Bearer), "
            "or bind MASKLITE_HOST=127.0.0.1",
        )
    check_api_key(request)


def is_loopback(host: str) -> bool:
    """True when `host` (what uvicorn binds) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def supplied_keys(request: Request) -> list[str]:
    """Every credential the request carries: X-API-Key (even empty) and the Authorization header (a bearer
    token, or the raw value when it is not one, which can never match)."""
    keys = []
    if "x-api-key" in request.headers:
        keys.append(request.headers["x-api-key"])
    auth = request.headers.get("authorization")
    if auth is not None:
        scheme, _, credentials = auth.partition(" ")
        keys.append(
            credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else "\0" + auth
        )
    return keys


def check_api_key(request: Request) -> None:
    """No credential: 401. Any credential that is not the key: 403, even beside a right one (a request
    with a wrong credential is refused rather than guessed at)."""
    expected = request.app.state.settings.api_key
    if expected is None:
        return
    supplied = supplied_keys(request)
    if not supplied or supplied == [""]:
        raise ApiError(
            401,
            "unauthorized",
            "API key required: send X-API-Key or Authorization: Bearer",
            {"WWW-Authenticate": "Bearer"},
        )
    want = expected.get_secret_value().encode()
    if not all(hmac.compare_digest(k.encode(), want) for k in supplied):
        raise ApiError(403, "forbidden", "invalid API key")


def _calls(dependant: Any) -> set[Any]:
    out = {dependant.call}
    for sub in dependant.dependencies:
        out |= _calls(sub)
    return out


def _api_routes(routes: Any) -> Iterator[APIRoute]:
    """Every APIRoute, also inside included routers (FastAPI >= 0.16x nests them instead of copying)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _api_routes(inner.routes)


def document_security(app: FastAPI, schema: dict[str, Any]) -> None:
    """Declare the API key in the OpenAPI schema on exactly the operations that enforce it now."""
    settings = app.state.settings
    if settings.api_key is None:
        return
    requirement = [{name: []} for name in SECURITY_SCHEMES]
    envelope = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    used = False
    for route in _api_routes(app.routes):
        if _calls(route.dependant) & {require_api_key, require_job_access}:
            ops = schema.get("paths", {}).get(route.path_format, {})
            for method in route.methods:
                if method.lower() in ops:
                    ops[method.lower()]["security"] = requirement
                    responses = ops[method.lower()].setdefault("responses", {})
                    for status in ("401", "403"):
                        responses.setdefault(
                            status, {"description": "API key missing or wrong", "content": envelope}
                        )
                    used = True
    if used:
        schema.setdefault("components", {}).setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
