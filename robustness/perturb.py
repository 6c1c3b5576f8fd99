"""One perturbation of one layer's weights, all other layers untouched.

    multiply  w * s                      add      w + s
    noise     w + N(0, (s * std(w))^2)   bitflip  each stored bit flips with probability s

multiply/add/noise act on real values: int8 weights are dequantized with the tensor's own (per-channel)
scales, perturbed, and requantized with the SAME scales (the weights that hit the clip are counted). Bit
flips act on the stored bytes (int8 or float32), as a memory fault would. Seeded per cell, so a grid gives
the same numbers whatever order (or process) its cells run in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from robustness.errors import RobustnessError
from robustness.surgery import TFLiteModel, WeightedLayer, requantize_weights

Kind = Literal["multiply", "add", "noise", "bitflip"]
KINDS: tuple[str, ...] = ("multiply", "add", "noise", "bitflip")


@dataclass
class Perturbed:
    raw: np.ndarray  # the new stored weights, same dtype and shape as the layer's
    saturated: int | None  # int8 weights clipped by the requantization; None where it does not apply
    changed: int  # stored weights whose value changed


def cell_rng(seed: int, layer_index: int, kind: str, value: float) -> np.random.Generator:
    """Independent of the order cells run in, so parallel and serial runs give the same noise."""
    bits = int(np.float64(value).view(np.uint64))
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, layer_index, KINDS.index(kind), bits])


def perturb(model: TFLiteModel, layer: WeightedLayer, kind: str, value: float, seed: int = 0) -> Perturbed:
    raw = model.raw_weights(layer)
    if kind not in KINDS:
        raise RobustnessError(f"unknown perturbation kind {kind!r}; use one of {', '.join(KINDS)}")
    rng = cell_rng(seed, layer.index, kind, value)
    if kind == "bitflip":
        flipped = flip_bits(raw, value, rng)
        return Perturbed(flipped, None, int(np.count_nonzero(flipped.view(np.uint8) != raw.view(np.uint8))))
    w = model.float_weights(layer)
    if kind == "multiply":
        new = w * value
    elif kind == "add":
        new = w + value
    else:  # noise, relative to the layer's own weight spread
        new = w + rng.normal(0.0, value * float(np.std(w)), size=w.shape) if value > 0 else w
    if layer.dtype == "float32":
        out = new.astype(np.float32)
        return Perturbed(out, None, int(np.count_nonzero(out != raw)))
    q, saturated = requantize_weights(new, layer)
    return Perturbed(q, saturated, int(np.count_nonzero(q != raw)))


def flip_bits(raw: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Flip each stored bit independently with probability `rate` (little-endian bytes, as in the file)."""
    data = raw.copy()
    octets = data.view(np.uint8).reshape(-1)
    nbits = octets.size * 8
    count = int(rng.binomial(nbits, min(max(rate, 0.0), 1.0)))
    if count:
        pos = rng.choice(nbits, size=count, replace=False)
        np.bitwise_xor.at(octets, pos // 8, (1 << (pos % 8)).astype(np.uint8))
    return data
