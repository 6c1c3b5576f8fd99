"""GET / (the camera page) and GET /static/<file> (its script and style sheet).

Plain files from service/static/, no build step. Only files that exist directly in that folder are
served (no sub-paths, so no traversal). The Content-Security-Policy limits the page to this origin:
camera frames can only be sent back to this service (connect-src 'self').
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from service.errors import ApiError

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "media-src 'self' blob: mediastream:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=()",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    # small files that change with each release: revalidate (ETag) instead of caching stale code
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


def _file_response(name: str) -> FileResponse:
    path = STATIC_DIR / name
    media_type = _TYPES.get(path.suffix.lower())
    if "/" in name or "\\" in name or name.startswith(".") or media_type is None or not path.is_file():
        raise ApiError(404, "not_found", f"no static file {name!r}")
    return FileResponse(path, media_type=media_type, headers=PAGE_HEADERS)


@router.get("/")
async def index() -> FileResponse:
    return _file_response("index.html")


@router.get("/static/{name}")
async def static_file(name: str) -> FileResponse:
    return _file_response(name)
