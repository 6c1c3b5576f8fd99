"""AIZOOTech's one-stage face-mask detector (MIT; WIDER FACE + MAFA): the public peer in the card's tables.

Decoding as `../shared/weights/README.md` documents it: 260x260 RGB / 255 input, 5,972 SSD anchors,
centre-size decoding with variances (0.1, 0.1, 0.2, 0.2), NMS on the best class probability.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from ai_edge_litert.interpreter import Interpreter

FEATURE_MAPS = (33, 17, 9, 5, 3)
ANCHOR_SIZES = ((0.04, 0.056), (0.08, 0.11), (0.16, 0.22), (0.32, 0.45), (0.64, 0.72))
RATIOS = (1.0, 0.62, 0.42)
VARIANCES = (0.1, 0.1, 0.2, 0.2)
LABELS = ("with_mask", "without_mask")  # the model's class 0 = Mask, 1 = NoMask
PEER_FILE = "aizoo_face_mask_detection_260.tflite"


def anchors() -> np.ndarray:
    """(5972, 4) anchors as (cx, cy, w, h), normalised, in the upstream order."""
    out = []
    for n, sizes in zip(FEATURE_MAPS, ANCHOR_SIZES, strict=True):
        shapes = [(s, 1.0) for s in sizes] + [(sizes[0], r) for r in RATIOS[1:]]
        for i in range(n):
            for j in range(n):
                cx, cy = (j + 0.5) / n, (i + 0.5) / n
                out += [(cx, cy, s * np.sqrt(r), s / np.sqrt(r)) for s, r in shapes]
    return np.asarray(out, np.float32)


@dataclass
class PeerFace:
    box: tuple[int, int, int, int]
    score: float
    label: str


class PeerDetector:
    def __init__(self, path: Path | str, conf: float = 0.5, iou: float = 0.4):
        self._interp = Interpreter(model_path=str(path), num_threads=1)
        self._interp.allocate_tensors()
        self._in = self._interp.get_input_details()[0]
        outs = self._interp.get_output_details()
        self._boxes = next(o for o in outs if o["shape"][-1] == 4)
        self._probs = next(o for o in outs if o["shape"][-1] == 2)
        self._anchors = anchors()
        self.conf, self.iou = conf, iou

    def detect(self, rgb: np.ndarray) -> list[PeerFace]:
        height, width = rgb.shape[:2]
        x = cv2.resize(rgb, (260, 260)).astype(np.float32)[None] / 255.0
        self._interp.set_tensor(self._in["index"], x)
        self._interp.invoke()
        deltas = self._interp.get_tensor(self._boxes["index"])[0]
        probs = self._interp.get_tensor(self._probs["index"])[0]
        a = self._anchors
        cx = deltas[:, 0] * VARIANCES[0] * a[:, 2] + a[:, 0]
        cy = deltas[:, 1] * VARIANCES[1] * a[:, 3] + a[:, 1]
        w = np.exp(deltas[:, 2] * VARIANCES[2]) * a[:, 2]
        h = np.exp(deltas[:, 3] * VARIANCES[3]) * a[:, 3]
        score, cls = probs.max(axis=1), probs.argmax(axis=1)
        keep = np.flatnonzero(score >= self.conf)
        boxes = [
            [
                float((cx[k] - w[k] / 2) * width),
                float((cy[k] - h[k] / 2) * height),
                float(w[k] * width),
                float(h[k] * height),
            ]
            for k in keep
        ]
        chosen = cv2.dnn.NMSBoxes(boxes, score[keep].tolist(), self.conf, self.iou) if boxes else []
        out = []
        for c in np.asarray(chosen).reshape(-1):
            x0, y0, bw, bh = boxes[int(c)]
            x1, y1 = min(width, x0 + bw), min(height, y0 + bh)
            x0, y0 = max(0.0, x0), max(0.0, y0)
            if x1 - x0 >= 2 and y1 - y0 >= 2:
                k = keep[int(c)]
                out.append(
                    PeerFace(
                        (round(x0), round(y0), round(x1 - x0), round(y1 - y0)),
                        float(score[k]),
                        LABELS[int(cls[k])],
                    )
                )
        return out
