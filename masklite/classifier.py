"""One .tflite classifier on LiteRT, and its input: the only place a crop becomes a model input (training and
serving both call `preprocess`) and the only place a model is loaded and run, for every precision."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
from ai_edge_litert.interpreter import Interpreter

from masklite.card import InputSpec


def resize_crop(crop: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """RGB uint8 crop -> RGB uint8 (H, W, 3) at the model's input size."""
    height, width = size
    shrinking = crop.shape[0] > height or crop.shape[1] > width
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def normalize(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """RGB uint8 (..., H, W, 3) already at input size -> float32 x = pixel * scale + offset."""
    if spec.color == "BGR":
        pixels = pixels[..., ::-1]
    return pixels.astype(np.float32) * np.float32(spec.scale) + np.float32(spec.offset)


def resize_crops(crops: Sequence[np.ndarray], spec: InputSpec) -> np.ndarray:
    """RGB uint8 crops of any size -> RGB uint8 batch (N, H, W, 3) at the model's input size."""
    if not len(crops):
        return np.zeros((0, *spec.size, 3), np.uint8)
    return np.stack([resize_crop(c, tuple(spec.size)) for c in crops])


def preprocess(crops: Sequence[np.ndarray], spec: InputSpec) -> np.ndarray:
    """RGB uint8 crops of any size -> float32 batch (N, H, W, 3) ready for the classifier."""
    return normalize(resize_crops(crops, spec), spec)


# faces per invoke; a crowd photo is split into chunks of this many (bounds the tensor arena)
MAX_BATCH = 16


class Classifier:
    """A LiteRT interpreter around one model. Not thread-safe: one instance per worker thread.

    Takes float32 inputs (already normalised by `preprocess`) and returns float32 probabilities,
    quantising and dequantising at the edges when the model has int8 input/output.
    """

    def __init__(
        self,
        model: Path | str | bytes,
        num_threads: int = 1,
        spec: InputSpec | None = None,
        name: str | None = None,
    ):
        self.spec = spec  # the card's input spec for this model, when the loader knows it
        if isinstance(model, bytes):
            # LiteRT reads the weights in place: interpreters built from the same bytes share one copy
            self._interpreter = Interpreter(model_content=model, num_threads=num_threads)
            self.name = name or "<in-memory>"
        else:
            self._interpreter = Interpreter(model_path=str(model), num_threads=num_threads)
            self.name = Path(model).name
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self.input_dtype = np.dtype(self._input["dtype"])
        self.input_size = (int(self._input["shape"][1]), int(self._input["shape"][2]))
        self.num_classes = int(self._output["shape"][-1])
        self._batch = int(self._input["shape"][0])
        self._table: tuple[InputSpec, np.ndarray] | None = None  # predict_pixels' lookup table, per spec

    @property
    def precision(self) -> str:
        return "int8" if self.input_dtype == np.int8 else "float32"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) float32 -> (N, num_classes) float32 probabilities.

        All faces of a frame go through one invoke (the input resized to N, at most MAX_BATCH at a time):
        per face that is cheaper than N invokes of one, most for float32.
        """
        return self._predict_chunks(batch, lambda chunk: quantize(chunk, self._input))

    def predict_pixels(self, pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
        """(N, H, W, 3) RGB uint8 already at input size -> probabilities: the same numbers as
        `predict(normalize(pixels, spec))`, by one table lookup per pixel (the table is `normalize` and
        `quantize` applied to the 256 pixel values) instead of five float passes over the batch."""
        if spec.color == "BGR":
            pixels = pixels[..., ::-1]
        if self._table is None or self._table[0] != spec:
            grey = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)  # equal channels: order-free
            self._table = (spec, quantize(normalize(grey, spec), self._input)[:, 0].copy())
        table = self._table[1]
        return self._predict_chunks(pixels, lambda chunk: np.take(table, chunk))

    def _predict_chunks(self, batch: np.ndarray, to_input: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        out = np.empty((len(batch), self.num_classes), dtype=np.float32)
        for start in range(0, len(batch), MAX_BATCH):
            chunk = batch[start : start + MAX_BATCH]
            out[start : start + len(chunk)] = self._run(to_input(chunk))
        return out

    def _run(self, x: np.ndarray) -> np.ndarray:
        """x: the input tensor's dtype and layout (quantised already)."""
        if len(x) != self._batch:
            # cheap (~0.02 ms): LiteRT keeps the delegate and only re-plans the tensors
            self._interpreter.resize_tensor_input(self._input["index"], [len(x), *self._input["shape"][1:]])
            self._interpreter.allocate_tensors()
            self._batch = len(x)
        self._interpreter.set_tensor(self._input["index"], x)
        self._interpreter.invoke()
        return dequantize(self._interpreter.get_tensor(self._output["index"]), self._output)


def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """float32 -> the tensor's dtype with its scale and zero point (float32 tensors pass through)."""
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return x.astype(np.float32, copy=False)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    """A tensor's values -> float32, undoing its scale and zero point."""
    if np.dtype(detail["dtype"]) == np.float32:
        return y.astype(np.float32, copy=False)
    scale, zero_point = detail["quantization"]
    return (y.astype(np.float32) - zero_point) * scale
