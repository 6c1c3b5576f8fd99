"""Device mode and the server agree: the page's own pipeline (service/static/device.js, onnxruntime-web in
real Chromium) and POST /v1/predict on the same scenes-sample photos, for every model the card converted
for the device. Criteria (issue 24): labels equal on >= 98% of the server's faces, boxes IoU >= 0.9 on
>= 95% of them (a face the device misses fails both)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import SceneSample, iou
from tests.web.conftest import CHROMIUM_FLAGS

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

LABEL_AGREEMENT = 0.98
BOX_AGREEMENT = 0.95
BOX_IOU = 0.9
MATCH_IOU = 0.5  # the same face

# the device pipeline on one photo: decoded by the browser (EXIF applied), judged in the page
RUN_ON_DEVICE = """
async ([precision, photos]) => {
  const device = await import('/static/device.js');
  const info = await (await fetch('/v1/models')).json();
  const pipeline = await device.createPipeline(info, precision);
  const results = [];
  for (const b64 of photos) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const bitmap = await createImageBitmap(new Blob([bytes], { type: 'image/jpeg' }));
    const out = await pipeline.run(bitmap, bitmap.width, bitmap.height);
    results.push(out.faces.map((f) => ({ box: f.box, label: f.label, p: f.mask_probability })));
  }
  return results;
}
"""


@pytest.fixture(scope="module")
def page(chromium: Path, live_server: str) -> Iterator[Page]:
    with sync_playwright() as p:
        browser: Browser = p.chromium.launch(
            executable_path=str(chromium), headless=True, args=CHROMIUM_FLAGS
        )
        context = browser.new_context(service_workers="block")
        pg = context.new_page()
        pg.goto(live_server + "/?mode=server")  # the page's origin and CSP; no camera here, so it idles
        yield pg
        browser.close()


def device_precisions(live_server: str) -> list[str]:
    info = httpx.get(live_server + "/v1/models", timeout=30).json()
    return [m["precision"] for m in info["models"] if "onnxruntime-web" in m["runtime_files"]]


def test_device_and_server_agree_on_the_scenes(
    page: Page, live_server: str, scene_samples: list[SceneSample]
) -> None:
    photos = [base64.b64encode(s.data).decode() for s in scene_samples]
    precisions = device_precisions(live_server)
    assert precisions, "the card converts no model for the device"
    for precision in precisions:
        device = page.evaluate(RUN_ON_DEVICE, [precision, photos])
        faces = same_label = same_box = 0
        problems = []
        for sample, on_device in zip(scene_samples, device, strict=True):
            r = httpx.post(
                f"{live_server}/v1/predict?model={precision}",
                files={"file": (sample.path.name, sample.data, "image/jpeg")},
                timeout=60,
            )
            assert r.status_code == 200, r.text
            for face in r.json()["faces"]:
                faces += 1
                scored = sorted(
                    ((iou(tuple(face["box"]), tuple(d["box"])), d) for d in on_device), key=lambda t: -t[0]
                )
                if not scored or scored[0][0] < MATCH_IOU:
                    problems.append(f"{sample.name}: server face {face['box']} not found on the device")
                    continue
                overlap, match = scored[0]
                same_box += overlap >= BOX_IOU
                if match["label"] == face["label"]:
                    same_label += 1
                else:
                    problems.append(
                        f"{sample.name} {face['box']}: server {face['label']} "
                        f"({face['mask_probability']:.2f}), device {match['label']} ({match['p']:.2f})"
                    )
        print(
            f"\n{precision}: {faces} server faces on {len(photos)} photos; labels equal "
            f"{same_label / faces:.1%}, boxes IoU >= {BOX_IOU} {same_box / faces:.1%}; "
            f"differences: {problems[:10]}"
        )
        assert faces >= 50
        assert same_label / faces >= LABEL_AGREEMENT, problems
        assert same_box / faces >= BOX_AGREEMENT, problems
