"""Dependencies shared by routers."""

from __future__ import annotations

from fastapi import Request

from service.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    """The app's inference runtime (model card, thread pool, admission control)."""
    return request.app.state.runtime
