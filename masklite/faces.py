"""Face detection and the face crop that training and serving share: find the faces, cut them out.

YuNet runs on OpenCV (`FaceDetector`, the baseline) or, with our own decoding below, on LiteRT at the
image's own aspect ratio (`YuNetDetector`, the service's default; a graph cut before the heads' fixed
reshapes) or onnxruntime (optional).

The decoding copies OpenCV's FaceDetectorYN (modules/objdetect/src/face_detect.cpp) so the scores, and the
card's score/NMS thresholds, mean the same on every path:
  - input: BGR float, raw 0..255, zero-padded at the bottom/right to a multiple of 32;
  - per stride s in (8, 16, 32), anchor (row r, col c): score = sqrt(clip(cls) * clip(obj)),
    centre = ((c, r) + (dx, dy)) * s, size = exp(dw, dh) * s, landmark k = ((c, r) + (kx, ky)) * s;
  - keep score >= threshold, then cv2.dnn.NMSBoxes on int-truncated boxes (score > threshold,
    stable sort by score, suppress IoU > nms_threshold), at most top_k faces.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from masklite.card import DETECTOR_NMS_THRESHOLD, DETECTOR_SCORE_THRESHOLD, ChecksumError, DetectorSpec
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
class Detection:
    """One face the detector found (service/schemas.py's `Face` is the API's answer for a face)."""

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
        score_threshold: float = DETECTOR_SCORE_THRESHOLD,
        nms_threshold: float = DETECTOR_NMS_THRESHOLD,
        max_side: int = DETECT_MAX_SIDE,
        num_threads: int = 1,
    ):
        self.model_path = str(model_path)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_side = max_side
        self.num_threads = num_threads  # LiteRT / onnxruntime; OpenCV's pool is process-wide (setNumThreads)
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

    def detect(self, rgb: np.ndarray, min_face: int = 0, max_side: int | None = None) -> list[Detection]:
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

    def _detect_scaled(self, rgb: np.ndarray, pad: float, max_side: int) -> list[Detection]:
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
                faces.append(Detection(box=box, score=float(row[-1]), landmarks=points))
        return faces


# --- YuNet decoding and runtimes (LiteRT, onnxruntime) -------------------------------------------------

STRIDES = (8, 16, 32)
DIVISOR = 32
TOP_K = 5000  # FaceDetectorYN's default
# one row per face, as cv2.FaceDetectorYN.detect returns them: x, y, w, h, 5 x (x, y) landmarks, score
ROW_WIDTH = 15
# the network's outputs, in the graph's order; channels per anchor: 1, 1, 4 (box), 10 (landmarks)
HEAD_NAMES = tuple(f"{kind}_{stride}" for kind in ("cls", "obj", "bbox", "kps") for stride in STRIDES)
HEAD_CHANNELS = (1, 1, 1, 1, 1, 1, 4, 4, 4, 10, 10, 10)
# LiteRT interpreters kept per detector, one per padded input size: re-planning one for a new size costs
# about an inference, and a camera or an app sends the same size again and again (landscape + portrait:
# 2). Each holds its own activations (~35 MB at 640x480), so few are kept.
LITERT_SIZES_KEPT = 2


def padded_size(width: int, height: int) -> tuple[int, int]:
    """The network input size for an image: each side rounded up to a multiple of 32."""
    return (width - 1) // DIVISOR * DIVISOR + DIVISOR, (height - 1) // DIVISOR * DIVISOR + DIVISOR


def make_blob(rgb: np.ndarray, pad_width: int, pad_height: int) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> (1, 3, pad_h, pad_w) float32 BGR, zeros outside the image."""
    height, width = rgb.shape[:2]
    blob = np.zeros((1, 3, pad_height, pad_width), dtype=np.float32)
    blob[0, :, :height, :width] = rgb[:, :, ::-1].transpose(2, 0, 1)
    return blob


def decode(
    outputs: Mapping[str, np.ndarray], pad_width: int, pad_height: int, score_threshold: float
) -> np.ndarray:
    """YuNet's 12 output tensors -> (N, 15) float32 candidate rows (before NMS), in stride/row/col order.

    Each output is (1, rows*cols, C) (the upstream graph) or (1, rows, cols, C) (the LiteRT maps): the same
    numbers in the same order."""
    rows = []
    for stride in STRIDES:
        cols = pad_width // stride
        n = cols * (pad_height // stride)
        cls = np.clip(outputs[f"cls_{stride}"].reshape(-1)[:n], 0.0, 1.0)
        obj = np.clip(outputs[f"obj_{stride}"].reshape(-1)[:n], 0.0, 1.0)
        score = np.sqrt(cls * obj)
        idx = np.flatnonzero(score >= score_threshold)
        if idx.size == 0:
            continue
        bbox = outputs[f"bbox_{stride}"].reshape(-1, 4)[idx]
        kps = outputs[f"kps_{stride}"].reshape(-1, 10)[idx]
        grid = np.stack([idx % cols, idx // cols], axis=1).astype(np.float32)  # (c, r)
        centre = (grid + bbox[:, :2]) * stride
        size = np.exp(bbox[:, 2:]) * stride
        out = np.empty((idx.size, ROW_WIDTH), dtype=np.float32)
        out[:, 0:2] = centre - size / 2.0
        out[:, 2:4] = size
        out[:, 4:14] = (kps.reshape(-1, 5, 2) + grid[:, None, :]).reshape(-1, 10) * stride
        out[:, 14] = score[idx]
        rows.append(out)
    if not rows:
        return np.zeros((0, ROW_WIDTH), dtype=np.float32)
    return np.concatenate(rows)


def nms(
    boxes: np.ndarray, scores: np.ndarray, score_threshold: float, nms_threshold: float, top_k: int = TOP_K
) -> np.ndarray:
    """cv2.dnn.NMSBoxes for integer rectangles: indices kept, best first.

    `boxes` are (N, 4) x, y, w, h; like OpenCV's Rect2i they are truncated toward zero first.
    """
    keep_mask = scores > score_threshold
    order = np.flatnonzero(keep_mask)
    order = order[np.argsort(-scores[order], kind="stable")][:top_k] if top_k > 0 else order
    if order.size == 0:
        return order
    b = np.trunc(boxes[order]).astype(np.int64)
    x0, y0, w, h = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    x1, y1 = x0 + w, y0 + h
    area = np.maximum(w, 0) * np.maximum(h, 0)
    kept: list[int] = []
    alive = np.ones(order.size, dtype=bool)
    for i in range(order.size):
        if not alive[i]:
            continue
        kept.append(i)
        rest = np.flatnonzero(alive[i + 1 :]) + i + 1
        if rest.size == 0:
            break
        iw = np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest])
        ih = np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest])
        inter = np.where((iw > 0) & (ih > 0), iw * ih, 0)
        union = area[i] + area[rest] - inter
        overlap = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        alive[rest[overlap > nms_threshold]] = False
    return order[np.asarray(kept, dtype=np.int64)]


def postprocess(
    outputs: Mapping[str, np.ndarray],
    pad_width: int,
    pad_height: int,
    score_threshold: float,
    nms_threshold: float,
    top_k: int = TOP_K,
) -> np.ndarray:
    """Decode + NMS: (N, 15) float32 rows, best first (FaceDetectorYN.detect's output)."""
    rows = decode(outputs, pad_width, pad_height, score_threshold)
    if len(rows) <= 1:  # OpenCV skips NMS for a single candidate as well
        return rows
    return rows[nms(rows[:, :4], rows[:, 14], score_threshold, nms_threshold, top_k)]


class OnnxYuNet:
    """The YuNet graph in onnxruntime, 1 intra-op thread, any input size (a graph with symbolic H x W).

    Not thread-safe in the service's sense: one instance per inference thread, like the classifiers.
    """

    def __init__(self, model_path: Path | str, num_threads: int = 1):
        # onnxruntime's Linux wheels carry a telemetry client that, unless this is set before the import,
        # writes a session file into $TMPDIR at import time (a service writes nothing it was not asked to)
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
        import onnxruntime as ort  # imported here: the OpenCV baseline must work without it

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = num_threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._names = [o.name for o in self._session.get_outputs()]
        missing = {f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in STRIDES} - set(self._names)
        if missing:
            raise ValueError(f"{model_path}: not a YuNet graph, outputs {sorted(missing)} missing")
        shape = self._session.get_inputs()[0].shape
        # a fixed 640x640 graph (the upstream file) only runs at that size: say so at load time
        self.fixed_size = (shape[3], shape[2]) if all(isinstance(d, int) for d in shape[2:]) else None

    def __call__(self, rgb: np.ndarray) -> tuple[dict[str, np.ndarray], int, int]:
        height, width = rgb.shape[:2]
        pad_w, pad_h = self.fixed_size or padded_size(width, height)
        if width > pad_w or height > pad_h:
            raise ValueError(f"image {width}x{height} exceeds the graph's fixed input {pad_w}x{pad_h}")
        outs = self._session.run(self._names, {self._input: make_blob(rgb, pad_w, pad_h)})
        return dict(zip(self._names, outs, strict=True)), pad_w, pad_h


class LiteRtYuNet:
    """The YuNet graph in LiteRT (XNNPACK), any input size: the heads' conv maps are the outputs
    (tools/convert_yunet.py tflite), so `resize_tensor_input` works. One interpreter per padded size, the
    last LITERT_SIZES_KEPT kept. Not thread-safe: one instance per inference thread."""

    def __init__(self, model_path: Path | str, num_threads: int = 1):
        self._content = Path(model_path).read_bytes()
        self._threads = num_threads
        self._kept: OrderedDict[tuple[int, int], tuple[Any, int, list[int]]] = OrderedDict()
        self._interpreter(DIVISOR, DIVISOR)  # fail at load time on a file that is not YuNet's maps

    def _interpreter(self, pad_w: int, pad_h: int) -> tuple[Any, int, list[int]]:
        key = (pad_w, pad_h)
        if key in self._kept:
            self._kept.move_to_end(key)
            return self._kept[key]
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_content=self._content, num_threads=self._threads)
        inp = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(inp["index"], [1, pad_h, pad_w, 3])
        interpreter.allocate_tensors()
        outs = _head_outputs(interpreter)
        channels = tuple(int(o["shape"][-1]) for o in outs)
        if channels != HEAD_CHANNELS:
            raise ValueError(f"not YuNet's head maps: output channels {channels}, expected {HEAD_CHANNELS}")
        entry = (interpreter, inp["index"], [o["index"] for o in outs])
        self._kept[key] = entry
        if len(self._kept) > LITERT_SIZES_KEPT:
            self._kept.popitem(last=False)
        return entry

    def __call__(self, rgb: np.ndarray) -> tuple[dict[str, np.ndarray], int, int]:
        height, width = rgb.shape[:2]
        pad_w, pad_h = padded_size(width, height)
        interpreter, index, outputs = self._interpreter(pad_w, pad_h)
        # Written straight into the input tensor (no float copy of the frame, no set_tensor copy): NHWC,
        # BGR, raw 0..255, zeros in the padding. cvtColor + a casting copy is ~6x cheaper than a reversed
        # numpy view. The view is dropped before invoke, as LiteRT requires.
        x = interpreter.tensor(index)()
        np.copyto(x[0, :height, :width], cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), casting="unsafe")
        x[0, height:] = 0
        x[0, :height, width:] = 0
        del x
        interpreter.invoke()
        return {n: interpreter.get_tensor(i) for n, i in zip(HEAD_NAMES, outputs, strict=True)}, pad_w, pad_h


def _head_outputs(interpreter: Any) -> list[dict]:
    """The twelve head maps in HEAD_NAMES order. A converter may list a graph's outputs in any order; its
    serving signature keeps the source graph's order as output_0 ... output_11, so read that when present."""
    signature = interpreter.get_signature_list().get("serving_default", {}).get("outputs", [])
    if sorted(signature) != sorted(f"output_{k}" for k in range(len(HEAD_NAMES))):
        return interpreter.get_output_details()
    details = interpreter.get_signature_runner("serving_default").get_output_details()
    return [details[f"output_{k}"] for k in range(len(HEAD_NAMES))]


# runtime name -> the engine that runs the network (`masklite.faces` picks by the card's detector.runtime)
ENGINES: dict[str, type] = {"litert": LiteRtYuNet, "onnxruntime": OnnxYuNet}


class YuNetDetector(FaceDetector):
    """The same YuNet network in LiteRT at the image's own aspect ratio (one .tflite for every input size),
    with our numpy decoding and NMS (above: OpenCV's post-processing, so the same scores)."""

    runtime = "litert"

    def _load(self) -> None:
        self._net = ENGINES[self.runtime](self.model_path, num_threads=self.num_threads)

    def _rows(self, rgb: np.ndarray) -> np.ndarray | None:
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
    score_threshold: float = DETECTOR_SCORE_THRESHOLD,
    nms_threshold: float = DETECTOR_NMS_THRESHOLD,
    max_side: int = DETECT_MAX_SIDE,
    num_threads: int = 1,
) -> FaceDetector:
    """A detector for one runtime name (the card's `detector.runtime`, or a setting)."""
    try:
        cls = DETECTOR_RUNTIMES[runtime]
    except KeyError:
        known = sorted(DETECTOR_RUNTIMES)
        raise ValueError(f"unknown detector runtime {runtime!r}; known: {known}") from None
    return cls(model_path, score_threshold, nms_threshold, max_side, num_threads)


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
