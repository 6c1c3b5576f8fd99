"""masklite.classifier: crop -> model input exactly as the card says, and LiteRT at every precision."""

from __future__ import annotations

import numpy as np
import pytest

from masklite.card import InputSpec, ModelCard
from masklite.classifier import (
    MAX_BATCH,
    Classifier,
    dequantize,
    normalize,
    preprocess,
    quantize,
    resize_crop,
    resize_crops,
)
from tests.masklite.conftest import half_dark


def test_normalize_is_scale_and_offset() -> None:
    spec = InputSpec(size=(2, 2), scale=1 / 127.5, offset=-1.0)
    px = np.array([[[[0, 127, 255]] * 2] * 2], np.uint8)
    x = normalize(px, spec)
    assert x.dtype == np.float32
    assert np.allclose(x[0, 0, 0], [-1.0, 127 / 127.5 - 1, 1.0], atol=1e-6)


def test_normalize_swaps_channels_for_bgr_models() -> None:
    px = np.zeros((1, 1, 1, 3), np.uint8)
    px[..., 0] = 255  # pure red
    x = normalize(px, InputSpec(size=(1, 1), color="BGR", scale=1.0, offset=0.0))
    assert x[0, 0, 0].tolist() == [0.0, 0.0, 255.0]


@pytest.mark.parametrize("shape", [(5, 7), (24, 24), (300, 90)])
def test_resize_crop_any_size_to_the_input_size(shape: tuple[int, int]) -> None:
    out = resize_crop(np.zeros((*shape, 3), np.uint8), (24, 24))
    assert out.shape == (24, 24, 3) and out.dtype == np.uint8


def test_preprocess_batches_and_handles_no_crops(tiny_card: ModelCard) -> None:
    crops = [np.zeros((10, 30, 3), np.uint8), np.full((50, 50, 3), 255, np.uint8)]
    batch = preprocess(crops, tiny_card.input)
    assert batch.shape == (2, 24, 24, 3) and batch.dtype == np.float32
    assert batch.min() == -1.0 and batch.max() == 1.0
    assert preprocess([], tiny_card.input).shape == (0, 24, 24, 3)


def test_quantize_round_trip_within_one_step() -> None:
    detail = {"dtype": np.int8, "quantization": (0.01, -3)}
    x = np.linspace(-1.2, 1.2, 50, dtype=np.float32)
    q = quantize(x, detail)
    assert q.dtype == np.int8 and q.min() >= -128 and q.max() <= 127
    inside = np.abs(x) < 1.2  # beyond the int8 range values clip
    assert np.max(np.abs(dequantize(q, detail)[inside] - x[inside])) <= 0.01 / 2 + 1e-6
    float_detail = {"dtype": np.float32, "quantization": (0.0, 0)}
    assert quantize(x, float_detail) is x


def test_classifier_reads_its_model(tiny_classifier: Classifier) -> None:
    assert tiny_classifier.input_size == (24, 24)
    assert tiny_classifier.num_classes == 2
    assert tiny_classifier.precision in ("float32", "int8")
    assert tiny_classifier.name.startswith("tiny_")


def test_classifier_outputs_probabilities_that_follow_the_rule(
    tiny_classifier: Classifier, tiny_card: ModelCard
) -> None:
    crops = [half_dark(24, "bottom"), half_dark(40, "top")]
    probs = tiny_classifier.predict(preprocess(crops, tiny_card.input))
    assert probs.shape == (2, 2)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=0.02)
    assert probs[0, tiny_card.mask_index] > 0.9  # dark bottom half: "mask"
    assert probs[1, tiny_card.mask_index] < 0.1


def test_a_crowd_is_split_into_batches(tiny_classifier: Classifier, tiny_card: ModelCard) -> None:
    n = MAX_BATCH * 2 + 3
    crops = [half_dark(24, "bottom" if i % 2 else "top") for i in range(n)]
    probs = tiny_classifier.predict(preprocess(crops, tiny_card.input))
    one_by_one = np.concatenate(
        [tiny_classifier.predict(preprocess([c], tiny_card.input)) for c in crops[:4]]
    )
    assert probs.shape == (n, 2)
    assert np.allclose(probs[:4], one_by_one, atol=1e-5)
    assert (np.argmax(probs, axis=1) == np.array([1 - i % 2 for i in range(n)])).all()


def test_classifier_loads_from_bytes(tiny_card: ModelCard) -> None:
    from tests.masklite.conftest import FIXTURES

    clf = Classifier((FIXTURES / tiny_card.models["int8"].file).read_bytes())
    assert clf.name == "<in-memory>" and clf.precision == "int8"


@pytest.mark.parametrize("color", ["RGB", "BGR"])
def test_predict_pixels_gives_the_same_numbers_as_the_float_path(
    tiny_classifier: Classifier, tiny_card: ModelCard, color: str
) -> None:
    """The lookup table is normalize + quantize of the 256 pixel values: the model input, and so the
    probabilities, are exactly those of predict(preprocess(...)), in both channel orders."""
    spec = tiny_card.input.model_copy(update={"color": color})
    rng = np.random.default_rng(3)
    crops = [rng.integers(0, 256, (s, s + 5, 3), dtype=np.uint8) for s in (12, 24, 50)]
    crops.append(half_dark(30, "bottom"))
    pixels = resize_crops(crops, spec)
    assert pixels.dtype == np.uint8 and pixels.shape == (4, 24, 24, 3)
    assert np.array_equal(
        tiny_classifier.predict_pixels(pixels, spec), tiny_classifier.predict(preprocess(crops, spec))
    )
    # a different spec (other scale) gets its own table, not the cached one
    other = spec.model_copy(update={"scale": spec.scale / 2})
    assert np.array_equal(
        tiny_classifier.predict_pixels(pixels, other), tiny_classifier.predict(preprocess(crops, other))
    )
    assert tiny_classifier.predict_pixels(resize_crops([], spec), spec).shape == (0, 2)
