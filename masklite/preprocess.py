"""Face crop -> model input. The one implementation both training and serving call."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

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


def preprocess(crops: Sequence[np.ndarray], spec: InputSpec) -> np.ndarray:
    """RGB uint8 crops of any size -> float32 batch (N, H, W, 3) ready for the classifier."""
    resized = np.stack([resize_crop(c, tuple(spec.size)) for c in crops]) if len(crops) else np.zeros(
        (0, *spec.size, 3), np.uint8
    )
    return normalize(resized, spec)
