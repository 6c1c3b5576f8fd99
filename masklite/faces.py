"""Face detection (YuNet on OpenCV or onnxruntime) and the face crop that training and serving share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from masklite.card import ChecksumError, DetectorSpec
from masklite.paths import DEFAULT_MODELS_DIR, resolve_detector_path, sha256_file

# YuNet is fastest and most accurate on frames of a few hundred pixels; bigger images are shrunk first.
DETECT_MAX_SIDE = 640
# A face that fills the whole frame (a selfie, a tight dataset crop) is often missed: retry on the
# image surrounded by this much replicated border.
CLOSEUP_PAD = 0.3


# YuNet's five landmarks, in this order: right eye, left eye, nose tip, right and left mouth corner
# (right/left as the person sees it, so the "right eye" is on the image's left).
LANDMARK_NAMES = ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left")
Landmarks = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # x, y, w, h in original-image pixels
    score: float
    landmarks: Landmarks = ()  # five (x, y) points in original-image pixels, LANDMARK_NAMES order


class FaceDetector:
    """YuNet through OpenCV's FaceDetectorYN: the baseline path. Not thread-safe: one instance per thread.

    Subclasses swap how the network runs (`_load`, `_rows`); the scaling, the close-up retry and the
    mapping back to image pixels are shared, so every runtime returns faces the same way.
    """

    runtime = "opencv"

    def __init__(
        self,
        model_path: Path | str,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        max_side: int = DETECT_MAX_SIDE,
    ):
        self.model_path = str(model_path)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_side = max_side
        self._load()

    def _load(self) -> None:
        self._net = cv2.FaceDetectorYN.create(
            self.model_path, "", (320, 320), self.score_threshold, self.nms_threshold
        )

    def _rows(self, rgb: np.ndarray) -> np.ndarray | None:
        """(N, 15) rows as FaceDetectorYN.detect gives them (x, y, w, h, 5 landmarks, score), or None."""
        self._net.setInputSize((rgb.shape[1], rgb.shape[0]))
        _, rows = self._net.detect(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        return rows

    def detect(self, rgb: np.ndarray, min_face: int = 0, max_side: int | None = None) -> list[Face]:
        """Faces in an RGB image, best first; retries with a border when nothing is found.

        `max_side`: the detector input's longer side (default: this detector's); images are only ever
        shrunk to it, never enlarged.
        """
        side = max_side or self.max_side
        faces = self._detect_scaled(rgb, 0.0, side)
        if not faces:
            faces = self._detect_scaled(rgb, CLOSEUP_PAD, side)
        faces = [f for f in faces if min(f.box[2], f.box[3]) >= min_face]
        return sorted(faces, key=lambda f: f.score, reverse=True)

    def _detect_scaled(self, rgb: np.ndarray, pad: float, max_side: int) -> list[Face]:
        height, width = rgb.shape[:2]
        px, py = int(round(width * pad)), int(round(height * pad))
        if pad:
            rgb = cv2.copyMakeBorder(rgb, py, py, px, px, cv2.BORDER_REPLICATE)
        scale = min(1.0, max_side / max(rgb.shape[:2]))
        if scale < 1.0:
            # explicit size, at least 1 px: a 5000x1 strip would otherwise round to an empty image
            size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        rows = self._rows(rgb)
        if rows is None:
            return []
        faces = []
        for row in rows:
            x, y, w, h = (float(v) / scale for v in row[:4])
            x, y = x - px, y - py
            box = _clip_box(x, y, w, h, width, height)
            if box is not None:
                points = tuple(
                    (float(row[4 + 2 * k]) / scale - px, float(row[5 + 2 * k]) / scale - py) for k in range(5)
                )
                faces.append(Face(box=box, score=float(row[-1]), landmarks=points))
        return faces


class YuNetDetector(FaceDetector):
    """The same YuNet network in LiteRT at the image's own aspect ratio (one .tflite for every input size),
    with our numpy decoding and NMS (masklite.yunet: OpenCV's post-processing, so the same scores)."""

    runtime = "litert"

    def _load(self) -> None:
        from masklite.yunet import ENGINES  # onnxruntime is imported only when that runtime is used

        self._net = ENGINES[self.runtime](self.model_path, num_threads=1)

    def _rows(self, rgb: np.ndarray) -> np.ndarray | None:
        from masklite.yunet import postprocess

        outputs, pad_w, pad_h = self._net(rgb)
        rows = postprocess(outputs, pad_w, pad_h, self.score_threshold, self.nms_threshold)
        return rows if len(rows) else None


class OnnxYuNetDetector(YuNetDetector):
    """YuNetDetector on onnxruntime (optional extra `onnx`), from the symbolic-size .onnx."""

    runtime = "onnxruntime"


def resolve_detector_file(
    spec: DetectorSpec, runtime: str, models_dir: Path, explicit: Path | str | None = None
) -> Path:
    """The YuNet file a runtime loads.

    opencv: the `.onnx` (explicit path, $MASKLITE_DETECTOR_PATH, else the card's file in models_dir).
    litert / onnxruntime: the card's file derived from that `.onnx` for the runtime (`runtime_files`), in
    models_dir (else the shipped models/), checked against its sha256. A `.onnx` that is not the card's
    (another sha256) has no derived file: it is returned as it is.
    """
    upstream = resolve_detector_path(explicit, models_dir, spec.file)
    derived = spec.runtime_files.get(runtime)
    if runtime == "opencv" or derived is None:
        return upstream
    if spec.sha256 and sha256_file(upstream) != spec.sha256:
        return upstream
    twin = next(
        (d / derived.file for d in (models_dir, DEFAULT_MODELS_DIR) if (d / derived.file).is_file()),
        models_dir / derived.file,
    )
    if not twin.is_file():
        raise FileNotFoundError(f"face detector for {runtime} missing: {derived.file}")
    if sha256_file(twin) != derived.sha256:
        raise ChecksumError(f"{twin.name}: sha256 does not match the card's detector.runtime_files")
    return twin


DETECTOR_RUNTIMES: dict[str, type[FaceDetector]] = {
    "opencv": FaceDetector,
    "litert": YuNetDetector,
    "onnxruntime": OnnxYuNetDetector,
}


def make_detector(
    runtime: str,
    model_path: Path | str,
    score_threshold: float = 0.6,
    nms_threshold: float = 0.3,
    max_side: int = DETECT_MAX_SIDE,
) -> FaceDetector:
    """A detector for one runtime name (the card's `detector.runtime`, or a setting)."""
    try:
        cls = DETECTOR_RUNTIMES[runtime]
    except KeyError:
        known = sorted(DETECTOR_RUNTIMES)
        raise ValueError(f"unknown detector runtime {runtime!r}; known: {known}") from None
    return cls(model_path, score_threshold, nms_threshold, max_side)


Box = tuple[int, int, int, int]


def _clip_box(x: float, y: float, w: float, h: float, width: int, height: int) -> Box | None:
    x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
    x1, y1 = min(width, int(round(x + w))), min(height, int(round(y + h)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return x0, y0, x1 - x0, y1 - y0


def scale_box(
    box: tuple[int, int, int, int], sx: float, sy: float, width: int, height: int
) -> tuple[int, int, int, int]:
    """A box from the reduced image in full-size pixels, clipped to the image."""
    x0, y0 = int(round(box[0] * sx)), int(round(box[1] * sy))
    x1, y1 = int(round((box[0] + box[2]) * sx)), int(round((box[1] + box[3]) * sy))
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    return x0, y0, max(1, x1 - x0), max(1, y1 - y0)


def crop_box(box: Box, margin: float, width: int, height: int) -> Box:
    """The square region around a face box, grown by `margin` of its longer side on each side, clipped."""
    x, y, w, h = box
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    x0, y0 = max(0, int(round(cx - side / 2))), max(0, int(round(cy - side / 2)))
    x1, y1 = min(width, int(round(cx + side / 2))), min(height, int(round(cy + side / 2)))
    return x0, y0, max(1, x1 - x0), max(1, y1 - y0)


def crop_face(rgb: np.ndarray, box: tuple[int, int, int, int], margin: float) -> np.ndarray:
    x, y, w, h = crop_box(box, margin, rgb.shape[1], rgb.shape[0])
    return rgb[y : y + h, x : x + w]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two [x, y, w, h] boxes."""
    iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def match_boxes(truth: Sequence[Box], found: Sequence[Box], threshold: float) -> list[tuple[int, int]]:
    """Greedy one-to-one matching by IoU, best pairs first: [(truth index, found index)]."""
    scored = ((iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found))
    pairs = sorted(scored, reverse=True)
    used_t: set[int] = set()
    used_f: set[int] = set()
    out = []
    for score, i, j in pairs:
        if score < threshold:
            break
        if i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
            out.append((i, j))
    return out
