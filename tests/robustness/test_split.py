"""robustness.split: the model cut before one op gives the whole model's predictions, skip connections
included."""

from __future__ import annotations

import numpy as np

from masklite.card import ModelCard
from masklite.classifier import Classifier
from masklite.evalset import EvalSet
from robustness.split import ModelSplit
from robustness.surgery import TFLiteModel


def test_prefix_then_suffix_is_the_whole_tiny_model(
    tiny_model: TFLiteModel, tiny_evalset: EvalSet, tiny_card: ModelCard
) -> None:
    inputs = tiny_evalset.inputs(tiny_card)
    dense = tiny_model.layers[1]
    split = ModelSplit(tiny_model.data, dense.op_index)
    assert not split.trivial and len(split.live) == 1
    acts = split.activations(inputs)
    assert split.activation_bytes(len(inputs)) == sum(a.nbytes for a in acts.values())
    whole = Classifier(tiny_model.data).predict(inputs)
    assert np.allclose(ModelSplit.run_suffix(split.suffix, acts), whole, atol=1e-6)
    # the suffix keeps the weights byte-identical, so the same patching applies to it
    suffix = TFLiteModel(split.suffix)
    assert suffix.layers[0].name == dense.name
    assert np.array_equal(suffix.raw_weights(suffix.layers[0]), tiny_model.raw_weights(dense))


def test_a_cut_at_the_input_is_trivial(tiny_int8: TFLiteModel) -> None:
    assert ModelSplit(tiny_int8.data, 0).trivial


def test_split_keeps_skip_connections_live(int8_model: TFLiteModel) -> None:
    # block_2_project feeds a residual ADD with block_1's output: both must cross the cut after it
    layer = next(lyr for lyr in int8_model.layers if lyr.name == "block_2_expand")
    split = ModelSplit(int8_model.data, int8_model.layers[layer.index + 1].op_index)
    assert len(split.live) == 2
    assert TFLiteModel(split.suffix).layers[0].name == int8_model.layers[layer.index + 1].name
