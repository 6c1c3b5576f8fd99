"""device.js's pieces that must equal the server's, run in Node against the Python/OpenCV originals:
the resize (cv2.INTER_AREA shrinking, INTER_LINEAR enlarging), YuNet's decoding + NMS and the crop box."""

from __future__ import annotations

import json
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from masklite.faces import crop_box, postprocess
from tests.conftest import REPO_ROOT, skip_or_fail

DEVICE_JS = REPO_ROOT / "service" / "static" / "device.js"


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    if path is None:
        skip_or_fail("node missing: apt-get install nodejs")
    return str(path)


def run_js(node: str, body: str, payload: object) -> object:
    """Run `body` (ES module code) with `d` = device.js's exports and `input` = `payload`; its JSON output."""
    script = (
        f"import * as d from {json.dumps(DEVICE_JS.as_uri())};\n"
        "import { readFileSync } from 'node:fs';\n"
        "const input = JSON.parse(readFileSync(0, 'utf8'));\n" + body
    )
    out = subprocess.run(
        [node, "--input-type=module", "-e", script],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize(
    ("src", "dst"), [((71, 53), (40, 29)), ((640, 480), (128, 128)), ((61, 61), (128, 128))]
)
def test_resize_matches_opencv(node: str, src: tuple[int, int], dst: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (src[1], src[0], 4), dtype=np.uint8)
    got = run_js(
        node,
        "const data = Uint8ClampedArray.from(input.data);\n"
        "const frame = {data, width: input.w, height: input.h};\n"
        "const out = d.resizeRegion(frame, [0, 0, input.w, input.h], input.dw, input.dh);\n"
        "console.log(JSON.stringify(Array.from(out)));",
        {"data": rgba.reshape(-1).tolist(), "w": src[0], "h": src[1], "dw": dst[0], "dh": dst[1]},
    )
    shrinking = src[0] > dst[0] or src[1] > dst[1]
    ref = cv2.resize(rgba[..., :3], dst, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    diff = np.abs(np.asarray(got).reshape(dst[1], dst[0], 3) - ref.astype(int))
    # INTER_AREA: exact; INTER_LINEAR: OpenCV's 11-bit fixed-point weights round a few values the other way
    assert diff.max() <= (0 if shrinking else 1), diff.max()


def test_decode_and_nms_match_the_server(node: str) -> None:
    """Random YuNet head outputs with many overlapping candidates: the same rows, in the same order."""
    rng = np.random.default_rng(1)
    pad_w, pad_h = 160, 96
    outputs = {}
    for stride in (8, 16, 32):
        n = (pad_w // stride) * (pad_h // stride)
        outputs[f"cls_{stride}"] = rng.uniform(0.3, 1.0, (1, n, 1)).astype(np.float32)
        outputs[f"obj_{stride}"] = rng.uniform(0.3, 1.0, (1, n, 1)).astype(np.float32)
        outputs[f"bbox_{stride}"] = rng.uniform(-0.5, 1.5, (1, n, 4)).astype(np.float32)
        outputs[f"kps_{stride}"] = rng.uniform(-1, 1, (1, n, 10)).astype(np.float32)
    expected = postprocess(outputs, pad_w, pad_h, 0.6, 0.3)
    got = run_js(
        node,
        "const tensor = ([k, v]) => [k, {data: Float32Array.from(v)}];\n"
        "const outs = Object.fromEntries(Object.entries(input.outputs).map(tensor));\n"
        "const rows = d.decode(outs, input.w, input.h, 0.6);\n"
        "const kept = rows.length <= 1 ? rows : d.nms(rows, 0.6, 0.3);\n"
        "console.log(JSON.stringify(kept.map((r) => [r[0], r[1], r[2], r[3], r[14]])));",
        {"outputs": {k: v.reshape(-1).tolist() for k, v in outputs.items()}, "w": pad_w, "h": pad_h},
    )
    assert len(expected) > 3
    np.testing.assert_allclose(np.asarray(got), expected[:, [0, 1, 2, 3, 14]], rtol=1e-5, atol=1e-3)


def test_crop_box_matches_the_server(node: str) -> None:
    boxes = [[10, 20, 30, 40], [0, 0, 5, 9], [600, 400, 45, 70], [101, 55, 33, 33]]
    got = run_js(
        node,
        "console.log(JSON.stringify(input.boxes.map((b) => d.cropBox(b, 0.2, 640, 480))));",
        {"boxes": boxes},
    )
    assert got == [list(crop_box(tuple(b), 0.2, 640, 480)) for b in boxes]
