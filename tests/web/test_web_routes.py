"""GET / and /static/<file>: served with a CSP that keeps camera frames on this origin; nothing else."""

from __future__ import annotations

import httpx
import pytest


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
