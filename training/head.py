"""The dense head on pooled backbone features, trained in seconds on the cached vectors. TensorFlow is
imported inside the functions that run it, so that importing training stays light (`--help`, tests)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from training.config import HeadConfig


def seed_everything(seed: int) -> None:
    import keras
    import tensorflow as tf

    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
    keras.utils.set_random_seed(seed)


def build_head(input_dim: int, num_classes: int, cfg: HeadConfig, name: str = "head"):
    """`depth` Dense layers including the softmax output: depth-1 hidden ReLU layers of `width`
    units (each followed by dropout), then Dense(num_classes, softmax)."""
    import keras

    if cfg.depth < 1:
        raise ValueError(f"head depth must be >= 1 (the output layer counts), got {cfg.depth}")
    inputs = keras.Input((input_dim,), name="features")
    x = inputs
    for i in range(cfg.depth - 1):
        x = keras.layers.Dense(cfg.width, activation="relu", name=f"dense_{i}")(x)
        if cfg.dropout > 0:
            x = keras.layers.Dropout(cfg.dropout, name=f"dropout_{i}")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name=name)


def train_head(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    num_classes: int,
    cfg: HeadConfig,
    verbose: int = 0,
):
    """Returns (model, history dict). Class weights balance the two classes."""
    import keras

    seed_everything(cfg.seed)
    model = build_head(x_train.shape[1], num_classes, cfg)
    model.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=["accuracy"],
    )
    counts = np.bincount(y_train, minlength=num_classes)
    class_weight = {c: len(y_train) / (num_classes * max(1, n)) for c, n in enumerate(counts)}
    history = model.fit(
        x_train,
        keras.utils.to_categorical(y_train, num_classes),
        validation_data=(x_val, keras.utils.to_categorical(y_val, num_classes)),
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        shuffle=True,
        class_weight=class_weight,
        verbose=verbose,
    )
    return model, {k: [float(v) for v in vals] for k, vals in history.history.items()}


def save_history(history: dict, path: Path) -> None:
    path.write_text(json.dumps(history, indent=1) + "\n")
