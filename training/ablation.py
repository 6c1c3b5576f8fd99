"""What each step buys: head-only variants on the cached features, scored on every cross-source part.

Each variant trains the card's head (same config, same seeds) on a subset of the cached training views;
all are scored at the argmax (threshold 0.5) so that the threshold choice is a step of its own.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from training.config import HeadConfig
from training.crosssource import choose_threshold, decide, recall_block
from training.features import VIEW_KINDS, load_split
from training.head import train_head

# name -> (training sources: "all" or just the original folder, view kinds used)
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "A. round 1: chandrikadeb7, plain augmentation": ("chandrikadeb7", ("clean", "plain")),
    "B. + cross-source training faces": ("all", ("clean", "plain")),
    "C. + degradation of both classes": ("all", ("clean", "plain", "degraded")),
    "D. + synthetic paired masks (shipped head)": ("all", ("clean", "plain", "degraded", "masked")),
}
EVAL_PARTS = ("xval", "xtest")


def select(train: dict[str, np.ndarray], sources: str, kinds: tuple[str, ...]) -> np.ndarray:
    keep = np.isin(train["kind"], [VIEW_KINDS.index(k) for k in kinds])
    if sources != "all":
        keep &= train["source"] == sources
    return keep


def score_parts(
    predict, parts: dict[str, dict[str, np.ndarray]], label_names: list[str], threshold: float, min_face: int
) -> dict:
    """{part: {source | "pooled": recall block}} for a `predict(X) -> p_mask` function."""
    out: dict = {}
    for part, data in parts.items():
        p_mask = predict(data["X"])
        pred = decide(p_mask, data["size"], threshold, min_face)
        block = {"pooled": recall_block(data["y"], pred, label_names)}
        for source in sorted(set(data["source"])):
            sel = data["source"] == source
            block[source] = recall_block(data["y"][sel], pred[sel], label_names)
        out[part] = block
    return out


def run_ablation(
    work: Path, label_names: list[str], head_cfg: HeadConfig, seeds: int = 3, progress: bool = True
) -> dict:
    features = work / "features"
    train = load_split(features, "train")
    parts = {p: load_split(features, p) for p in EVAL_PARTS if (features / f"{p}.npz").is_file()}
    val = parts.get("xval") or load_split(features, "val")
    rows = []
    for name, (sources, kinds) in tqdm(VARIANTS.items(), desc="ablation", disable=not progress):
        keep = select(train, sources, kinds)
        runs, tuned = [], []
        for seed in range(seeds):
            head, _ = train_head(
                train["X"][keep],
                train["y"][keep],
                val["X"],
                val["y"],
                len(label_names),
                replace(head_cfg, seed=seed),
            )
            predict = lambda x, h=head: np.asarray(h.predict(x, batch_size=1024, verbose=0))[:, 0]  # noqa: E731
            runs.append(score_parts(predict, parts, label_names, 0.5, 0))
            if "xval" in parts:
                t = choose_threshold(parts["xval"]["y"], predict(parts["xval"]["X"]))["threshold"]
                tuned.append(score_parts(predict, parts, label_names, t, 0) | {"threshold": t})
        rows.append(
            {
                "variant": name,
                "train_views": int(keep.sum()),
                "seeds": seeds,
                "runs": runs,
                "runs_xval_threshold": tuned,
            }
        )
    return {"variants": rows, "head": vars(head_cfg), "threshold": 0.5, "min_face_size": 0}


def mean_sd(rows: list[dict], part: str, source: str, metric: str) -> tuple[float, float]:
    """Mean and sd over seeds of one metric ('balanced_accuracy' or a class name's recall)."""
    values = []
    for run in rows:
        block = run[part].get(source)
        if block is None or (metric != "balanced_accuracy" and metric not in block["per_class"]):
            continue
        values.append(
            block["balanced_accuracy"]
            if metric == "balanced_accuracy"
            else block["per_class"][metric]["recall"]
        )
    return (float(np.mean(values)), float(np.std(values))) if values else (float("nan"), float("nan"))
