"""GET / and /static/<file>: served with a CSP that keeps camera frames on this origin; nothing else."""

from __future__ import annotations

import hashlib
import json
import re

import httpx
import pytest

from tests.conftest import REPO_ROOT

VENDOR = REPO_ROOT / "service" / "static" / "vendor"


@pytest.fixture(scope="module")
def http(live_server: str):  # noqa: ANN201
    with httpx.Client(base_url=live_server, timeout=10) as c:
        yield c


def test_page_and_assets(http: httpx.Client) -> None:
    r = http.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'id="detections"' in r.text and "/static/app.js" in r.text
    csp = r.headers["content-security-policy"]
    assert "connect-src 'self'" in csp and "default-src 'none'" in csp
    assert "camera=(self)" in r.headers["permissions-policy"]
    for name, ctype in (("app.js", "text/javascript"), ("style.css", "text/css")):
        r = http.get(f"/static/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(ctype), name
        assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("name", ["../app.py", "..%2Frouters%2Fweb.py", "nope.js", ".gitignore", "index.py"])
def test_only_the_static_files(http: httpx.Client, name: str) -> None:
    r = http.get(f"/static/{name}")
    assert r.status_code == 404, (name, r.status_code)
    assert r.json()["error"]["code"] == "not_found"


def test_page_not_in_the_api_schema(http: httpx.Client) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not any(p.startswith("/static") for p in paths)


def test_device_mode_files(http: httpx.Client) -> None:
    """The page may compile WebAssembly and run workers from this origin only; the vendored runtime is
    served with its type and is exactly what static/vendor/README.md (npm run vendor) lists."""
    csp = http.get("/").headers["content-security-policy"]
    assert "script-src 'self' 'wasm-unsafe-eval'" in csp and "worker-src 'self'" in csp
    assert "connect-src 'self'" in csp  # frames still go nowhere else
    page = http.get("/")
    assert page.headers["cross-origin-opener-policy"] == "same-origin"
    assert page.headers["cross-origin-embedder-policy"] == "require-corp"
    readme = (VENDOR / "README.md").read_text()
    total = 0
    for name, ctype in (
        ("ort.wasm.bundle.min.mjs", "text/javascript"),
        ("ort-wasm-simd-threaded.wasm", "application/wasm"),
    ):
        r = http.get(f"/static/vendor/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(ctype), name
        assert hashlib.sha256(r.content).hexdigest() in readme, (
            f"{name} differs from the vendored copy's record"
        )
        total += len(r.content)
    assert total < 15_000_000
    lock = json.loads((REPO_ROOT / "package-lock.json").read_text())
    pinned = lock["packages"]["node_modules/onnxruntime-web"]["version"]
    assert f"onnxruntime-web {pinned}" in readme


def test_service_worker_and_manifest(http: httpx.Client) -> None:
    sw = http.get("/sw.js")
    assert sw.status_code == 200 and sw.headers["content-type"].startswith("text/javascript")
    # every file the worker caches at install exists
    shell = re.search(r"const SHELL = \[(.*?)\];", sw.text, re.S)
    assert shell is not None
    for path in re.findall(r'"(/[^"]*)"', shell.group(1)):
        assert http.get(path).status_code == 200, path
    manifest = http.get("/manifest.webmanifest")
    assert manifest.headers["content-type"].startswith("application/manifest+json")
    info = manifest.json()
    assert info["start_url"] == "/" and info["display"] == "standalone"
    for icon in info["icons"]:
        assert http.get(icon["src"]).status_code == 200, icon
    assert 'rel="manifest"' in http.get("/").text
