"""`python -m bench.device`: the camera page's frame rate in headless Chromium, with Chromium's fake camera
playing the standard 640x480 target image (bench/images.py: 2-4 faces of a scene).

Device mode (YuNet + the classifier in the page, onnxruntime-web on WebAssembly): frames/s and the median
ms per stage (detect, classify, draw). Server mode (each frame to POST /v1/predict/snapshot, the next one
sent when the answer arrives): frames/s, round trip and server time. Both read window.masklite, the
page's own state, once per judged frame. Starts `python -m service` on a free loopback port unless --url
is given. Needs the dev extras (Playwright) and Chromium.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from bench.images import TARGET_SIZE, load_scenes, make_target_image, scenes_dir
from bench.server import start_server

CAMERA_FPS = 30
# how this project starts Chromium headless: the device benchmark and the browser tests alike
HEADLESS_CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
]
CHROMIUM_FLAGS = [
    *HEADLESS_CHROMIUM_FLAGS,
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
WARM_FRAMES = 5  # model loading and the first runs are not counted


def write_y4m(jpeg: bytes, path: Path, frames: int = CAMERA_FPS) -> None:
    """One still image as a Y4M clip at CAMERA_FPS (Chromium loops it as the camera)."""
    rgb = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    height, width = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    i420 = cv2.cvtColor(np.ascontiguousarray(rgb[:height, :width]), cv2.COLOR_RGB2YUV_I420)
    with open(path, "wb") as fh:
        fh.write(f"YUV4MPEG2 W{width} H{height} F{CAMERA_FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            fh.write(b"FRAME\n" + i420.tobytes())


def measure(page: object, url: str, mode: str, seconds: float) -> dict:
    """Open the page in `mode`, skip the warm-up frames, then read window.masklite after every frame."""
    page.goto(f"{url}/?{mode}")  # type: ignore[attr-defined]
    state = "() => JSON.parse(JSON.stringify(window.masklite || null))"
    warm = f"() => window.masklite?.source === 'camera' && window.masklite.frames >= {WARM_FRAMES}"
    page.wait_for_function(warm, timeout=180_000)  # type: ignore[attr-defined]
    first = page.evaluate(state)  # type: ignore[attr-defined]
    start = time.monotonic()
    samples: list[dict] = []
    last = first["frames"]
    while time.monotonic() - start < seconds:
        now = page.evaluate(state)  # type: ignore[attr-defined]
        if now["frames"] != last:
            samples.append(now)
            last = now["frames"]
        time.sleep(0.005)
    elapsed = time.monotonic() - start
    frames = last - first["frames"]
    stages = {k: statistics.median(s["stages_ms"][k] for s in samples) for k in samples[-1]["stages_ms"]}
    return {
        "mode": first["mode"],
        "fallback": first["fallback"],
        "frames": frames,
        "fps": frames / elapsed,
        "faces": len(samples[-1]["faces"]),
        "frame_ms_p50": statistics.median(s["latency_ms"] for s in samples),
        "stages_ms_p50": stages,
        "sampled_frames": len(samples),
    }


def run(url: str, chromium: str, camera: Path, seconds: float, threads: int | None) -> dict:
    from playwright.sync_api import sync_playwright

    results: dict = {"camera": f"{TARGET_SIZE[0]}x{TARGET_SIZE[1]} at {CAMERA_FPS} frames/s"}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-video-capture={camera}"],
        )
        try:
            for mode in ("device", "server"):
                query = f"mode={mode}" + (f"&threads={threads}" if threads and mode == "device" else "")
                context = browser.new_context(viewport={"width": 1280, "height": 860})
                context.grant_permissions(["camera"], origin=url)
                results[mode] = measure(context.new_page(), url, query, seconds)
                context.close()
        finally:
            browser.close()
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=None, help="a running service; default: start one on loopback")
    ap.add_argument("--seconds", type=float, default=15.0, help="measured time per mode")
    ap.add_argument("--chromium", default=os.environ.get("MASKLITE_CHROMIUM", "/usr/bin/chromium"))
    ap.add_argument("--scenes-dir", type=Path, default=None, help="default: $MASKLITE_SCENES_DIR")
    ap.add_argument("--threads", type=int, default=None, help="WebAssembly threads (page's ?threads=)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    directory = scenes_dir(args.scenes_dir)
    if directory is None:
        ap.error("no scenes: set MASKLITE_SCENES_DIR or --scenes-dir")
    target = make_target_image(load_scenes(directory))
    with tempfile.TemporaryDirectory(prefix="masklite-bench-device-") as tmp:
        camera = Path(tmp) / "camera.y4m"
        write_y4m(target.data, camera)
        if args.url:
            results = run(args.url.rstrip("/"), args.chromium, camera, args.seconds, args.threads)
        else:
            with start_server({"MASKLITE_WORKERS": "1"}, log_dir=Path(tmp)) as server:
                results = run(server.url, args.chromium, camera, args.seconds, args.threads)
    results["loadavg_1min"] = os.getloadavg()[0]
    load = results["loadavg_1min"]
    print(f"camera page, headless Chromium, fake camera {results['camera']}; load average {load:.2f}")
    for mode in ("device", "server"):
        r = results[mode]
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["stages_ms_p50"].items())
        note = f" (fell back: {r['fallback']})" if r["fallback"] else ""
        print(
            f"  {mode:6s} mode: {r['fps']:5.1f} frames/s, {r['faces']} faces, "
            f"frame {r['frame_ms_p50']:.1f} ms; median ms per stage: {stages}{note}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
