"""The new YuNet paths (masklite.yunet + faces.YuNetDetector on LiteRT, and on onnxruntime when it is
installed) against OpenCV's FaceDetectorYN. Real networks on real scenes: the shipped derived files in
LiteRT / onnxruntime, the upstream file in OpenCV.
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
    STRIDES,
    FaceDetector,
    YuNetDetector,
    decode,
    make_detector,
    match_boxes,
    nms,
    padded_size,
    postprocess,
    resolve_detector_file,
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


def _new_detector(card, models_dir: Path, runtime: str) -> YuNetDetector:
    path = resolve_detector_file(card.detector, runtime, models_dir)
    det = make_detector(runtime, path, card.detector.score_threshold, card.detector.nms_threshold)
    assert isinstance(det, YuNetDetector) and det.runtime == runtime
    return det


@pytest.fixture(scope="module", params=RUNTIMES)
def new_detector(request, card, models_dir: Path) -> YuNetDetector:
    return _new_detector(card, models_dir, request.param)


@pytest.fixture(scope="module")
def onnx_detector(card, models_dir: Path) -> YuNetDetector:
    """The service's default runtime (the card's: litert)."""
    return _new_detector(card, models_dir, card.detector.runtime)


@pytest.fixture(scope="module")
def opencv_detector(card, detector_path: Path) -> FaceDetector:
    return FaceDetector(detector_path, card.detector.score_threshold, card.detector.nms_threshold)


def test_same_faces_as_opencv_on_the_scenes(
    scene_samples: list[SceneSample], new_detector: YuNetDetector, opencv_detector: FaceDetector
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
    from masklite.faces import ENGINES

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


def test_nms_matches_opencv() -> None:
    """Random overlapping boxes: the same survivors, in the same order, as cv2.dnn.NMSBoxes."""
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(1, 200))
        xy = rng.uniform(0, 300, (n, 2))
        wh = rng.uniform(5, 80, (n, 2))
        boxes = np.concatenate([xy, wh], axis=1).astype(np.float32)
        scores = rng.uniform(0.5, 1.0, n).astype(np.float32)
        scores[: n // 4] = scores[n // 4 : 2 * (n // 4)]  # ties keep their input order (stable sort)
        ours = nms(boxes, scores, 0.6, 0.3)
        rects = [tuple(int(v) for v in b) for b in boxes]
        theirs = np.asarray(cv2.dnn.NMSBoxes(rects, scores.tolist(), 0.6, 0.3)).reshape(-1)
        assert ours.tolist() == theirs.tolist(), f"trial {trial}"


def test_nms_of_nothing() -> None:
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.6, 0.3).size == 0
    assert nms(np.ones((3, 4), np.float32), np.full(3, 0.1, np.float32), 0.6, 0.3).size == 0


# ---------------------------------------------------------------- which file each runtime loads


def test_resolve_detector_file(card, models_dir: Path, detector_path: Path, tmp_path: Path) -> None:
    twin = models_dir / card.detector.runtime_files["litert"].file
    # the upstream file (fixed 640x640) stands for its derived twins; OpenCV takes it as is
    assert resolve_detector_file(card.detector, "litert", models_dir, detector_path) == twin
    onnx_twin = models_dir / card.detector.runtime_files["onnxruntime"].file
    assert resolve_detector_file(card.detector, "onnxruntime", models_dir, detector_path) == onnx_twin
    assert resolve_detector_file(card.detector, "opencv", models_dir, detector_path) == detector_path
    with pytest.raises(FileNotFoundError):
        resolve_detector_file(card.detector, "litert", models_dir, tmp_path / "absent.onnx")
    # another graph given explicitly is used as it is
    other = tmp_path / "other.tflite"
    other.write_bytes(b"not yunet")
    assert resolve_detector_file(card.detector, "litert", models_dir, other) == other
    with pytest.raises(ValueError):  # and refused at load: not YuNet's maps
        make_detector("litert", other)
    # a twin that does not match the card is refused
    bad_dir = tmp_path / "models"
    bad_dir.mkdir()
    shutil.copyfile(twin, bad_dir / twin.name)
    with open(bad_dir / twin.name, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ChecksumError):
        resolve_detector_file(card.detector, "litert", bad_dir)
    with pytest.raises(ValueError, match="unknown detector runtime"):
        make_detector("tensorrt", twin)
