"""Camera-page test pieces shared by test_browser.py and test_device_mode.py: Chromium's fake-camera
flags, a still photo as a fake camera clip, and the checks of what the page shows."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from playwright.sync_api import Page

from tests.conftest import AnnotatedFace, SceneSample, iou, skip_or_fail
from tests.web.conftest import CHROMIUM_FLAGS

IOU_MATCH = 0.3
VIDEO_FPS = 10

FLAGS = [
    *CHROMIUM_FLAGS,
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]


def write_y4m(rgb: np.ndarray, path: Path, frames: int = VIDEO_FPS, fps: int = VIDEO_FPS) -> tuple[int, int]:
    """A still photo as a short 4:2:0 Y4M clip (Chromium loops it). Returns the frame (width, height)."""
    height, width = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2  # 4:2:0 needs even sides
    i420 = cv2.cvtColor(np.ascontiguousarray(rgb[:height, :width]), cv2.COLOR_RGB2YUV_I420)
    with open(path, "wb") as fh:
        fh.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            fh.write(b"FRAME\n")
            fh.write(i420.tobytes())
    return width, height


def check_found(shown: dict, sample: SceneSample) -> list[str]:
    """Each annotated face must be shown (a box with IoU >= 0.3 after scaling)."""
    sx, sy = shown["width"] / sample.width, shown["height"] / sample.height
    problems = []
    for ann in sample.faces:
        box = scale_box(ann, sx, sy)
        best = max((iou(box, tuple(f["box"])) for f in shown["faces"]), default=0.0)
        if best < IOU_MATCH:
            problems.append(f"{ann.label} face at {box} not shown (best IoU {best:.2f})")
    return problems


def scale_box(ann: AnnotatedFace, sx: float, sy: float) -> tuple[int, int, int, int]:
    x, y, w, h = ann.box
    return round(x * sx), round(y * sy), round(w * sx), round(h * sy)


def overlay_painted_pixels(page: Page) -> int:
    """How many overlay pixels are painted: boxes really drawn, not just listed."""
    return page.evaluate(
        """() => {
          const c = document.getElementById('overlay');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let n = 0;
          for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
          return n;
        }"""
    )


def scene(samples: list[SceneSample], name: str) -> SceneSample:
    """The named scene of the scenes sample (a missing one fails under CI)."""
    found = [s for s in samples if s.name == name]
    if not found:
        skip_or_fail(f"{name} not in the scenes sample")
    return found[0]
