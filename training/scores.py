"""Classification scores shared by evaluate, the micro runs and the studies: accuracy, balanced accuracy,
per-class report, confusion matrix, ROC AUC, calibration (no TensorFlow)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    balanced_accuracy_score,
    classification_report,
    confusion_matrix,
    roc_auc_score,
)


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> tuple[float, list[dict]]:
    """ECE of the top-class confidence over equal-width bins; also returns the reliability table."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece, table = 0.0, []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        if sel.any():
            gap = abs(float(correct[sel].mean()) - float(conf[sel].mean()))
            ece += gap * sel.mean()
            table.append(
                {
                    "lo": float(lo),
                    "hi": float(hi),
                    "count": int(sel.sum()),
                    "accuracy": float(correct[sel].mean()),
                    "confidence": float(conf[sel].mean()),
                }
            )
    return float(ece), table


def classification_metrics(probs: np.ndarray, y: np.ndarray, labels: list[str], positive: int = 0) -> dict:
    """accuracy, balanced accuracy, per-class report, confusion matrix, ROC AUC (positive class =
    `positive`, with_mask by default), ECE and the reliability table."""
    pred = probs.argmax(axis=1)
    ids = list(range(len(labels)))
    out: dict = {
        "n": int(len(y)),
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if len(set(y)) > 1 else float("nan"),
        "confusion_matrix": confusion_matrix(y, pred, labels=ids).tolist(),
        "report": classification_report(
            y, pred, labels=ids, target_names=labels, output_dict=True, zero_division=0
        ),
    }
    if len(set(y)) > 1:
        out["roc_auc"] = float(roc_auc_score((y == positive).astype(int), probs[:, positive]))
    out["ece"], out["reliability"] = expected_calibration_error(probs, y)
    return out


def summary(metrics: dict) -> dict:
    """The short form stored per split in the card (no nested report)."""
    keys = ("n", "accuracy", "balanced_accuracy", "roc_auc", "ece", "confusion_matrix")
    out = {k: metrics[k] for k in keys if k in metrics}
    out["per_class"] = {
        k: {m: round(float(v[m]), 4) for m in ("precision", "recall", "f1-score", "support")}
        for k, v in metrics.get("report", {}).items()
        if isinstance(v, dict) and k not in ("macro avg", "weighted avg")
    }
    return out
