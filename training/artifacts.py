"""The work folder as the later stages read it: the feature cache's meta and clean crops, the trained model.

`features`, `train` and `finetune` write these files; `export`, `evaluate`, the micro model and the studies
read them through here, so each reader finds them the same way and fails with the same message.
Keras is imported inside `composed_model` only: importing training must not load TensorFlow (the CLI's
`--help`, and the tests that run without it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from masklite.classifier import normalize
from training.config import FeatureConfig
from training.export import compose, representative_indices
from training.features import build_backbone, input_spec

FINETUNE_DIR = "finetune"
REPRESENTATIVE_SAMPLES = 200


def load_features_meta(work: Path) -> dict:
    path = work / "features" / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `python -m training features` first")
    return json.loads(path.read_text())


def feature_config(work: Path) -> FeatureConfig:
    """The FeatureConfig the cached features were made with (JSON lists back to tuples)."""
    cfg = load_features_meta(work)["config"]
    return FeatureConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})


def crops_path(work: Path, split: str) -> Path:
    """The clean crops of a split (or cross-source part); absent for a part the build did not have."""
    return work / "features" / f"crops_{split}.npz"


def load_crops(work: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The clean uint8 face crops of a split at input size: (crops, label ids, table rows)."""
    with np.load(crops_path(work, split)) as z:
        return z["crops"], z["y"], z["row"]


def load_train_views(work: Path) -> np.ndarray:
    """Every train view (clean, plain, degraded, synthetic-mask) as uint8 crops at input size, memory-mapped:
    the rows of the train split's features, in order."""
    return np.load(work / "features" / "views_train.npy", mmap_mode="r")


def finetune_info(work: Path) -> dict | None:
    """finetune.json of the fine-tuning stage, or None when it did not run (the head-only model ships)."""
    path = work / FINETUNE_DIR / "finetune.json"
    return json.loads(path.read_text()) if path.is_file() else None


def composed_model(work: Path, weights: str | None):
    """Backbone (+ ImageNet weights) and the trained head as one Keras model on normalised images; the
    fine-tuned upper blocks and head replace them when that stage ran. Returns (model, features meta)."""
    import keras  # lazy: see the module docstring

    meta = load_features_meta(work)
    size = int(meta["config"]["input_size"])
    head_path = work / "train" / "head.keras"
    if not head_path.is_file():
        raise FileNotFoundError(f"{head_path} not found: run `python -m training train` first")
    backbone = build_backbone(size, meta["config"]["alpha"], weights)
    tuned = work / FINETUNE_DIR
    if (tuned / "head.keras").is_file():
        backbone.load_weights(tuned / "backbone.weights.h5")
        head_path = tuned / "head.keras"
    head = keras.models.load_model(head_path)
    return compose(backbone, head, size), meta


def representative_batch(
    work: Path, meta: dict, n: int = REPRESENTATIVE_SAMPLES, seed: int = 0
) -> np.ndarray:
    """`n` clean train crops, class-balanced and seeded, normalised: the int8 calibration data."""
    crops, y, _ = load_crops(work, "train")
    idx = representative_indices(y, n, seed)
    return normalize(crops[idx], input_spec(int(meta["config"]["input_size"])))
