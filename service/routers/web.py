"""GET / (the camera page), GET /static/<file> (its script and style sheet), GET /sw.js and
/manifest.webmanifest (installable, offline), and GET /docs (Swagger UI).

Plain files from service/static/, no build step. Only files that exist directly in that folder (or in
static/swagger-ui/ or static/vendor/) are served (no sub-paths, so no traversal). static/vendor/ holds
onnxruntime-web's WebAssembly build, copied from the pinned npm package (see its README.md), for device mode.
/docs is FastAPI's Swagger page with its assets self-hosted from static/swagger-ui/ instead of a CDN, so
the docs work offline.
The camera page's Content-Security-Policy limits it to this origin: camera frames can only be sent
back to this service (connect-src 'self'). 'wasm-unsafe-eval' lets it compile WebAssembly (device mode),
nothing else. The page is cross-origin isolated (COOP/COEP; every resource is same-origin), which lets
onnxruntime-web use threads.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from service.errors import ApiError

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
SWAGGER_DIR = STATIC_DIR / "swagger-ui"  # vendored swagger-ui-dist, see its README.md
SWAGGER_URL = "/static/swagger-ui"
VENDOR_DIR = STATIC_DIR / "vendor"  # npm packages' files, copied by `npm run vendor` (tools/vendor_web.mjs)

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".wasm": "application/wasm",
    ".webmanifest": "application/manifest+json",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "worker-src 'self'",
        "manifest-src 'self'",
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
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    # small files that change with each release: revalidate (ETag) instead of caching stale code
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


def _file_response(name: str, folder: Path = STATIC_DIR) -> FileResponse:
    path = folder / name
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


@router.get("/static/vendor/{name}")
async def vendor_file(name: str) -> FileResponse:
    return _file_response(name, VENDOR_DIR)


@router.get("/sw.js")
async def service_worker() -> FileResponse:
    """At the root, so its scope is the whole page (a worker controls only paths below its own)."""
    return _file_response("sw.js")


@router.get("/manifest.webmanifest")
async def manifest() -> FileResponse:
    return _file_response("manifest.webmanifest")


@router.get("/static/swagger-ui/{name}")
async def swagger_file(name: str) -> FileResponse:
    return _file_response(name, SWAGGER_DIR)


@router.get("/docs")
async def docs(request: Request) -> HTMLResponse:
    """Swagger UI with every asset from this service: no CDN, so it renders offline."""
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - API docs",
        swagger_js_url=f"{root}{SWAGGER_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{SWAGGER_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}{SWAGGER_URL}/favicon-32x32.png",
        oauth2_redirect_url=None,
    )
