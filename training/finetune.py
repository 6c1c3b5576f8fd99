"""`finetune`: the upper MobileNetV2 blocks (13-16 and Conv_1) and the head, trained together.

The frozen ImageNet features separate the training folder perfectly but read small, soft, real-camera
faces poorly. Fine-tuning the upper blocks fixes much of that at little cost, because the lower blocks
(two thirds of the FLOPs) stay frozen: their output (8x8x96 at 128 px) is computed once per cached
training view, and only the small top runs forward and backward. BatchNorm stays in inference mode
(its statistics are ImageNet's), the head starts from the head-only stage's weights.

Writes <work>/finetune/{backbone.weights.h5, head.keras, history.json, finetune.json}; `export` uses them
when present (training.artifacts.composed_model). TensorFlow is imported inside the functions that run it,
so that importing training stays light (the CLI's `--help`, tests without TensorFlow).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from masklite.classifier import normalize
from masklite.files import staged_dir
from training.artifacts import FINETUNE_DIR, crops_path, load_crops, load_features_meta, load_train_views
from training.features import build_backbone, input_spec, load_split
from training.head import seed_everything

CUT_LAYER = "block_12_add"  # everything above it is fine-tuned


@dataclass
class FinetuneConfig:
    epochs: int = 4
    learning_rate: float = 2e-4
    batch_size: int = 64
    seed: int = 0


def split_backbone(backbone):
    """(lower, top) sub-models of a pooled MobileNetV2 at CUT_LAYER; `top` shares the backbone's layers,
    so training it updates the backbone in place."""
    import keras

    cut = backbone.get_layer(CUT_LAYER).output
    lower = keras.Model(backbone.input, cut, name="lower")
    top = keras.Model(cut, backbone.output, name="top")
    return lower, top


def _set_trainable(backbone) -> None:
    import keras

    backbone.trainable = True
    names = [layer.name for layer in backbone.layers]
    first = names.index(CUT_LAYER) + 1
    for i, layer in enumerate(backbone.layers):
        # BatchNormalization frozen everywhere: with trainable=False Keras runs it in inference mode
        layer.trainable = i >= first and not isinstance(layer, keras.layers.BatchNormalization)


def lower_activations(lower, crops: np.ndarray, spec, batch: int = 128, progress: bool = True) -> np.ndarray:
    """Frozen lower-block outputs (N, 8, 8, 96) of uint8 crops at input size, as float16."""
    import tensorflow as tf

    fn = tf.function(lambda x: lower(x, training=False), reduce_retracing=True)
    out = []
    for i in tqdm(range(0, len(crops), batch), desc="lower blocks", disable=not progress, unit="batch"):
        out.append(np.asarray(fn(normalize(crops[i : i + batch], spec))).astype(np.float16))
    return np.concatenate(out)


def finetune(work: Path, weights: str, cfg: FinetuneConfig, progress: bool = True) -> dict:
    import keras
    import tensorflow as tf

    meta = load_features_meta(work)
    size = int(meta["config"]["input_size"])
    spec = input_spec(size)
    seed_everything(cfg.seed)
    backbone = build_backbone(size, meta["config"]["alpha"], weights)
    lower, top = split_backbone(backbone)
    head = keras.models.load_model(work / "train" / "head.keras")

    train = load_split(work / "features", "train")
    mid = lower_activations(lower, load_train_views(work), spec, progress=progress)
    val_name = "xval" if crops_path(work, "xval").is_file() else "val"
    val_crops, val_y, _ = load_crops(work, val_name)
    val_mid = lower_activations(lower, val_crops, spec, progress=False)

    _set_trainable(backbone)
    inputs = keras.Input(mid.shape[1:], name="mid")
    model = keras.Model(inputs, head(top(inputs, training=False)), name="finetune")
    model.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    y = train["y"]
    counts = np.bincount(y, minlength=2)
    class_weight = {c: len(y) / (2 * max(1, n)) for c, n in enumerate(counts)}
    t0 = time.perf_counter()
    data = tf.data.Dataset.from_tensor_slices((mid, keras.utils.to_categorical(y, 2)))
    data = (
        data.shuffle(len(y), seed=cfg.seed)
        .batch(cfg.batch_size)
        .map(lambda a, b: (tf.cast(a, tf.float32), b))
    )
    history = model.fit(
        data,
        validation_data=(val_mid.astype(np.float32), keras.utils.to_categorical(val_y, 2)),
        epochs=cfg.epochs,
        class_weight=class_weight,
        verbose=2 if progress else 0,
    )
    seconds = time.perf_counter() - t0
    with staged_dir(work / FINETUNE_DIR) as tmp:
        backbone.save_weights(tmp / "backbone.weights.h5")
        head.save(tmp / "head.keras")
        hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        (tmp / "history.json").write_text(json.dumps(hist, indent=1) + "\n")
        info = {
            "config": asdict(cfg),
            "cut_layer": CUT_LAYER,
            "trainable_params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
            "train_views": int(len(y)),
            "validation": val_name,
            "seconds": round(seconds, 1),
            "final": {k: v[-1] for k, v in hist.items()},
        }
        (tmp / "finetune.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
