"""create_app(): the FastAPI application. Routers plug in with one `include_router` line each."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from masklite import __version__
from service.errors import ErrorResponse, install_error_handlers
from service.jobkinds import register_job_kinds
from service.jobqueue.queue import JobQueue
from service.middleware import INSTANCE_ID, RequestContextMiddleware
from service.routers import benchmark, health, jobs, models, predict, robustness, video, web
from service.routers import metrics as metrics_router
from service.runtime import Runtime
from service.security import document_security, is_loopback
from service.settings import Settings

log = logging.getLogger("masklite.service")

DESCRIPTION = """Face-mask detection on a small CPU: YuNet finds faces, a MobileNetV2 (LiteRT, int8 or
float32) labels each one `with_mask` / `without_mask`.

Every error is `{"error": {"code", "message", "request_id"}}`; every response carries `X-Request-ID`.
Overload and not-ready answer 503 with `Retry-After`."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = Runtime(settings)
    register_job_kinds()  # the one place job kinds are registered (not a router's import side effect)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # load in the background: /health/live answers at once, /health/ready turns 200 when warmed up
        app.state.load_task = asyncio.create_task(asyncio.to_thread(runtime.load))
        # the header is opaque to clients; the log maps it to this host for the operator
        log.info("X-Masklite-Instance %s is pid %d on %s", INSTANCE_ID, os.getpid(), socket.gethostname())
        if settings.api_key is None and not is_loopback(settings.host):
            log.warning("listening on %s without MASKLITE_API_KEY: job routes answer 403", settings.host)
        # the job queue beside the runtime: it opens its store (retried on use) and, where this process
        # runs jobs, starts the job runner
        jobs = JobQueue.from_settings(settings)
        await asyncio.to_thread(jobs.start)
        app.state.jobs = jobs
        try:
            yield
        finally:
            await asyncio.to_thread(jobs.close)
            runtime.close()

    # /docs is served by the web router with self-hosted assets (the default page loads a CDN);
    # ReDoc would need a CDN too, so it is off
    app = FastAPI(
        title="masklite",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.runtime = runtime
    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    # added last = outermost: every response, CORS preflights included, gets a request id and is counted
    app.add_middleware(
        RequestContextMiddleware, max_body_bytes=settings.max_body_bytes, access_log=settings.access_log
    )

    app.include_router(health.router)
    app.include_router(models.router)
    app.include_router(predict.make_router(protected=settings.protect_predict))
    app.include_router(metrics_router.router)
    app.include_router(web.router)
    app.include_router(jobs.router)
    app.include_router(robustness.router)
    app.include_router(benchmark.router)
    app.include_router(video.router)

    app.openapi = _openapi_with_envelope(app)  # type: ignore[method-assign]
    return app


def _openapi_with_envelope(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI documents 422 as its own HTTPValidationError; ours is the error envelope. Rewrite it."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        ref = "#/components/schemas/ErrorResponse"
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        if "ErrorResponse" not in components:
            components["ErrorResponse"] = ErrorResponse.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            for name, sub in components["ErrorResponse"].pop("$defs", {}).items():
                components.setdefault(name, sub)
        for path_item in schema.get("paths", {}).values():
            for op in path_item.values():
                resp = op.get("responses", {}).get("422")
                if resp and "HTTPValidationError" in str(resp):
                    resp["content"] = {"application/json": {"schema": {"$ref": ref}}}
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        document_security(app, schema)
        app.openapi_schema = schema
        return schema

    return openapi
