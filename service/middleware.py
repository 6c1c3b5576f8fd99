"""One pure-ASGI middleware for every request: request id, body limit, access log, HTTP metrics.

Pure ASGI (not BaseHTTPMiddleware) to keep the per-request overhead to a few microseconds.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
import uuid
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import telemetry
from service.errors import ApiError
from service.log import request_id_var

log = logging.getLogger("masklite.access")

REQUEST_ID_HEADER = b"x-request-id"
# which replica answered: an opaque id per process (random at start, logged once with the host name), so
# unauthenticated answers never carry a host name
INSTANCE_ID = secrets.token_hex(6)
INSTANCE_HEADER = (b"x-masklite-instance", INSTANCE_ID.encode())
_VALID_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")
# polled by probes and scrapers: logged at debug level only
_QUIET_ROUTES = frozenset({"/health/live", "/health/ready", "/metrics"})


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int, access_log: bool = True):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        rid = ""
        content_length = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER and _VALID_ID.match(value):
                rid = value.decode()
            elif name == b"content-length":
                content_length = value
        rid = rid or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id_var.set(rid)
        status = 500
        started = False
        rid_header = (b"x-request-id", rid.encode())

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                headers = [h for h in message.get("headers", []) if h[0].lower() != REQUEST_ID_HEADER]
                headers += [rid_header, INSTANCE_HEADER]
                message["headers"] = headers
            await send(message)

        limit = self.max_body_bytes
        received = 0

        async def receive_with_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large(limit)
            return message

        try:
            too_big = False
            if content_length is not None:
                try:
                    too_big = int(content_length) > limit
                except ValueError:
                    too_big = False
            repeated = _repeated_query_param(scope.get("query_string", b""))
            if too_big:
                # refuse before reading a byte of the body
                err = _too_large(limit)
                await send_error(send_wrapper, err.status_code, err.code, err.message, rid, close=True)
            elif repeated:
                # every parameter is a single value; FastAPI would silently keep the last of several
                msg = f"query parameter {repeated!r} given more than once"
                await send_error(send_wrapper, 422, "validation_error", msg, rid)
            else:
                await self.app(scope, receive_with_limit, send_wrapper)
        except ClientDisconnect:
            status = 499  # nginx's "client closed request": nothing to answer, nothing to log loudly
        except Exception:
            # handled here rather than in Starlette's ServerErrorMiddleware, which would log it twice
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if started:
                raise
            await send_error(
                send_wrapper, 500, "internal_error", "internal server error; quote the request id", rid
            )
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            elapsed = time.perf_counter() - t0
            telemetry.HTTP_REQUESTS.labels(path, scope["method"], str(status)).inc()
            telemetry.HTTP_LATENCY.labels(path).observe(elapsed)
            if self.access_log:
                level = logging.DEBUG if path in _QUIET_ROUTES and status < 400 else logging.INFO
                if log.isEnabledFor(level):
                    log.log(level, "%s %s %d %.1fms", scope["method"], scope["path"], status, elapsed * 1e3)
            request_id_var.reset(token)


def _repeated_query_param(query: bytes) -> str | None:
    """The first query parameter that appears more than once, if any."""
    if not query:
        return None
    seen: set[str] = set()
    for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name in seen:
            return name[:64]
        seen.add(name)
    return None


def _too_large(limit: int) -> ApiError:
    telemetry.REJECTIONS.labels("body_too_large").inc()
    return ApiError(413, "payload_too_large", f"request body is larger than the limit of {limit:,} bytes")


async def send_error(send: Send, status: int, code: str, message: str, rid: str, close: bool = False) -> None:
    """The error envelope, sent at the ASGI level (outside FastAPI's exception handlers)."""
    body = json.dumps({"error": {"code": code, "message": message, "request_id": rid}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
