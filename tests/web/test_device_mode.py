"""The camera page on phones (Pixel 7 and iPhone 14 emulation, real Chromium, a fake 640x480 camera):
device mode with no frame leaving the page (the browser's own request log), server mode pipelined, offline
after the first visit (service worker), a model file that does not match the card, the fallback when
WebAssembly SIMD is missing, labels from the card, and the whole page over HTTPS with the generated
certificate."""

from __future__ import annotations

import base64
import hashlib
import ssl
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Request, sync_playwright

from masklite.card import load_card
from tests.conftest import SceneSample, ServerFactory
from tests.helpers.browser import FLAGS, check_found, overlay_painted_pixels, scene, write_y4m

pytestmark = [pytest.mark.browser, pytest.mark.timeout(400)]

CAMERA_SCENE = "scene_07"  # three faces, both classes, all big enough at 640x480
UPLOAD_SCENE = "scene_22"  # test_browser.py's photo
CAMERA_SIZE = (640, 480)
CAMERA_FPS = 30
WAIT_MS = 90_000
PHONES = ["Pixel 7", "iPhone 14"]
# what the page may fetch in device mode (all GET): itself, its files, the card and the model files
DEVICE_FILES = {"/", "/sw.js", "/manifest.webmanifest", "/v1/models"}
DEVICE_FOLDERS = ("/static/", "/v1/models/files/")

# Records each snapshot request's start and end (performance.now()) and the most in flight at once.
SNAPSHOT_PROBE = """
(() => {
  window.__probe = { inflight: 0, maxInflight: 0, starts: [], ends: [] };
  const orig = window.fetch.bind(window);
  window.fetch = async (input, init) => {
    const url = typeof input === "string" ? input : input.url;
    if (!url.includes("/v1/predict/snapshot")) return orig(input, init);
    const p = window.__probe;
    p.starts.push(performance.now());
    p.maxInflight = Math.max(p.maxInflight, ++p.inflight);
    try { return await orig(input, init); } finally { p.inflight--; p.ends.push(performance.now()); }
  };
})();
"""


@pytest.fixture(scope="module")
def camera_scene(scene_samples: list[SceneSample]) -> SceneSample:
    return scene(scene_samples, CAMERA_SCENE)


@pytest.fixture(scope="module")
def fake_camera(tmp_path_factory: pytest.TempPathFactory, camera_scene: SceneSample) -> Path:
    bgr = cv2.resize(cv2.imread(str(camera_scene.path)), CAMERA_SIZE, interpolation=cv2.INTER_AREA)
    path = tmp_path_factory.mktemp("camera") / "phone.y4m"
    write_y4m(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), path, frames=CAMERA_FPS, fps=CAMERA_FPS)
    return path


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


def launch(playwright: Playwright, chromium: Path, camera: Path, *extra: str) -> Browser:
    return playwright.chromium.launch(
        executable_path=str(chromium),
        headless=True,
        args=[*FLAGS, f"--use-file-for-fake-video-capture={camera}", *extra],
    )


@pytest.fixture(scope="module")
def browser(playwright: Playwright, chromium: Path, fake_camera: Path) -> Iterator[Browser]:
    b = launch(playwright, chromium, fake_camera)
    yield b
    b.close()


def phone(playwright: Playwright, browser: Browser, name: str, origin: str, **options: str) -> BrowserContext:
    device = {k: v for k, v in playwright.devices[name].items() if k != "default_browser_type"}
    context = browser.new_context(**device, **options)
    context.grant_permissions(["camera"], origin=origin)
    return context


def open_page(context: BrowserContext) -> Page:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.page_errors = errors  # type: ignore[attr-defined]
    return page


def wait_frames(page: Page, mode: str, frames: int = 3) -> dict:
    page.wait_for_function(
        "([mode, n]) => window.masklite && window.masklite.mode === mode && window.masklite.frames >= n"
        " && window.masklite.source === 'camera'",
        arg=[mode, frames],
        timeout=WAIT_MS,
    )
    return page.evaluate("() => JSON.parse(JSON.stringify(window.masklite))")


def shown_faces(state: dict) -> dict:
    """window.masklite in the shape tests.helpers.browser.check_found reads."""
    return {
        "width": state["image"]["width"],
        "height": state["image"]["height"],
        "faces": [
            {"box": f["box"], "label": f["label"], "probability": f["confidence"]} for f in state["faces"]
        ],
    }


def message(page: Page) -> str:
    return page.inner_text("#message")


# ---------------------------------------------------------------- device mode


@pytest.mark.parametrize("device", PHONES)
def test_device_mode_sends_no_frame(
    playwright: Playwright, browser: Browser, live_server: str, camera_scene: SceneSample, device: str
) -> None:
    context = phone(playwright, browser, device, live_server)
    requests: list[Request] = []
    context.on("request", lambda r: requests.append(r))  # the page's and its service worker's requests
    try:
        page = open_page(context)
        page.goto(live_server + "/?mode=device")
        first = wait_frames(page, "device")
        before = len(requests)
        state = wait_frames(page, "device", first["frames"] + 10)  # ten more frames judged on the phone
        print(
            f"\n{device}: device mode, {state['fps']:.1f} frames/s (under load), stages {state['stages_ms']}"
        )
        assert not check_found(shown_faces(state), camera_scene), state["faces"]
        assert set(state["stages_ms"]) >= {"detect", "classify", "draw"}
        assert overlay_painted_pixels(page) > 500
        # the browser's request log: only GETs of the page, its files and the model files; no predict, no
        # body; and nothing at all while those ten frames were judged
        for r in requests:
            path = r.url.removeprefix(live_server).split("?")[0]
            assert r.method == "GET" and r.post_data_buffer is None, (r.method, r.url)
            assert path in DEVICE_FILES or path.startswith(DEVICE_FOLDERS), r.url
        assert not [r.url for r in requests[before:] if "/v1/" in r.url], "requests while judging frames"
        assert page.evaluate("() => document.getElementById('detections').dataset.engine") == "device"
        assert not page.page_errors, page.page_errors  # type: ignore[attr-defined]
    finally:
        context.close()


def test_a_photo_is_checked_on_the_device_too(
    playwright: Playwright, browser: Browser, live_server: str, scene_samples: list[SceneSample]
) -> None:
    sample = scene(scene_samples, UPLOAD_SCENE)
    context = phone(playwright, browser, "Pixel 7", live_server)
    posts: list[str] = []
    context.on("request", lambda r: r.method != "GET" and posts.append(f"{r.method} {r.url}"))
    try:
        page = open_page(context)
        page.goto(live_server + "/?mode=device")
        wait_frames(page, "device")
        # the list offers the models the card converted for the device; int8 labels this photo right
        options = page.eval_on_selector_all("#model option", "opts => opts.map(o => o.value)")
        assert "int8" in options and "float32" not in options, options
        page.select_option("#model", "int8")
        page.wait_for_function(
            "() => document.getElementById('detections').dataset.model === 'int8'", timeout=WAIT_MS
        )
        page.set_input_files("#file", str(sample.path))
        page.wait_for_function("() => window.masklite.source === 'upload'", timeout=WAIT_MS)
        state = page.evaluate("() => JSON.parse(JSON.stringify(window.masklite))")
        assert (state["image"]["width"], state["image"]["height"]) == (sample.width, sample.height)
        assert not check_found(shown_faces(state), sample), state["faces"]
        assert not posts, posts  # the photo never left the page
    finally:
        context.close()


def test_labels_and_unknown_come_from_the_card(
    playwright: Playwright, browser: Browser, live_server: str
) -> None:
    """A renamed label, then a bigger min_face_size, in /v1/models change what is shown: no code change."""
    context = phone(playwright, browser, "Pixel 7", live_server, service_workers="block")
    info = httpx.get(live_server + "/v1/models", timeout=30).json()
    renamed = "no_mask_seen"
    other = next(label for label in info["labels"] if label != info["mask_label"])
    info["labels"] = [renamed if label == other else label for label in info["labels"]]
    context.route("**/v1/models", lambda route: route.fulfill(json=info))
    try:
        page = open_page(context)
        page.goto(live_server + "/?mode=device")
        state = wait_frames(page, "device")
        assert {f["label"] for f in state["faces"]} == {renamed, info["mask_label"]}, state["faces"]
        for face in state["faces"]:
            assert 0.5 <= face["confidence"] <= 1.0, face
        texts = page.eval_on_selector_all("#detections li", "els => els.map(e => e.textContent)")
        assert any("No mask seen" in t for t in texts), texts
        # the number shown is the confidence of the shown label
        for text, face in zip(texts, state["faces"], strict=True):
            assert text.endswith(f"{round(face['confidence'] * 100)}%"), (text, face)

        info["min_face_size"] = 80  # now the two smaller faces of the frame are too small to judge
        page.reload()
        state = wait_frames(page, "device")
        small = [f for f in state["faces"] if min(f["box"][2:]) < 80]
        assert small and all(f["label"] == "unknown" and f["confidence"] is None for f in small), state
        assert all(f["label"] != "unknown" for f in state["faces"] if f not in small), state
        texts = page.eval_on_selector_all("#detections li.unknown", "els => els.map(e => e.textContent)")
        assert len(texts) == len(small) and all("Unknown" in t for t in texts), texts
    finally:
        context.close()


# ---------------------------------------------------------------- server mode


def test_server_mode_sends_the_next_frame_when_the_answer_arrives(
    playwright: Playwright, browser: Browser, live_server: str, camera_scene: SceneSample
) -> None:
    context = phone(playwright, browser, "Pixel 7", live_server)
    try:
        page = open_page(context)
        page.add_init_script(SNAPSHOT_PROBE)
        page.goto(live_server + "/?mode=server")
        first = wait_frames(page, "server")
        state = wait_frames(page, "server", first["frames"] + 8)
        probe = page.evaluate("() => window.__probe")
        assert probe["maxInflight"] == 1, probe
        # pipelined: each frame leaves right after the previous answer (the old page waited for a 250 ms
        # timer); a median gap well under that, measured in the page
        gaps = [s - e for s, e in zip(probe["starts"][1:], probe["ends"], strict=False)]
        print(
            f"\nserver mode: {state['fps']:.1f} frames/s (under load), gaps {statistics.median(gaps):.1f} ms"
        )
        assert statistics.median(gaps) < 100, gaps
        assert not check_found(shown_faces(state), camera_scene), state["faces"]
        assert state["fps"] > 0 and page.inner_text("#latency").endswith("ms")
        assert {"request", "server", "draw"} <= set(state["stages_ms"])
    finally:
        context.close()


# ---------------------------------------------------------------- offline


def test_device_mode_works_offline_after_the_first_visit(
    playwright: Playwright, browser: Browser, live_server: str, camera_scene: SceneSample
) -> None:
    context = phone(playwright, browser, "iPhone 14", live_server)
    try:
        page = open_page(context)
        page.goto(live_server + "/?mode=device")
        wait_frames(page, "device")
        cached = page.evaluate(
            """async () => {
              await navigator.serviceWorker.ready;
              const keys = await (await caches.open('masklite-v1')).keys();
              return keys.map((r) => new URL(r.url).pathname);
            }"""
        )
        assert "/static/vendor/ort-wasm-simd-threaded.wasm" in cached and "/v1/models" in cached, cached
        assert any(p.startswith("/v1/models/files/") for p in cached), cached
        context.set_offline(True)
        page.reload()
        state = wait_frames(page, "device")
        assert state["fallback"] is None
        assert not check_found(shown_faces(state), camera_scene), state["faces"]
        # and the server really is out of reach from this context
        assert page.evaluate("() => fetch('/health/live').then(() => 'reached', () => 'unreachable')") == (
            "unreachable"
        )
    finally:
        context.close()


# ---------------------------------------------------------------- refusals and fallback


@pytest.fixture(scope="module")
def tampered_server(
    server_factory: ServerFactory, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A server whose device classifier file no longer matches the card (the rest: the shipped files)."""
    folder = tmp_path_factory.mktemp("tampered-models")
    for path in models_dir.iterdir():
        if path.is_file():
            (folder / path.name).symlink_to(path.resolve())
    (folder / tampered_file(models_dir)).unlink()
    data = bytearray((models_dir / tampered_file(models_dir)).read_bytes())
    data[-100] ^= 0xFF  # one flipped byte
    (folder / tampered_file(models_dir)).write_bytes(bytes(data))
    return server_factory.start({"MASKLITE_MODELS_DIR": str(folder)}).url


def tampered_file(models_dir: Path) -> str:
    """The classifier file device mode loads first: the card's device model's onnxruntime-web file."""
    card = load_card(models_dir)
    return card.models[card.device_model or "int8"].runtime_files["onnxruntime-web"].file


def test_a_model_file_that_does_not_match_the_card_refuses_device_mode(
    playwright: Playwright, browser: Browser, tampered_server: str, models_dir: Path
) -> None:
    context = phone(playwright, browser, "Pixel 7", tampered_server)
    try:
        page = open_page(context)
        page.goto(tampered_server + "/?mode=device")
        state = wait_frames(page, "server")
        text = message(page)
        assert f"{tampered_file(models_dir)} does not match the model card" in text and "refused" in text, (
            text
        )
        assert state["fallback"] and "does not match" in state["fallback"]
        assert page.input_value("#engine") == "server"
    finally:
        context.close()


def test_no_webassembly_simd_falls_back_to_the_server_and_says_why(
    playwright: Playwright, browser: Browser, live_server: str, camera_scene: SceneSample
) -> None:
    context = phone(playwright, browser, "iPhone 14", live_server)
    try:
        page = open_page(context)
        page.add_init_script("WebAssembly.validate = () => false;")  # a browser without WASM SIMD
        page.goto(live_server + "/?mode=device")
        state = wait_frames(page, "server")
        assert "no SIMD" in message(page) and "server" in message(page), message(page)
        assert "no SIMD" in state["fallback"]
        assert not check_found(shown_faces(state), camera_scene), state["faces"]
    finally:
        context.close()


# ---------------------------------------------------------------- HTTPS


def spki_sha256(cert_path: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture(scope="module")
def https_server(
    server_factory: ServerFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    tls_dir = tmp_path_factory.mktemp("tls")
    handle = server_factory.start(
        {"MASKLITE_TLS": "self-signed", "MASKLITE_TLS_DIR": str(tls_dir)}, wait=None
    )
    url = handle.url.replace("http://", "https://")
    cert = tls_dir / "masklite-cert.pem"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert handle.alive(), handle.logs()[-3000:]
        try:
            if (
                httpx.get(url + "/health/ready", verify=ssl.create_default_context(cafile=cert)).status_code
                == 200
            ):
                break
        except (httpx.TransportError, FileNotFoundError):
            pass
        time.sleep(0.2)
    else:
        pytest.fail(f"HTTPS server not ready:\n{handle.logs()[-3000:]}")
    yield url, cert
    handle.stop()


@pytest.mark.parametrize("device", PHONES)
def test_phone_over_https_with_the_generated_certificate(
    playwright: Playwright,
    chromium: Path,
    fake_camera: Path,
    https_server: tuple[str, Path],
    camera_scene: SceneSample,
    device: str,
) -> None:
    url, cert = https_server
    # this browser trusts exactly this key, as a phone that installed the certificate would (accepting the
    # warning alone lets the page run, but then browsers register no service worker)
    b = launch(
        playwright, chromium, fake_camera, f"--ignore-certificate-errors-spki-list={spki_sha256(cert)}"
    )
    try:
        context = phone(playwright, b, device, url)
        page = open_page(context)
        page.goto(url + "/?mode=device")
        state = wait_frames(page, "device")
        assert page.evaluate("() => window.isSecureContext && location.protocol") == "https:"
        assert not check_found(shown_faces(state), camera_scene), state["faces"]
        # the service worker installs over this certificate: offline use works from here too
        assert page.evaluate("async () => !!(await navigator.serviceWorker.ready).active")
        context.close()
    finally:
        b.close()
