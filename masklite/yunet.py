"""YuNet's post-processing in numpy, and the network run at each image's own aspect ratio by LiteRT (the
service's runtime; a graph cut before the heads' fixed reshapes) or onnxruntime (optional).

The decoding copies OpenCV's FaceDetectorYN (modules/objdetect/src/face_detect.cpp) so the scores, and the
card's score/NMS thresholds, mean the same on both paths:
  - input: BGR float, raw 0..255, zero-padded at the bottom/right to a multiple of 32;
  - per stride s in (8, 16, 32), anchor (row r, col c): score = sqrt(clip(cls) * clip(obj)),
    centre = ((c, r) + (dx, dy)) * s, size = exp(dw, dh) * s, landmark k = ((c, r) + (kx, ky)) * s;
  - keep score >= threshold, then cv2.dnn.NMSBoxes on int-truncated boxes (score > threshold,
    stable sort by score, suppress IoU > nms_threshold), at most top_k faces.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

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
        outs = interpreter.get_output_details()
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
        x = np.zeros((1, pad_h, pad_w, 3), dtype=np.float32)  # NHWC, BGR, zero padding
        x[0, :height, :width] = rgb[:, :, ::-1]
        interpreter.set_tensor(index, x)
        interpreter.invoke()
        return {n: interpreter.get_tensor(i) for n, i in zip(HEAD_NAMES, outputs, strict=True)}, pad_w, pad_h


# runtime name -> the engine that runs the network (`masklite.faces` picks by the card's detector.runtime)
ENGINES: dict[str, type] = {"litert": LiteRtYuNet, "onnxruntime": OnnxYuNet}
