"""`export`: backbone + trained head as one Keras model -> float32 and full-integer int8 TFLite.

Input: float32 (1, H, W, 3) already normalised (x = pixel/127.5 - 1, see the card); output: softmax
over the labels in card order. The int8 model has int8 input and output (quantisation parameters are
read by masklite.classifier.Classifier, which the service uses). TensorFlow is imported inside the
functions that run it, so that importing training stays light (the CLI's `--help`, tests without it).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

FLOAT32_FILE = "masklite_float32.tflite"
INT8_FILE = "masklite_int8.tflite"
PRECISIONS = ("float32", "int8")  # the main model's two files, in this order everywhere
MODEL_FILES = dict(zip(PRECISIONS, (FLOAT32_FILE, INT8_FILE), strict=True))


def compose(backbone, head, size: int):
    import keras

    inputs = keras.Input((size, size, 3), name="image")
    probs = head(backbone(inputs, training=False))
    return keras.Model(inputs, probs, name="masklite")


@contextmanager
def saved_model(model, shape: list[int]) -> Iterator[str]:
    """A temporary SavedModel export of `model` with one fixed input shape.

    (from_concrete_functions on a Keras 3 model leaves READ_VARIABLE ops that break int8 calibration;
    the SavedModel route freezes the variables.)"""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="masklite-export-") as tmp:
        model.export(
            tmp,
            format="tf_saved_model",
            verbose=False,
            input_signature=[tf.TensorSpec(shape, tf.float32, name="input")],
        )
        yield tmp


def convert(saved_model_dir: str, representative: np.ndarray | None = None) -> bytes:
    """TFLite bytes; full integer (int8 weights, activations, input and output) when a representative
    batch of float inputs is given."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    if representative is not None:
        if len(representative) == 0:
            raise ValueError("int8 export needs a non-empty representative dataset")

        def gen() -> Iterator[list[np.ndarray]]:
            for x in representative:
                yield [x[None].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = gen
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def to_tflite(model, size: int, representative: np.ndarray) -> tuple[bytes, bytes]:
    """(float32, full-int8) TFLite bytes of an image model, from one SavedModel export."""
    with saved_model(model, [1, size, size, 3]) as tmp:
        return convert(tmp), convert(tmp, representative)


def to_tflite_float32(model, size: int) -> bytes:
    with saved_model(model, [1, size, size, 3]) as tmp:
        return convert(tmp)


def to_tflite_int8(model, size: int, representative: np.ndarray) -> bytes:
    """Full-integer quantisation; `representative` is a float32 batch of normalised train crops."""
    with saved_model(model, [1, size, size, 3]) as tmp:
        return convert(tmp, representative)


def head_to_tflite_int8(head, representative: np.ndarray) -> bytes:
    """Full-int8 TFLite of the head alone (features in, probabilities out), for the studies."""
    with saved_model(head, [1, int(representative.shape[1])]) as tmp:
        return convert(tmp, representative)


def representative_indices(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A seeded, class-balanced sample of row indices."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    per = max(1, n // len(classes))
    picks = [rng.permutation(np.flatnonzero(y == c))[:per] for c in classes]
    return np.sort(np.concatenate(picks))
