"""Scoring on faces from other sources: per-class recall with 95 % intervals, coverage, face-size bins,
the decision threshold and the smallest judgeable face (chosen on xval), and the error gallery.

A face answered `unknown` (smaller than the card's `min_face_size`) counts as wrong everywhere here;
coverage (the share of faces judged) is reported beside every recall.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

SIZE_BINS = ((0, 24), (24, 48), (48, 96), (96, 1 << 30))
SIZE_BIN_NAMES = ("<24", "24-48", "48-96", ">=96")
# finer bins below 48 px, to find the smallest face the model can judge
SMALL_EDGES = (0, 12, 16, 20, 24, 32, 48)
MIN_JUDGEABLE_BALANCED = 0.90  # a face size is judgeable when xval balanced accuracy there reaches this
PROBE_SIZES = (6, 8, 10, 12, 14, 16, 20, 24, 32)
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)
PLATEAU = 0.0025  # balanced-accuracy points treated as a tie when choosing the threshold


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (95 % by default)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def decide(p_mask: np.ndarray, sizes: np.ndarray, threshold: float, min_face: int) -> np.ndarray:
    """Label per face as the service answers it: 0 with_mask, 1 without_mask, -1 unknown (too small)."""
    labels = np.where(np.asarray(p_mask) >= threshold, 0, 1)
    return np.where(np.asarray(sizes) < min_face, -1, labels)


def recall_block(y: np.ndarray, pred: np.ndarray, label_names: list[str]) -> dict:
    """Per-class recall with Wilson 95 % CI, coverage, balanced accuracy; unknown (-1) is wrong."""
    out: dict = {"n": int(len(y)), "per_class": {}}
    recalls = []
    for k, name in enumerate(label_names):
        sel = y == k
        n, right = int(sel.sum()), int((pred[sel] == k).sum())
        if n == 0:
            continue
        lo, hi = wilson(right, n)
        out["per_class"][name] = {
            "n": n,
            "recall": right / n,
            "ci95": [round(lo, 4), round(hi, 4)],
            "coverage": float((pred[sel] != -1).mean()),
        }
        recalls.append(right / n)
    out["balanced_accuracy"] = float(np.mean(recalls)) if recalls else float("nan")
    out["accuracy"] = float((pred == y).mean()) if len(y) else float("nan")
    out["coverage"] = float((pred != -1).mean()) if len(y) else float("nan")
    return out


def by_size(y: np.ndarray, pred: np.ndarray, sizes: np.ndarray, label_names: list[str]) -> dict:
    return {
        name: recall_block(y[sel], pred[sel], label_names)
        for name, (lo, hi) in zip(SIZE_BIN_NAMES, SIZE_BINS, strict=True)
        if (sel := (sizes >= lo) & (sizes < hi)).any()
    }


def choose_threshold(y: np.ndarray, p_mask: np.ndarray) -> dict:
    """The mask-probability threshold: the middle of the plateau of near-best balanced accuracy (within
    PLATEAU of the best), so that one or two validation faces do not push it to an edge."""
    scores = []
    for t in THRESHOLD_GRID:
        pred = np.where(p_mask >= t, 0, 1)
        recalls = [float((pred[y == k] == k).mean()) for k in (0, 1) if (y == k).any()]
        scores.append(float(np.mean(recalls)))
    scores_arr = np.array(scores)
    near = THRESHOLD_GRID[scores_arr >= scores_arr.max() - PLATEAU]
    pick = float(np.round(np.median(near), 2))
    at = lambda t: float(scores_arr[int(np.argmin(np.abs(THRESHOLD_GRID - t)))])  # noqa: E731
    return {
        "threshold": pick,
        "balanced_accuracy": at(pick),
        "balanced_accuracy_best": float(scores_arr.max()),
        "balanced_accuracy_at_0.5": at(0.5),
        "plateau": [float(near.min()), float(near.max())],
        "rule": (
            f"median of the thresholds (grid 0.05..0.95, step 0.01) whose pooled-xval balanced accuracy is "
            f"within {PLATEAU * 100:.2f} pt of the best"
        ),
    }


def shrink_to_face_size(crops: np.ndarray, face_px: int, margin: float) -> np.ndarray:
    """Crops at input size as they would look if the face's side were `face_px` in the original image:
    down to that scale (area), back up (linear), the way a small face reaches the model."""
    side = crops.shape[1]
    small = max(2, round(side * face_px / (side / (1 + 2 * margin))))
    out = np.empty_like(crops)
    for i, c in enumerate(crops):
        tiny = cv2.resize(c, (small, small), interpolation=cv2.INTER_AREA)
        out[i] = cv2.resize(tiny, (side, side), interpolation=cv2.INTER_LINEAR)
    return out


def choose_min_face(
    y: np.ndarray, crops: np.ndarray, p_mask_of, threshold: float, margin: float, sizes: np.ndarray
) -> dict:
    """The smallest face the model can judge. Real small faces in the validation data are all unmasked
    (WIDER), so real per-size recall cannot show whether a small *masked* face is recognised: every xval
    face (both classes, real masks) is shrunk to each candidate size and scored. The smallest judgeable
    size is the lowest candidate from which every larger one reaches MIN_JUDGEABLE_BALANCED."""
    probe = []
    for px in PROBE_SIZES:
        pred = np.where(p_mask_of(shrink_to_face_size(crops, px, margin)) >= threshold, 0, 1)
        recalls = {str(k): float((pred[y == k] == k).mean()) for k in (0, 1) if (y == k).any()}
        probe.append({"face_px": px, "recall": recalls, "balanced": float(np.mean(list(recalls.values())))})
    min_face = PROBE_SIZES[-1]
    for row in reversed(probe):
        if row["balanced"] < MIN_JUDGEABLE_BALANCED:
            break
        min_face = row["face_px"]
    pred = np.where(p_mask_of(crops) >= threshold, 0, 1)
    real = []
    for lo, hi in zip(SMALL_EDGES, (*SMALL_EDGES[1:], 1 << 30), strict=True):
        sel = (sizes >= lo) & (sizes < hi)
        recalls = {
            str(k): float((pred[sel & (y == k)] == k).mean()) for k in (0, 1) if (sel & (y == k)).any()
        }
        counts = {str(k): int((sel & (y == k)).sum()) for k in (0, 1)}
        real.append({"from": lo, "to": hi if hi < 1 << 30 else None, "counts": counts, "recall": recalls})
    return {
        "min_face_size": int(min_face),
        "probe": probe,
        "real_bands": real,
        "rule": (
            f"smallest face size from which every larger probe size keeps balanced accuracy >= "
            f"{MIN_JUDGEABLE_BALANCED} on the xval faces shrunk to that size (real small xval faces are all "
            "unmasked, so they cannot show it)"
        ),
    }


def gallery(
    crops: np.ndarray,
    y: np.ndarray,
    p_mask: np.ndarray,
    captions: list[str],
    label_names: list[str],
    threshold: float,
    path: Path,
    count: int = 32,
    tile: int = 112,
) -> list[int]:
    """PNG grid of the most confident mistakes (largest distance past the threshold). Returns indices."""
    pred = np.where(p_mask >= threshold, 0, 1)
    wrong = np.flatnonzero(pred != y)
    margin = np.abs(p_mask[wrong] - threshold)
    worst = wrong[np.argsort(-margin)][:count]
    cols = 8
    rows = max(1, math.ceil(len(worst) / cols))
    sheet = np.full((rows * (tile + 30), cols * tile, 3), 255, np.uint8)
    for k, i in enumerate(worst):
        r, c = divmod(k, cols)
        img = cv2.resize(crops[i], (tile, tile), interpolation=cv2.INTER_NEAREST)
        y0, x0 = r * (tile + 30), c * tile
        sheet[y0 : y0 + tile, x0 : x0 + tile] = img
        truth = "mask" if y[i] == 0 else "no mask"
        text = [f"true {truth} p={p_mask[i]:.2f}", captions[i][:18]]
        for line, t in enumerate(text):
            cv2.putText(
                sheet,
                t,
                (x0 + 2, y0 + tile + 12 + 12 * line),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.33,
                (0, 0, 0),
                1,
                cv2.LINE_AA,
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return [int(i) for i in worst]
