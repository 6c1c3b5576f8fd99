"""YuNet on its engines: LiteRT (the service's), onnxruntime when it is installed, against OpenCV's
FaceDetectorYN. Real networks on real scenes: the shipped derived files in LiteRT / onnxruntime, the
upstream file in OpenCV; and `load_detector`, the one way every caller gets one.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from masklite.card import ChecksumError, load_card
from masklite.faces import (
    DETECT_MAX_SIDE,
    ENGINES,
    STRIDES,
    YuNet,
    decode,
    load_detector,
    match_boxes,
    padded_size,
    postprocess,
)
from masklite.image import decode_image
from tests.conftest import SceneSample


@pytest.fixture(scope="module")
def card(models_dir: Path):
    return load_card(models_dir)


HAVE_ORT = importlib.util.find_spec("onnxruntime") is not None
RUNTIMES = [
    "litert",
    pytest.param(
        "onnxruntime",
        marks=pytest.mark.skipif(not HAVE_ORT, reason="onnxruntime not installed (optional extra `onnx`)"),
    ),
]


def _new_detector(card, models_dir: Path, runtime: str) -> YuNet:
    det = load_detector(card.detector, models_dir, runtime=runtime)
    assert det.runtime == runtime and det.model_path.name == card.detector.runtime_files[runtime].file
    return det


@pytest.fixture(scope="module", params=RUNTIMES)
def new_detector(request, card, models_dir: Path) -> YuNet:
    return _new_detector(card, models_dir, request.param)


@pytest.fixture(scope="module")
def onnx_detector(card, models_dir: Path) -> YuNet:
    """The service's default runtime (the card's: litert)."""
    return _new_detector(card, models_dir, card.detector.runtime)


@pytest.fixture(scope="module")
def opencv_detector(card, models_dir: Path, detector_path: Path) -> YuNet:
    return load_detector(card.detector, models_dir, runtime="opencv", path=detector_path)


def test_same_faces_as_opencv_on_the_scenes(
    scene_samples: list[SceneSample], new_detector: YuNet, opencv_detector: YuNet
) -> None:
    """Boxes IoU >= 0.9 for >= 95 % of OpenCV's faces, same scores (same decoding), five landmarks each."""
    cv2.setNumThreads(1)
    total = matched = 0
    score_diffs: list[float] = []
    for s in scene_samples:
        rgb = decode_image(s.data)
        old, new = opencv_detector.detect(rgb), new_detector.detect(rgb)
        pairs = match_boxes([f.box for f in old], [f.box for f in new], 0.9)
        total += len(old)
        matched += len(pairs)
        score_diffs += [abs(old[i].score - new[j].score) for i, j in pairs]
        for i, j in pairs:
            assert len(new[j].landmarks) == 5
            np.testing.assert_allclose(new[j].landmarks, old[i].landmarks, atol=0.5)
    assert total > 100, "the scenes should hold well over 100 detected faces"
    assert matched / total >= 0.95, f"only {matched}/{total} OpenCV faces matched at IoU >= 0.9"
    # same decoding, so float rounding only: <= 7e-7 measured with the locked OpenCV (requirements/dev.txt;
    # it was unpinned before). 1e-3 leaves 1000x that; a changed decode in a new OpenCV moves scores by 1e-2
    # and more, and arrives only with a deliberate re-lock, where this test should stop it
    assert max(score_diffs) < 1e-3, f"scores differ by up to {max(score_diffs):.4f}"


def test_detect_size_shrinks_never_enlarges(scene_samples: list[SceneSample], onnx_detector) -> None:
    s = max(scene_samples, key=lambda s: len(s.faces))
    rgb = decode_image(s.data)
    full = onnx_detector.detect(rgb, max_side=max(rgb.shape[:2]))
    huge = onnx_detector.detect(rgb, max_side=4 * max(rgb.shape[:2]))  # no upscaling: same faces
    assert [f.box for f in huge] == [f.box for f in full]
    small = onnx_detector.detect(rgb, max_side=160)
    assert len(small) < len(full)


@pytest.mark.skipif(not HAVE_ORT, reason="onnxruntime not installed (optional extra `onnx`)")
def test_litert_maps_equal_onnxruntime_outputs_at_any_size(models_dir: Path, card) -> None:
    """One .tflite for every input size: its maps equal the dynamic ONNX graph's outputs (resized per size,
    interpreters kept per size)."""
    lite = ENGINES["litert"](models_dir / card.detector.runtime_files["litert"].file)
    onnx = ENGINES["onnxruntime"](models_dir / card.detector.runtime_files["onnxruntime"].file)
    rng = np.random.default_rng(0)
    for h, w in [(480, 640), (640, 480), (352, 640), (96, 160), (864, 1280), (480, 640), (33, 31)]:
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        (a, aw, ah), (b, bw, bh) = lite(rgb), onnx(rgb)
        assert (aw, ah) == (bw, bh) == padded_size(w, h)
        for name in a:
            np.testing.assert_allclose(a[name].reshape(-1), b[name].reshape(-1), atol=1e-4, err_msg=name)


@pytest.mark.parametrize(
    "shape",
    [(1, 1, 3), (2, 1, 3), (3, 5000, 3), (4000, 3, 3), (31, 33, 3), (32, 32, 3)],
    ids=["1x1", "1x2", "5000x3 strip", "3x4000 strip", "33x31", "32x32"],
)
def test_tiny_and_extreme_images_give_no_faces_and_no_error(onnx_detector, shape) -> None:
    rgb = np.full(shape, 128, dtype=np.uint8)
    assert onnx_detector.detect(rgb) == []


def test_face_cut_by_the_border_is_clipped_to_the_image(
    scene_samples: list[SceneSample], onnx_detector
) -> None:
    """Shift a scene so its biggest face is half outside: the box it gives stays inside the image."""
    s = max(scene_samples, key=lambda s: max(f.box[2] for f in s.faces))
    rgb = decode_image(s.data)
    x, y, w, h = max((f.box for f in s.faces), key=lambda b: b[2])
    cut = np.ascontiguousarray(rgb[:, x + w // 3 :])  # the left third of the face is gone
    faces = onnx_detector.detect(cut)
    assert faces, "the cut face should still be found"
    height, width = cut.shape[:2]
    for f in faces:
        fx, fy, fw, fh = f.box
        assert fx >= 0 and fy >= 0 and fx + fw <= width and fy + fh <= height
    assert any(f.box[0] == 0 for f in faces), "the cut face's box should start at the left border"


# ---------------------------------------------------------------- decoding units (synthetic outputs)


def _outputs(pad_w: int, pad_h: int) -> dict[str, np.ndarray]:
    out = {}
    for s in STRIDES:
        n = (pad_w // s) * (pad_h // s)
        out[f"cls_{s}"] = np.zeros((1, n, 1), np.float32)
        out[f"obj_{s}"] = np.zeros((1, n, 1), np.float32)
        out[f"bbox_{s}"] = np.zeros((1, n, 4), np.float32)
        out[f"kps_{s}"] = np.zeros((1, n, 10), np.float32)
    return out


def test_decode_no_faces() -> None:
    rows = postprocess(_outputs(64, 32), 64, 32, 0.6, 0.3)
    assert rows.shape == (0, 15)


def test_decode_one_anchor_exactly() -> None:
    """Row 1, col 2 at stride 16 of a 64x32 input: centre ((2, 1) + (dx, dy)) * 16, size exp(d) * 16."""
    out = _outputs(64, 32)
    idx = 1 * (64 // 16) + 2
    out["cls_16"][0, idx, 0], out["obj_16"][0, idx, 0] = 0.81, 1.5  # obj clipped to 1 -> score 0.9
    out["bbox_16"][0, idx] = [0.5, 0.25, np.log(2.0), 0.0]
    out["kps_16"][0, idx] = np.arange(10, dtype=np.float32) / 10
    rows = postprocess(out, 64, 32, 0.6, 0.3)
    assert rows.shape == (1, 15)
    cx, cy, w, h = 2.5 * 16, 1.25 * 16, 32.0, 16.0
    np.testing.assert_allclose(rows[0, :4], [cx - w / 2, cy - h / 2, w, h], rtol=1e-6)
    kx = (np.arange(0, 10, 2) / 10 + 2) * 16
    ky = (np.arange(1, 10, 2) / 10 + 1) * 16
    np.testing.assert_allclose(rows[0, 4:14:2], kx, rtol=1e-6)
    np.testing.assert_allclose(rows[0, 5:14:2], ky, rtol=1e-6)
    assert rows[0, 14] == pytest.approx(0.9)


def test_decode_extreme_aspect_ratio_and_border_anchor() -> None:
    """A 2048x32 input (one row of stride-32 anchors); a face in the last column runs off the edge."""
    pad_w, pad_h = padded_size(2040, 3)
    assert (pad_w, pad_h) == (2048, 32)
    out = _outputs(pad_w, pad_h)
    last = pad_w // 32 - 1
    out["cls_32"][0, last, 0] = out["obj_32"][0, last, 0] = 1.0
    out["bbox_32"][0, last] = [0.9, 0.5, np.log(3.0), np.log(2.0)]
    rows = decode(out, pad_w, pad_h, 0.6)
    assert len(rows) == 1
    x, y, w, h = rows[0, :4]
    assert x + w > pad_w and y < 0  # off the edges: FaceDetector clips it to the image


def _reference_nms(boxes: np.ndarray, scores: np.ndarray, score_threshold: float, nms_threshold: float):
    """The NMS masklite used to carry (FaceDetectorYN's rules on int-truncated boxes), kept here as the
    reference that cv2.dnn.NMSBoxes, which replaced it, must equal."""
    order = np.flatnonzero(scores > score_threshold)
    order = order[np.argsort(-scores[order], kind="stable")]
    b = np.trunc(boxes[order]).astype(np.int64)
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    area = np.maximum(b[:, 2], 0) * np.maximum(b[:, 3], 0)
    alive, kept = np.ones(order.size, bool), []
    for i in range(order.size):
        if not alive[i]:
            continue
        kept.append(i)
        rest = np.flatnonzero(alive[i + 1 :]) + i + 1
        iw = np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest])
        ih = np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest])
        inter = np.where((iw > 0) & (ih > 0), iw * ih, 0)
        union = area[i] + area[rest] - inter
        alive[rest[np.where(union > 0, inter / np.maximum(union, 1), 0.0) > nms_threshold]] = False
    return order[np.asarray(kept, dtype=np.int64)]


def test_nms_keeps_the_same_boxes_as_before_on_the_scenes(
    scene_samples: list[SceneSample], card, models_dir: Path
) -> None:
    """cv2.dnn.NMSBoxes (postprocess) against the former own NMS, on every real scene's candidates at the
    service's detector size and at 320: the same rows, in the same order."""
    engine = ENGINES["litert"](models_dir / card.detector.runtime_files["litert"].file)
    score_t, nms_t = card.detector.score_threshold, card.detector.nms_threshold
    candidates = suppressed = 0
    for s in scene_samples:
        rgb = decode_image(s.data)
        for side in (DETECT_MAX_SIDE, 320):
            scale = min(1.0, side / max(rgb.shape[:2]))
            size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
            outputs, pad_w, pad_h = engine(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))
            rows = decode(outputs, pad_w, pad_h, score_t)
            ours = postprocess(outputs, pad_w, pad_h, score_t, nms_t)
            expected = (
                rows if len(rows) <= 1 else rows[_reference_nms(rows[:, :4], rows[:, 14], score_t, nms_t)]
            )
            np.testing.assert_array_equal(ours, expected, err_msg=f"{s.name} at {side}")
            candidates += len(rows)
            suppressed += len(rows) - len(ours)
    assert candidates > 1000 and suppressed > 500, (candidates, suppressed)


# ---------------------------------------------------------------- which file each runtime loads


def test_load_detector_picks_each_runtimes_file(
    card, models_dir: Path, detector_path: Path, tmp_path: Path
) -> None:
    twin = models_dir / card.detector.runtime_files["litert"].file
    # the upstream file (fixed 640x640) stands for its derived twins; OpenCV takes it as is
    lite = load_detector(card.detector, models_dir, path=detector_path)
    assert (lite.runtime, lite.model_path) == ("litert", twin)
    assert lite.files is not None and lite.files.source == detector_path and lite.files.sha256_ok is True
    cv = load_detector(card.detector, models_dir, runtime="opencv", path=detector_path)
    assert (cv.runtime, cv.model_path) == ("opencv", detector_path)
    copy = lite.for_thread(2)
    assert (copy.model_path, copy.runtime, copy.num_threads, copy.files) == (twin, "litert", 2, lite.files)
    with pytest.raises(FileNotFoundError):
        load_detector(card.detector, models_dir, path=tmp_path / "absent.onnx")
    # another file than the card's is refused (its sha256), and a file that is not YuNet's maps too
    other = tmp_path / "other.tflite"
    other.write_bytes(b"not yunet")
    with pytest.raises(ChecksumError):
        load_detector(card.detector, models_dir, path=other)
    with pytest.raises(ValueError):
        YuNet(other, "litert")
    # a twin that does not match the card is refused
    bad_dir = tmp_path / "models"
    bad_dir.mkdir()
    shutil.copyfile(twin, bad_dir / twin.name)
    with open(bad_dir / twin.name, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ChecksumError):
        load_detector(card.detector, bad_dir)
    with pytest.raises(ValueError, match="unknown detector runtime"):
        load_detector(card.detector, models_dir, runtime="tensorrt")
