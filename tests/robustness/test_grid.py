"""robustness.grid: every layer x every perturbation; the shortcuts (suffix only, byte-identical weights)
give the numbers the whole model gives."""

from __future__ import annotations

import numpy as np
import pytest

from masklite.card import ModelCard
from masklite.evalset import EvalSet
from robustness.errors import RobustnessError
from robustness.grid import LayerWorker, labels_from_probs, predict_labels, run_grid
from robustness.spec import GridSpec
from robustness.surgery import TFLiteModel


def _worker(model: TFLiteModel, evalset: EvalSet, card: ModelCard, **kw: int) -> LayerWorker:
    inputs = evalset.inputs(card)
    return LayerWorker(model.data, inputs, evalset.labels, predict_labels(model.data, inputs), 1, **kw)


def test_labels_from_probs_counts_a_broken_row_as_wrong() -> None:
    probs = np.array([[0.2, 0.8], [np.nan, 0.1], [0.9, 0.1], [np.inf, 0.0]], dtype=np.float32)
    assert labels_from_probs(probs).tolist() == [1, -1, 0, -1]


# ------------------------------------------------------------------ the tiny models (fast)


def test_tiny_grid(tiny_model: TFLiteModel, tiny_evalset: EvalSet, tiny_card: ModelCard) -> None:
    spec = GridSpec(kinds=["multiply", "add", "noise", "bitflip"], scalars=[0.0, 1.0, 2.0])
    seen: list[float] = []
    result = run_grid(tiny_model, tiny_evalset, tiny_card, spec, progress=lambda f, p: seen.append(f))
    n_perts = 3 + 3 + 4 + 3
    assert len(result.cells) == result.timing["cells"] == 2 * n_perts
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen) and len(seen) == 1 + 2 * n_perts
    assert result.clean["accuracy"] == 1.0  # the fixture's rule holds on every synthetic crop
    by = {(c["layer"], c["kind"], c["value"]): c for c in result.cells}
    for layer in (0, 1):
        identity = by[(layer, "multiply", 1.0)]
        assert identity["accuracy"] == 1.0 and identity["flip_rate"] == identity["changed_rate"] == 0.0
        zeroed = by[(layer, "multiply", 0.0)]  # all logits equal: every crop gets the first label
        assert zeroed["accuracy"] == 0.5 and zeroed["weights_changed"] == 1.0
    # cells come back in layer, then spec order; only the dense layer can skip the conv
    assert [(c["kind"], c["value"]) for c in result.cells[:n_perts]] == spec.perturbations()
    assert {c["suffix_only"] for c in result.cells if c["layer"] == 1} == {True}
    assert {c["suffix_only"] for c in result.cells if c["layer"] == 0} == {False}
    assert result.conclusions["checked"] and result.conclusions["first_layer"]["name"] == "top_minus_bottom"
    assert result.layers == [layer.describe() for layer in tiny_model.layers]


def test_suffix_only_cells_match_whole_model_cells(
    tiny_int8: TFLiteModel, tiny_evalset: EvalSet, tiny_card: ModelCard
) -> None:
    perts = [("multiply", 0.25), ("noise", 1.0), ("add", -8.0), ("bitflip", 0.2)]
    fast = _worker(tiny_int8, tiny_evalset, tiny_card).run_layer(1, perts, seed=3)
    whole = _worker(tiny_int8, tiny_evalset, tiny_card, cache_bytes=0).run_layer(1, perts, seed=3)
    assert all(c["suffix_only"] for c in fast) and not any(c["suffix_only"] for c in whole)
    for a, b in zip(fast, whole, strict=True):
        assert {k: v for k, v in a.items() if k not in ("seconds", "suffix_only")} == {
            k: v for k, v in b.items() if k not in ("seconds", "suffix_only")
        }


def test_cell_limit(tiny_int8: TFLiteModel, tiny_evalset: EvalSet, tiny_card: ModelCard) -> None:
    spec = GridSpec(kinds=["multiply"], scalars=[float(v) for v in range(64)])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("robustness.grid.MAX_CELLS", 100)
        with pytest.raises(RobustnessError, match="128 cells requested; the limit is 100"):
            run_grid(tiny_int8, tiny_evalset, tiny_card, spec)


# ------------------------------------------------------------------ the shipped models (slow)


def test_grid_identity_cells_match_clean_accuracy(
    model: TFLiteModel, evalset: EvalSet, card: ModelCard
) -> None:
    spec = GridSpec(layers=[0, -1], kinds=["multiply", "add"], scalars=[0.0, 1.0])
    result = run_grid(model, evalset, card, spec)
    by = {(c["layer"], c["kind"], c["value"]): c for c in result.cells}
    last = model.layers[-1].index
    for layer in (0, last):
        for kind, value in (("multiply", 1.0), ("add", 0.0)):
            cell = by[(layer, kind, value)]
            assert cell["accuracy"] == result.clean["accuracy"]
            assert cell["flip_rate"] == 0.0 and cell["changed_rate"] == 0.0
    assert len(result.cells) == 2 * 2 * 2


def test_suffix_split_gives_the_same_predictions_as_the_whole_model(
    int8_model: TFLiteModel, evalset: EvalSet, card: ModelCard
) -> None:
    with_split, whole = _worker(int8_model, evalset, card), _worker(int8_model, evalset, card, cache_bytes=0)
    perts = [("multiply", 0.6), ("noise", 1.0), ("add", 0.25)]
    for index in (3, 30, len(int8_model.layers) - 3):
        a = with_split.run_layer(index, perts, seed=7)
        b = whole.run_layer(index, perts, seed=7)
        assert all(c["suffix_only"] for c in a) and not any(c["suffix_only"] for c in b)
        for x, y in zip(a, b, strict=True):
            assert (x["accuracy"], x["flip_rate"], x["changed_rate"]) == (
                y["accuracy"],
                y["flip_rate"],
                y["changed_rate"],
            )
