"""/docs renders with the network blocked: real Chromium, every request off loopback aborted.

The page's assets (swagger-ui JS/CSS, favicon) come from the service itself, so the operations list
must render; a CDN reference would leave a blank page and show up in `blocked`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Route, sync_playwright

from tests.web.conftest import CHROMIUM_FLAGS

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_FLAGS)
        try:
            yield b
        finally:
            b.close()


def test_docs_render_offline(browser: Browser, live_server: str) -> None:
    blocked: list[str] = []
    served: list[str] = []

    def only_loopback(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname in LOOPBACK or url.startswith("data:"):
            served.append(url)
            route.continue_()
        else:
            blocked.append(url)
            route.abort("internetdisconnected")

    context = browser.new_context()
    context.route("**/*", only_loopback)
    page = context.new_page()
    try:
        page.goto(f"{live_server}/docs", wait_until="load")
        page.wait_for_selector(".opblock-summary-path", timeout=60_000)
        shown = page.eval_on_selector_all(".opblock-summary-path", "els => els.map(e => e.dataset.path)")
        title = page.inner_text(".info .title")
    finally:
        context.close()
    paths = httpx.get(f"{live_server}/openapi.json").json()["paths"]
    verbs = ("get", "post", "put", "delete", "patch")
    operations = sum(1 for item in paths.values() for m in item if m in verbs)
    assert blocked == [], f"/docs tried to reach beyond loopback: {blocked}"
    assert "masklite" in title
    assert "/v1/predict" in shown and "/health/ready" in shown, shown
    assert len(shown) == operations, (len(shown), operations)
    assert any("/static/swagger-ui/swagger-ui-bundle.js" in u for u in served)


def test_docs_assets_are_served(live_server: str) -> None:
    for name, kind in (("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "css")):
        r = httpx.get(f"{live_server}/static/swagger-ui/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"] and len(r.content) > 100_000
    assert httpx.get(f"{live_server}/static/swagger-ui/LICENSE").status_code == 404  # only web assets
    assert httpx.get(f"{live_server}/static/swagger-ui/..%2Fapp.js").status_code == 404
    assert httpx.get(f"{live_server}/redoc").status_code == 404  # ReDoc needs a CDN: off
