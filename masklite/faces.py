"""Face detection and the face crop that training and serving share: find the faces, cut them out.

`YuNet` is the one detector: the scaling, the close-up retry and the mapping back to image pixels, over an
engine that runs the network (`ENGINES`, the one registry): LiteRT (the service's default, at the image's
own aspect ratio: a graph cut before the heads' fixed reshapes), onnxruntime (optional), or OpenCV's
FaceDetectorYN on the upstream `.onnx` (the baseline). `load_detector` is the one way to get one from the
card: resolve the file, check its sha256, pick the runtime's file, build.

The LiteRT / onnxruntime decoding copies OpenCV's FaceDetectorYN (modules/objdetect/src/face_detect.cpp) so
the scores, and the card's score/NMS thresholds, mean the same on every engine:
  - input: BGR float, raw 0..255, zero-padded at the bottom/right to a multiple of 32;
  - per stride s in (8, 16, 32), anchor (row r, col c): score = sqrt(clip(cls) * clip(obj)),
    centre = ((c, r) + (dx, dy)) * s, size = exp(dw, dh) * s, landmark k = ((c, r) + (kx, ky)) * s;
  - keep score >= threshold, then cv2.dnn.NMSBoxes on int-truncated boxes (score > threshold,
    stable sort by score, suppress IoU > nms_threshold), at most top_k faces.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from masklite.card import DETECTOR_NMS_THRESHOLD, DETECTOR_SCORE_THRESHOLD, ChecksumError, DetectorSpec
from masklite.paths import DEFAULT_MODELS_DIR, YUNET_SHA256, resolve_detector_path, sha256_file

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


# --- the engines: what runs the network -------------------------------------------------------------

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
    # OpenCV's own NMS on the int-truncated boxes FaceDetectorYN uses (Rect2i): the same survivors in the
    # same order (tests/masklite/test_yunet.py checks every box on the real scenes)
    boxes = np.trunc(rows[:, :4]).astype(np.int32).tolist()
    keep = cv2.dnn.NMSBoxes(boxes, rows[:, 14].tolist(), score_threshold, nms_threshold, top_k=top_k)
    return rows[np.asarray(keep, dtype=np.int64).reshape(-1)]


class Engine(Protocol):
    """Runs YuNet on an RGB image: (N, 15) rows (x, y, w, h, 5 landmarks, score) in the image's pixels,
    after the score threshold and NMS. Not thread-safe: one engine (one YuNet) per thread."""

    def __init__(self, model_path: Path | str, num_threads: int = 1) -> None: ...

    def rows(self, rgb: np.ndarray, score_threshold: float, nms_threshold: float) -> np.ndarray: ...


class OpenCvEngine:
    """OpenCV's FaceDetectorYN on the upstream `.onnx`: its own decoding and NMS (the baseline).
    OpenCV's thread pool is process-wide (cv2.setNumThreads), so `num_threads` is not used."""

    def __init__(self, model_path: Path | str, num_threads: int = 1):
        self._net = cv2.FaceDetectorYN.create(
            str(model_path), "", (320, 320), DETECTOR_SCORE_THRESHOLD, DETECTOR_NMS_THRESHOLD
        )

    def rows(self, rgb: np.ndarray, score_threshold: float, nms_threshold: float) -> np.ndarray:
        self._net.setScoreThreshold(score_threshold)
        self._net.setNMSThreshold(nms_threshold)
        self._net.setInputSize((rgb.shape[1], rgb.shape[0]))
        _, rows = self._net.detect(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        return rows if rows is not None else np.zeros((0, ROW_WIDTH), np.float32)


class _HeadMapsEngine:
    """An engine that gives YuNet's twelve head maps (`__call__`); our decoding + NMS make the rows."""

    def __call__(self, rgb: np.ndarray) -> tuple[dict[str, np.ndarray], int, int]:
        raise NotImplementedError

    def rows(self, rgb: np.ndarray, score_threshold: float, nms_threshold: float) -> np.ndarray:
        outputs, pad_w, pad_h = self(rgb)
        return postprocess(outputs, pad_w, pad_h, score_threshold, nms_threshold)


class OnnxEngine(_HeadMapsEngine):
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


class LiteRtEngine(_HeadMapsEngine):
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


# the one registry: runtime name (the card's detector.runtime, MASKLITE_DETECTOR_RUNTIME) -> its engine
ENGINES: dict[str, type[Engine]] = {"litert": LiteRtEngine, "onnxruntime": OnnxEngine, "opencv": OpenCvEngine}


# --- the detector ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectorFiles:
    """Where a loaded detector came from: the card's `.onnx` (or the one given), and what the runtime runs."""

    source: Path  # the upstream .onnx (explicit path, $MASKLITE_DETECTOR_PATH or the card's file)
    model: Path  # the file the engine loads (source itself for OpenCV, else the card's derived file)
    sha256_ok: bool | None  # source against the card's sha256; None when the card has none


class YuNet:
    """The YuNet face detector over one engine. Not thread-safe: one instance per thread (`for_thread`)."""

    def __init__(
        self,
        model_path: Path | str,
        runtime: str = "litert",
        score_threshold: float = DETECTOR_SCORE_THRESHOLD,
        nms_threshold: float = DETECTOR_NMS_THRESHOLD,
        max_side: int = DETECT_MAX_SIDE,
        num_threads: int = 1,
        files: DetectorFiles | None = None,
    ):
        if runtime not in ENGINES:
            raise ValueError(f"unknown detector runtime {runtime!r}; known: {sorted(ENGINES)}")
        self.model_path, self.runtime = Path(model_path), runtime
        self.score_threshold, self.nms_threshold = score_threshold, nms_threshold
        self.max_side, self.num_threads = max_side, num_threads
        self.files = files
        self.engine: Engine = ENGINES[runtime](model_path, num_threads=num_threads)

    def for_thread(self, num_threads: int = 1) -> YuNet:
        """Another instance of this detector (same file, runtime and settings) for another thread."""
        return YuNet(
            self.model_path,
            self.runtime,
            self.score_threshold,
            self.nms_threshold,
            self.max_side,
            num_threads,
            self.files,
        )

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
        faces = []
        for row in self.engine.rows(rgb, self.score_threshold, self.nms_threshold):
            x, y, w, h = (float(v) / scale for v in row[:4])
            x, y = x - px, y - py
            box = _clip_box(x, y, w, h, width, height)
            if box is not None:
                points = tuple(
                    (float(row[4 + 2 * k]) / scale - px, float(row[5 + 2 * k]) / scale - py) for k in range(5)
                )
                faces.append(Detection(box=box, score=float(row[-1]), landmarks=points))
        return faces


def load_detector(
    spec: DetectorSpec,
    models_dir: Path = DEFAULT_MODELS_DIR,
    *,
    runtime: str | None = None,
    path: Path | str | None = None,
    score_threshold: float | None = None,
    max_side: int = DETECT_MAX_SIDE,
    num_threads: int = 1,
    accept_other: bool = False,
) -> YuNet:
    """The card's detector, as every caller loads it (service, check, benchmarks, training).

    1. the `.onnx`: `path`, else $MASKLITE_DETECTOR_PATH, else the card's file in models_dir (else models/);
    2. its sha256 against the card's (else the shipped YuNet's): a mismatch raises ChecksumError, unless
       `accept_other`, which runs that file as it is on OpenCV (the only engine that takes any `.onnx`);
    3. the runtime's file (`runtime`, default the card's): litert / onnxruntime load the file the card
       derives from that `.onnx` for them (`runtime_files`, in models_dir else models/, sha256-checked);
    4. the YuNet over that engine, with the card's thresholds (`score_threshold` overrides the card's).
    """
    runtime = runtime or spec.runtime
    source = resolve_detector_path(path, models_dir, spec.file)
    actual = sha256_file(source)
    sha256_ok = actual == spec.sha256 if spec.sha256 else None
    # The runtime files derive from one .onnx (the card's, else the shipped YuNet): they never stand in for
    # another file given by path, even under a card that names no sha256 (a training run's spec).
    expected = spec.sha256 or YUNET_SHA256
    if actual != expected:
        if not accept_other:
            raise ChecksumError(
                f"{source.name}: sha256 {actual[:12]}… does not match the card's detector ({expected[:12]}…)"
            )
        runtime = "opencv"
    model = _runtime_file(spec, runtime, models_dir, source)
    return YuNet(
        model,
        runtime,
        spec.score_threshold if score_threshold is None else score_threshold,
        spec.nms_threshold,
        max_side,
        num_threads,
        DetectorFiles(source, model, sha256_ok),
    )


def _runtime_file(spec: DetectorSpec, runtime: str, models_dir: Path, source: Path) -> Path:
    """The file a runtime loads: OpenCV takes the `.onnx`; the others the card's derived file for them."""
    derived = spec.runtime_files.get(runtime)
    if runtime == "opencv" or derived is None:
        return source
    twin = next(
        (d / derived.file for d in (models_dir, DEFAULT_MODELS_DIR) if (d / derived.file).is_file()),
        models_dir / derived.file,
    )
    if not twin.is_file():
        raise FileNotFoundError(f"face detector for {runtime} missing: {derived.file}")
    if sha256_file(twin) != derived.sha256:
        raise ChecksumError(f"{twin.name}: sha256 does not match the card's detector.runtime_files")
    return twin


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


def match_boxes(
    truth: Sequence[Box], found: Sequence[Box], threshold: float, overlap: Callable[[Box, Box], float] = iou
) -> list[tuple[int, int]]:
    """Greedy one-to-one matching, best pairs first, none scoring under `threshold`: [(truth index, found
    index)]. `overlap` scores a pair: IoU unless the caller measures overlap its own way."""
    scored = ((overlap(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found))
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
