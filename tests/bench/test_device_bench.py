"""bench/device.py: the fake camera clip it makes (Chromium plays it as the camera) and its arguments."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.device import CAMERA_FPS, main, write_y4m


def test_the_camera_clip_is_the_image_at_the_camera_rate(tmp_path: Path) -> None:
    rgb = np.zeros((480, 640, 3), np.uint8)
    rgb[100:200, 300:400] = (200, 30, 30)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    path = tmp_path / "camera.y4m"
    write_y4m(buf.getvalue(), path)
    data = path.read_bytes()
    header, _, rest = data.partition(b"\n")
    assert header == f"YUV4MPEG2 W640 H480 F{CAMERA_FPS}:1 Ip A1:1 C420jpeg".encode()
    frame = 640 * 480 * 3 // 2  # I420
    assert len(rest) == CAMERA_FPS * (len(b"FRAME\n") + frame)
    luma = np.frombuffer(rest[6 : 6 + 640 * 480], np.uint8).reshape(480, 640)
    assert luma[150, 350] > luma[10, 10] + 40  # the red square is brighter than the black background


def test_needs_the_scenes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MASKLITE_SCENES_DIR", raising=False)
    with pytest.raises(SystemExit):
        main([])
