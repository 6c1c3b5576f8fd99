"""robustness.surgery: finding, reading and patching weight tensors in .tflite bytes; int8 weights <->
real values with the tensor's own scales."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from masklite.card import ModelCard
from robustness.errors import RobustnessError
from robustness.evaluate import load_model_for
from robustness.surgery import (
    INT8_MIN,
    TFLiteModel,
    WeightedLayer,
    dequantize_weights,
    requantize_weights,
    short_names,
)


def _layer(**changes: Any) -> WeightedLayer:
    """A 2x3 int8 tensor with one scale per row, unless `changes` say otherwise."""
    base = WeightedLayer(
        0, 0, "CONV_2D", "t", "t", (2, 3), "int8", 0, 6, scales=(0.1, 0.2), zero_points=(0, 0)
    )
    return replace(base, **changes)


# ------------------------------------------------------------------ the tiny models (fast)


def test_finds_the_tiny_models_layers(tiny_model: TFLiteModel) -> None:
    assert [(lyr.op, lyr.name) for lyr in tiny_model.layers] == [
        ("CONV_2D", "top_minus_bottom"),
        ("FULLY_CONNECTED", "head"),
    ]
    conv, dense = tiny_model.layers
    assert conv.shape == (1, 24, 24, 3) and dense.shape == (2, 1)
    assert not tiny_model.skipped
    for layer in tiny_model.layers:
        assert layer.offset > 0 and layer.offset + layer.nbytes <= len(tiny_model.data)
        assert tiny_model.raw_weights(layer).dtype == np.dtype(layer.dtype)
        if layer.dtype == "int8":
            assert layer.scales and all(s > 0 for s in layer.scales)
    assert dense.describe()["weights"] == 2


def test_tiny_weights_are_the_ones_the_fixture_set(tiny_model: TFLiteModel) -> None:
    conv, dense = tiny_model.layers
    w = tiny_model.float_weights(conv)[0]  # (24, 24, 3): +k on the top half, -k on the bottom half
    k = 1.0 / (24 * 24 * 3 / 2)
    tolerance = 1e-6 if conv.dtype == "float32" else conv.scales[0]
    assert np.allclose(w[:12], k, atol=tolerance) and np.allclose(w[12:], -k, atol=tolerance)
    assert np.allclose(tiny_model.float_weights(dense).ravel(), [8.0, -8.0], rtol=0.01)


def test_patch_replaces_one_tensor_and_nothing_else(tiny_model: TFLiteModel) -> None:
    conv, dense = tiny_model.layers
    new = np.zeros_like(tiny_model.raw_weights(dense))
    patched = TFLiteModel(tiny_model.patched(dense, new))
    assert len(patched.data) == len(tiny_model.data)
    assert np.array_equal(patched.raw_weights(patched.layers[1]), new)
    assert np.array_equal(patched.raw_weights(patched.layers[0]), tiny_model.raw_weights(conv))
    assert patched.layers[1].scales == dense.scales
    with pytest.raises(ValueError, match="shape"):
        tiny_model.patched(dense, np.zeros((1, 2), dtype=dense.dtype))


def test_resolve_layers(tiny_int8: TFLiteModel) -> None:
    conv, dense = tiny_int8.layers
    assert tiny_int8.resolve_layers("all") == tiny_int8.resolve_layers(None) == [conv, dense]
    assert tiny_int8.resolve_layers([-1, "0", "head", 1]) == [conv, dense]  # sorted, no repeats
    assert tiny_int8.resolve_layers("head") == [dense]
    with pytest.raises(RobustnessError, match="out of range: the model has 2 weighted layers"):
        tiny_int8.resolve_layers([2])
    with pytest.raises(RobustnessError, match="unknown layer 'nope'; use indices or names such as"):
        tiny_int8.resolve_layers(["nope"])
    with pytest.raises(RobustnessError, match="no layers selected"):
        tiny_int8.resolve_layers([])


def test_not_a_model_is_a_user_error(tiny_dir: Path) -> None:
    with pytest.raises(RobustnessError, match="not a readable .tflite model"):
        TFLiteModel(b"\x00" * 64)
    with pytest.raises(RobustnessError, match="not a readable .tflite model"):
        TFLiteModel.from_file(tiny_dir / "model_card.json")


def test_unknown_precision(tiny_card: ModelCard, tiny_dir: Path) -> None:
    with pytest.raises(RobustnessError, match="unknown precision 'micro'; the card has float32, int8"):
        load_model_for(tiny_card, tiny_dir, "micro")


def test_short_names() -> None:
    names = short_names(
        [
            ("CONV_2D", "model/Conv1_1/convolution;model/bn_1/batchnorm"),
            ("DEPTHWISE_CONV_2D", "model/expanded_conv_depthwise_1/depthwise"),
            ("FULLY_CONNECTED", "model/dense_1/MatMul"),
            ("FULLY_CONNECTED", "model/dense_1/MatMul"),
        ]
    )
    # Keras 3's "_1" suffix dropped when every layer has it; repeats numbered
    assert names == ["Conv1", "expanded_conv_depthwise", "dense", "dense#2"]
    assert short_names([("CONV_2D", "")]) == ["conv"]


# ------------------------------------------------------------------ int8 requantisation (no model)


def test_requantize_keeps_the_scale_and_counts_saturation() -> None:
    layer = _layer()
    q = np.array([[127, 64, -10], [100, -127, 0]], dtype=np.int8)
    w = (q.astype(np.float64) * np.array([[0.1], [0.2]])) * 2.0  # multiply by 2 in real units
    out, saturated = requantize_weights(w, layer)
    assert out.tolist() == [[127, 127, -20], [127, -127, 0]]
    assert saturated == 4  # 254, 128, 200, -254 hit the clip
    assert out.min() >= INT8_MIN  # symmetric: -128 never produced
    # adding 1.0 (real units) = +10 steps on channel 0 (scale 0.1), +5 on channel 1 (scale 0.2)
    out, saturated = requantize_weights(q.astype(np.float64) * np.array([[0.1], [0.2]]) + 1.0, layer)
    assert out.tolist() == [[127, 74, 0], [105, -122, 5]] and saturated == 1


def test_dequantize_then_requantize_gives_back_every_byte() -> None:
    rng = np.random.default_rng(0)
    per_column = _layer(shape=(3, 2), scales=(0.5, 0.01), zero_points=(2, -3), quantized_dimension=1)
    for layer in (_layer(), per_column, _layer(scales=(0.05,), zero_points=(0,))):
        raw = rng.integers(-100, 100, layer.shape).astype(np.int8)
        back, saturated = requantize_weights(dequantize_weights(raw, layer), layer)
        assert np.array_equal(back, raw) and saturated == 0


def test_requantize_counts_non_finite_values_as_saturated() -> None:
    out, saturated = requantize_weights(np.array([[np.nan, np.inf, -np.inf], [0, 0, 0]]), _layer())
    assert saturated == 3 and out[0].tolist() == [0, 127, -127]


# ------------------------------------------------------------------ the shipped models (slow)


def test_finds_every_weighted_layer(model: TFLiteModel) -> None:
    ops = {layer.op for layer in model.layers}
    assert ops == {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}
    assert len(model.layers) >= 50  # MobileNetV2 backbone (52) + the dense head
    assert model.layers[0].op == "CONV_2D" and model.layers[-1].op == "FULLY_CONNECTED"
    assert len({layer.name for layer in model.layers}) == len(model.layers)
    for layer in model.layers:
        assert layer.offset > 0 and layer.offset + layer.nbytes <= len(model.data)
        assert model.raw_weights(layer).shape == layer.shape
        if layer.dtype == "int8":
            assert layer.scales and all(s > 0 for s in layer.scales)


def test_float32_and_int8_have_the_same_layers(models_dir: Path, card: ModelCard) -> None:
    f32 = load_model_for(card, models_dir, "float32")[0]
    i8 = load_model_for(card, models_dir, "int8")[0]
    assert [(lyr.name, lyr.shape) for lyr in f32.layers] == [(lyr.name, lyr.shape) for lyr in i8.layers]
