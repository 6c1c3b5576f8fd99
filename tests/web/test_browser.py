"""The camera page in real Chromium (Playwright + Debian's /usr/bin/chromium) against a real server, in
server mode (?mode=server; device mode: test_device_mode.py).

Chromium's fake camera plays a Y4M video made here from a scenes-sample photo, so the page's whole
path runs for real: getUserMedia -> canvas JPEG snapshot -> POST /v1/predict/snapshot -> boxes drawn.
The page lists its detections in the DOM (#detections li[data-label][data-box]); the test matches them
to the photo's VOC annotations. Screenshots go to $MASKLITE_TEST_ARTIFACTS (default work/test-artifacts/)
and their paths are printed.
"""

from __future__ import annotations

import base64
import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import REPO_ROOT, SceneSample, ServerFactory, skip_or_fail
from tests.helpers.browser import FLAGS, check_found, overlay_painted_pixels, write_y4m

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

SNAPSHOT_MAX_SIDE = 640  # service/static/app.js: the camera frame is scaled to this before it is sent
WAIT_MS = 60_000


# Records every fetch the page makes, the most snapshot requests ever in flight at once, and each
# snapshot's answer (label@box per face).
FETCH_PROBE = """
(() => {
  window.__probe = { inflight: 0, maxInflight: 0, snapshots: 0, urls: [], answers: [] };
  const orig = window.fetch.bind(window);
  window.fetch = async (input, init) => {
    const url = new URL(typeof input === "string" ? input : input.url, location.href).href;
    window.__probe.urls.push(url);
    const snap = url.includes("/v1/predict/snapshot");
    if (snap) {
      window.__probe.snapshots++;
      window.__probe.inflight++;
      window.__probe.maxInflight = Math.max(window.__probe.maxInflight, window.__probe.inflight);
    }
    try {
      const resp = await orig(input, init);
      if (snap) {  // what the service answered, recorded before the page renders it
        const body = await resp.clone().json().catch(() => null);
        const faces = body && body.faces ? body.faces : [];
        window.__probe.answers.push(faces.map((f) => f.label + "@" + f.box.join(",")));
      }
      return resp;
    } finally { if (snap) window.__probe.inflight--; }
  };
})();
"""


def artifacts_dir() -> Path:
    root = os.environ.get("MASKLITE_TEST_ARTIFACTS") or REPO_ROOT / "work" / "test-artifacts"
    path = Path(root) / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path


def scenes_by_rule(samples: list[SceneSample]) -> list[SceneSample]:
    """Scenes with faces of both labels, those whose smallest annotated face stays biggest in the page's
    640 px camera snapshot first. Chosen from the annotations alone, never from what a model gets right:
    the labels the page shows are checked against the service's answer, not against the annotations."""

    def smallest_in_snapshot(s: SceneSample) -> float:
        scale = min(1.0, SNAPSHOT_MAX_SIDE / max(s.width, s.height))
        return scale * min(min(f.box[2], f.box[3]) for f in s.faces)

    both = [s for s in samples if {f.label for f in s.faces} == {"with_mask", "without_mask"}]
    if len(both) < 3:
        skip_or_fail(f"the scenes sample has {len(both)} scenes with both labels, 3 needed")
    return sorted(both, key=lambda s: (-smallest_in_snapshot(s), s.name))


def read_detections(page: Page) -> dict:
    return page.evaluate(
        """() => {
          const list = document.getElementById('detections');
          return {
            source: list.dataset.source, frame: Number(list.dataset.frame),
            width: Number(list.dataset.imageWidth), height: Number(list.dataset.imageHeight),
            model: list.dataset.model,
            faces: [...list.querySelectorAll('li[data-label]')].map(li => ({
              label: li.dataset.label, probability: Number(li.dataset.probability),
              box: li.dataset.box.split(',').map(Number), text: li.textContent })),
          };
        }"""
    )


def wait_for_result(page: Page, source: str, min_frame: int = 1) -> dict:
    page.wait_for_function(
        """([source, minFrame]) => {
          const list = document.getElementById('detections');
          return list.dataset.source === source && Number(list.dataset.frame) >= minFrame
            && list.querySelectorAll('li[data-label]').length > 0;
        }""",
        arg=[source, min_frame],
        timeout=WAIT_MS,
    )
    return read_detections(page)


def describe(shown: dict) -> str:
    return "; ".join(f"{f['text']} at {f['box']}" for f in shown["faces"])


def as_answer(faces: list[dict]) -> list[str]:
    return [f"{f['label']}@{','.join(map(str, f['box']))}" for f in faces]


def check_camera_answer(page: Page, shown: dict) -> None:
    """The page shows, face by face, what the service answered for one of the frames it sent."""
    answers = page.evaluate("() => window.__probe.answers")
    assert as_answer(shown["faces"]) in answers, (describe(shown), answers[-3:])


def check_upload_answer(live_server: str, sample: SceneSample, shown: dict) -> None:
    """The page shows what POST /v1/predict answers for the same file (the page sends it unchanged)."""
    files = {"file": (sample.path.name, sample.data, "image/jpeg")}
    r = httpx.post(f"{live_server}/v1/predict", params={"model": "int8"}, files=files, timeout=60)
    assert r.status_code == 200, r.text
    assert as_answer(shown["faces"]) == as_answer(r.json()["faces"]), (describe(shown), r.json()["faces"])
    for f, g in zip(shown["faces"], r.json()["faces"], strict=True):
        assert f["probability"] == pytest.approx(g["mask_probability"], abs=1e-4)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def camera_scene(scene_samples: list[SceneSample]) -> SceneSample:
    return scenes_by_rule(scene_samples)[0]


@pytest.fixture(scope="module")
def fake_camera(tmp_path_factory: pytest.TempPathFactory, camera_scene: SceneSample) -> Path:
    bgr = cv2.imread(str(camera_scene.path), cv2.IMREAD_COLOR)
    assert bgr is not None, camera_scene.path
    path = tmp_path_factory.mktemp("camera") / f"{camera_scene.name}.y4m"
    write_y4m(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), path)
    return path


@pytest.fixture(scope="module")
def browser(chromium: Path, fake_camera: Path) -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(chromium),
            headless=True,
            args=[*FLAGS, f"--use-file-for-fake-video-capture={fake_camera}"],
        )
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Browser, live_server: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.grant_permissions(["camera"], origin=live_server)
    pg = context.new_page()
    pg.add_init_script(FETCH_PROBE)
    errors: list[str] = []
    pg.on("console", lambda m: m.type == "error" and errors.append(m.text))
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.console_errors = errors  # type: ignore[attr-defined]
    try:
        yield pg
    finally:
        context.close()


# ---------------------------------------------------------------- tests


def test_camera_shows_boxes_and_the_annotated_labels(
    page: Page, live_server: str, camera_scene: SceneSample
) -> None:
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(live_server + "/?mode=server")
    shown = wait_for_result(page, "camera")
    print(f"\ncamera frame {shown['width']}x{shown['height']}: {describe(shown)}")
    problems = check_found(shown, camera_scene)
    assert not problems, f"{camera_scene.name} via the fake camera: {problems}\nshown: {shown['faces']}"
    check_camera_answer(page, shown)
    assert shown["model"] == "int8"
    assert overlay_painted_pixels(page) > 500, "detections listed but no boxes drawn on the overlay"

    # a few more frames: the loop keeps going at a steady rate, one request in flight at most
    later = wait_for_result(page, "camera", min_frame=shown["frame"] + 4)
    assert not check_found(later, camera_scene)
    check_camera_answer(page, later)
    stats = page.evaluate(
        "() => ({latency: latency.textContent, server: server.textContent, fps: fps.textContent,"
        " count: count.textContent, probe: window.__probe})"
    )
    print(
        f"page stats: latency {stats['latency']}, server {stats['server']}, FPS {stats['fps']}, "
        f"faces {stats['count']}, snapshots sent {stats['probe']['snapshots']}"
    )
    assert stats["latency"].endswith("ms") and stats["server"].endswith("ms")
    assert float(stats["fps"]) > 0
    assert stats["probe"]["maxInflight"] == 1, stats["probe"]
    # nothing leaves for another origin: every request goes to this service (or stays in the page)
    foreign = [u for u in requests if not u.startswith((live_server, "data:", "blob:"))]
    assert not foreign, foreign

    shot = artifacts_dir() / "camera.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert not page.console_errors, page.console_errors


def test_photo_upload_shows_the_annotated_labels(
    page: Page, live_server: str, scene_samples: list[SceneSample]
) -> None:
    sample = scenes_by_rule(scene_samples)[1]
    page.goto(live_server + "/?mode=server")
    wait_for_result(page, "camera")  # the camera runs first; a photo replaces it
    page.set_input_files("#file", str(sample.path))
    shown = wait_for_result(page, "upload")
    print(f"\nupload {sample.name} {shown['width']}x{shown['height']}: {describe(shown)}")
    assert (shown["width"], shown["height"]) == (sample.width, sample.height)
    problems = check_found(shown, sample)
    assert not problems, f"{sample.name} uploaded: {problems}\nshown: {shown['faces']}"
    check_upload_answer(live_server, sample, shown)
    assert page.is_visible("#photo") and not page.is_visible("#video")
    assert overlay_painted_pixels(page) > 500
    shot = artifacts_dir() / "upload.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")

    page.click("#back")  # back to the live camera
    wait_for_result(page, "camera")
    assert not page.console_errors, page.console_errors


def test_drag_and_drop_a_photo(page: Page, live_server: str, scene_samples: list[SceneSample]) -> None:
    sample = scenes_by_rule(scene_samples)[2]
    page.goto(live_server + "/?mode=server")
    wait_for_result(page, "camera")
    # a real DragEvent carrying the file, dropped on the drop zone, as a desktop browser sends it
    page.evaluate(
        """async ([b64, name]) => {
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          const dt = new DataTransfer();
          dt.items.add(new File([bytes], name, { type: "image/jpeg" }));
          const zone = document.getElementById("drop");
          const init = { dataTransfer: dt, bubbles: true, cancelable: true };
          zone.dispatchEvent(new DragEvent("dragover", init));
          zone.dispatchEvent(new DragEvent("drop", init));
        }""",
        [base64.b64encode(sample.data).decode(), sample.path.name],
    )
    shown = wait_for_result(page, "upload")
    assert (shown["width"], shown["height"]) == (sample.width, sample.height)
    assert not check_found(shown, sample), describe(shown)
    check_upload_answer(live_server, sample, shown)


def test_model_picker_switches_precision(page: Page, live_server: str, camera_scene: SceneSample) -> None:
    page.goto(live_server + "/?mode=server")
    wait_for_result(page, "camera")
    options = page.eval_on_selector_all("#model option", "opts => opts.map(o => o.value)")
    assert set(options) >= {"int8", "float32"}, options  # filled from GET /v1/models
    page.select_option("#model", "float32")
    page.wait_for_function(
        "() => document.getElementById('detections').dataset.model === 'float32'", timeout=WAIT_MS
    )
    shown = wait_for_result(page, "camera")
    assert shown["model"] == "float32"
    assert not check_found(shown, camera_scene), describe(shown)
    check_camera_answer(page, shown)


@pytest.mark.parametrize(
    ("error", "expected"),
    [("NotAllowedError", "denied"), ("NotFoundError", "No camera was found")],
)
def test_camera_denied_or_absent_says_so(page: Page, live_server: str, error: str, expected: str) -> None:
    page.add_init_script(
        f"navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('test', '{error}'));"
    )
    page.goto(live_server + "/?mode=server")
    page.wait_for_function("() => document.body.dataset.state === 'camera-error'", timeout=WAIT_MS)
    message = page.inner_text("#message")
    assert expected in message, message
    assert "photo" in message  # and it points to the upload path, which still works
    assert page.is_visible("#file") or page.is_visible("#drop")


def test_phone_layout(browser: Browser, live_server: str, camera_scene: SceneSample) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    try:
        pg = context.new_page()
        pg.goto(live_server + "/?mode=server")
        shown = wait_for_result(pg, "camera")
        assert not check_found(shown, camera_scene)
        widths = pg.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], f"page scrolls sideways on a phone: {widths}"
        box = pg.locator("#stage").bounding_box()
        assert box is not None and box["width"] <= 390
        shot = artifacts_dir() / "phone.png"
        pg.screenshot(path=str(shot), full_page=True)
        print(f"\nscreenshot: {shot}")
    finally:
        context.close()


# ---------------------------------------------------------------- overload and outage


def snapshot_request_times(pg: Page) -> list[float]:
    """Monotonic times at which the page sends each camera snapshot (filled as it goes)."""
    times: list[float] = []
    pg.on("request", lambda r: "/v1/predict/snapshot" in r.url and times.append(time.monotonic()))
    return times


def wait_for_count(pg: Page, times: list[float], n: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while len(times) < n:
        assert time.monotonic() < deadline, f"{len(times)} snapshots, not {n}, in {timeout_s:.0f} s"
        pg.wait_for_timeout(100)  # lets Playwright deliver the page's events


def message(pg: Page) -> str:
    return pg.eval_on_selector("#message", "m => m.hidden ? '' : m.textContent")


def test_camera_waits_retry_after_on_503(browser: Browser, server_factory: ServerFactory) -> None:
    """A real server that answers every snapshot 503 + Retry-After: 3 (its warm-up never ends): the page
    says why and sends the next frame only after Retry-After, not as soon as the answer arrives."""
    handle = server_factory.start(
        {"MASKLITE_WARMUP_RUNS": "1000000", "MASKLITE_THREADS": "1", "MASKLITE_RETRY_AFTER_S": "3"},
        wait="/health/live",
    )
    context = browser.new_context()
    try:
        context.grant_permissions(["camera"], origin=handle.url)
        pg = context.new_page()
        times = snapshot_request_times(pg)
        pg.goto(handle.url + "/?mode=server")
        wait_for_count(pg, times, 3)
        assert message(pg).startswith("Server: "), message(pg)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # Retry-After is 3 s; the page's own pace is the next frame at once. 2.5 s: Playwright delivers
        # request events a little late, and a late first one shortens the first gap; a page that ignores
        # Retry-After is far off
        assert min(gaps) >= 2.5, gaps
    finally:
        context.close()
        handle.stop()


def test_camera_survives_the_server_going_away(browser: Browser, server_factory: ServerFactory) -> None:
    """Server stopped mid-stream: the page says it cannot reach it and retries every 2 s (not at once); a
    server back on the same port is picked up without a reload."""
    handle = server_factory.start()
    port = handle.url.rsplit(":", 1)[1]
    context = browser.new_context()
    try:
        context.grant_permissions(["camera"], origin=handle.url)
        pg = context.new_page()
        times = snapshot_request_times(pg)
        pg.goto(handle.url + "/?mode=server")
        wait_for_result(pg, "camera")
        handle.stop()
        pg.wait_for_function(
            "() => document.getElementById('message').textContent.startsWith('Cannot reach the server')",
            timeout=WAIT_MS,
        )
        down_from = len(times)
        wait_for_count(pg, times, down_from + 3)
        gaps = [b - a for a, b in itertools.pairwise(times[down_from - 1 :])]
        assert min(gaps) >= 1.5, gaps  # the page's 2 s retry (see above for the margin)
        last_frame = read_detections(pg)["frame"]  # a frame may have landed just before the stop
        handle = server_factory.start({"MASKLITE_PORT": port})
        later = wait_for_result(pg, "camera", min_frame=last_frame + 1)
        assert later["faces"] and message(pg) == "", message(pg)
    finally:
        context.close()
        handle.stop()
