"""robustness.perturb: one perturbation of one layer's weights (int8 with the layer's own scales, bit flips on
the stored bytes), seeded per cell."""

from __future__ import annotations

import numpy as np
import pytest

from masklite.card import ModelCard
from masklite.evalset import EvalSet
from robustness.errors import RobustnessError
from robustness.grid import predict_labels
from robustness.perturb import KINDS, cell_rng, flip_bits, perturb
from robustness.surgery import TFLiteModel

IDENTITIES = [("multiply", 1.0), ("add", 0.0), ("noise", 0.0), ("bitflip", 0.0)]


# ------------------------------------------------------------------ the tiny models (fast)


@pytest.mark.parametrize("kind,value", IDENTITIES)
def test_identity_perturbation_keeps_every_stored_byte(
    tiny_model: TFLiteModel, kind: str, value: float
) -> None:
    for layer in tiny_model.layers:
        pert = perturb(tiny_model, layer, kind, value)
        # int8: dequantize -> requantize with the same scales must give back every stored byte
        assert np.array_equal(pert.raw, tiny_model.raw_weights(layer)), layer.name
        assert pert.changed == 0 and pert.saturated in (None, 0)


def _real(model: TFLiteModel, layer_index: int, raw: np.ndarray) -> np.ndarray:
    """The weights in real units once `raw` is patched in."""
    patched = TFLiteModel(model.patched(model.layers[layer_index], raw))
    return patched.float_weights(patched.layers[layer_index]).ravel()


def test_multiply_and_add_act_on_real_values(tiny_model: TFLiteModel) -> None:
    dense = tiny_model.layers[1]  # [[8], [-8]]
    step = dense.scales[0] if dense.scales else 1e-6  # int8: one quantization step
    zero = perturb(tiny_model, dense, "multiply", 0.0)
    assert not np.any(zero.raw) and zero.changed == 2
    half = perturb(tiny_model, dense, "multiply", 0.5)
    assert np.allclose(_real(tiny_model, 1, half.raw), [4.0, -4.0], atol=step)
    add = perturb(tiny_model, dense, "add", 0.25)
    if dense.dtype == "int8":  # 8.0 is already the largest int8 value of its channel: +0.25 clips
        assert add.saturated == 1 and np.allclose(_real(tiny_model, 1, add.raw)[1], -7.75, atol=step)
    else:
        assert add.saturated is None and np.allclose(_real(tiny_model, 1, add.raw), [8.25, -7.75])


def test_int8_saturation_is_counted(tiny_int8: TFLiteModel) -> None:
    conv = tiny_int8.layers[0]  # one scale maps the largest weight to ±127: x2 clips every weight
    pert = perturb(tiny_int8, conv, "multiply", 2.0)
    assert pert.saturated == conv.size and np.abs(pert.raw.astype(int)).max() == 127
    assert perturb(tiny_int8, conv, "multiply", 0.5).saturated == 0


def test_noise_and_bitflips_are_seeded_per_cell(tiny_int8: TFLiteModel) -> None:
    conv = tiny_int8.layers[0]
    a = perturb(tiny_int8, conv, "noise", 0.5, seed=1)
    assert np.array_equal(a.raw, perturb(tiny_int8, conv, "noise", 0.5, seed=1).raw)
    assert not np.array_equal(a.raw, perturb(tiny_int8, conv, "noise", 0.5, seed=2).raw)
    # the seed covers the cell, not the order it runs in: another value or layer draws other numbers
    assert not np.array_equal(cell_rng(1, 0, "noise", 0.5).random(4), cell_rng(1, 0, "noise", 0.25).random(4))
    assert not np.array_equal(cell_rng(1, 0, "noise", 0.5).random(4), cell_rng(1, 1, "noise", 0.5).random(4))


def test_bit_flips_hit_the_stored_bytes_at_the_rate(tiny_model: TFLiteModel) -> None:
    conv = tiny_model.layers[0]
    raw = tiny_model.raw_weights(conv)
    flips = perturb(tiny_model, conv, "bitflip", 0.01, seed=1)
    bits = int(np.unpackbits(flips.raw.view(np.uint8) ^ raw.view(np.uint8)).sum())
    expected = raw.nbytes * 8 * 0.01
    assert abs(bits - expected) < 5 * np.sqrt(expected)
    assert flips.saturated is None  # a memory fault is not requantized


def test_flip_bits_at_rate_one_inverts_every_bit() -> None:
    raw = np.array([0, 1, -1, 127], dtype=np.int8)
    out = flip_bits(raw, 1.0, np.random.default_rng(0))
    assert out.tolist() == [-1, -2, 0, -128] and raw.tolist() == [0, 1, -1, 127]


def test_unknown_kind(tiny_int8: TFLiteModel) -> None:
    with pytest.raises(
        RobustnessError, match=f"unknown perturbation kind 'scale'; use one of {', '.join(KINDS)}"
    ):
        perturb(tiny_int8, tiny_int8.layers[0], "scale", 1.0)


# ------------------------------------------------------------------ the shipped models (slow)


@pytest.mark.parametrize("kind,value", IDENTITIES)
def test_identity_perturbation_reproduces_the_clean_model_exactly(
    model: TFLiteModel, evalset: EvalSet, card: ModelCard, kind: str, value: float
) -> None:
    clean = predict_labels(model.data, evalset.inputs(card))
    for layer in (model.layers[0], model.layers[len(model.layers) // 2], model.layers[-1]):
        pert = perturb(model, layer, kind, value)
        assert np.array_equal(pert.raw, model.raw_weights(layer)), layer.name
        assert pert.changed == 0 and pert.saturated in (None, 0)
        preds = predict_labels(model.patched(layer, pert.raw), evalset.inputs(card))
        assert np.array_equal(preds, clean), layer.name


def test_multiplying_a_layer_by_zero_changes_predictions(
    model: TFLiteModel, evalset: EvalSet, card: ModelCard
) -> None:
    clean = predict_labels(model.data, evalset.inputs(card))
    for layer in (model.layers[0], model.layers[-2]):
        pert = perturb(model, layer, "multiply", 0.0)
        assert not np.any(pert.raw)
        preds = predict_labels(model.patched(layer, pert.raw), evalset.inputs(card))
        assert np.any(preds != clean), f"zeroing {layer.name} changed no prediction"


def test_int8_perturbation_keeps_the_tensor_scales(int8_model: TFLiteModel) -> None:
    layer = int8_model.layers[5]
    raw = int8_model.raw_weights(layer)
    pert = perturb(int8_model, layer, "multiply", 2.0)
    expected = int(np.count_nonzero(np.abs(raw.astype(int)) * 2 > 127))
    assert pert.saturated == expected > 0
    patched = TFLiteModel(int8_model.patched(layer, pert.raw))
    assert patched.layers[5].scales == layer.scales
    assert np.array_equal(patched.raw_weights(patched.layers[5]), pert.raw)
    # every other layer is byte-identical
    for other in int8_model.layers:
        if other.index != 5:
            assert np.array_equal(
                patched.raw_weights(patched.layers[other.index]), int8_model.raw_weights(other)
            )


def test_noise_and_bitflips_are_seeded(int8_model: TFLiteModel) -> None:
    layer = int8_model.layers[10]
    a = perturb(int8_model, layer, "noise", 0.5, seed=1)
    b = perturb(int8_model, layer, "noise", 0.5, seed=1)
    c = perturb(int8_model, layer, "noise", 0.5, seed=2)
    assert np.array_equal(a.raw, b.raw) and not np.array_equal(a.raw, c.raw)
    flips = perturb(int8_model, layer, "bitflip", 0.01, seed=1)
    raw = int8_model.raw_weights(layer)
    bits = int(np.unpackbits(flips.raw.view(np.uint8) ^ raw.view(np.uint8)).sum())
    expected = raw.size * 8 * 0.01
    assert abs(bits - expected) < 5 * np.sqrt(expected)
    assert np.array_equal(flips.raw, perturb(int8_model, layer, "bitflip", 0.01, seed=1).raw)
