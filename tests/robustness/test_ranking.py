"""robustness.ranking: layers ranked by sensitivity; the original study's conclusions checked."""

from __future__ import annotations

from typing import Any

from robustness.ranking import check_conclusions, sensitivity_ranking
from robustness.surgery import WeightedLayer

LAYERS = [{"index": i, "name": f"l{i}"} for i in range(3)]


def _cell(layer: int, kind: str, drop: float, flip: float = 0.0) -> dict[str, Any]:
    return {"layer": layer, "kind": kind, "accuracy_drop": drop, "flip_rate": flip, "accuracy": 0.9 - drop}


def _layers(n: int) -> list[WeightedLayer]:
    return [WeightedLayer(i, i, "CONV_2D", f"l{i}", f"l{i}", (1,), "float32", 0, 4) for i in range(n)]


def test_ranking_by_mean_drop_then_flip_rate_then_index() -> None:
    cells = [
        _cell(0, "add", 0.5), _cell(0, "add", 0.1),  # mean 0.3
        _cell(1, "add", 0.3, flip=0.2),  # ties layer 0 on the drop, more flips: first
        _cell(2, "add", 0.0), _cell(2, "noise", 0.4),
    ]  # fmt: skip
    ranking = sensitivity_ranking(cells, LAYERS)
    assert list(ranking) == ["add", "noise", "overall"]
    assert [(r["layer"], r["rank"]) for r in ranking["add"]] == [(1, 1), (0, 2), (2, 3)]
    assert ranking["add"][1]["mean_accuracy_drop"] == 0.3 and ranking["add"][1]["worst_accuracy"] == 0.4
    assert [r["layer"] for r in ranking["noise"]] == [2]  # only the layers that have the kind
    assert [r["layer"] for r in ranking["overall"]] == [1, 0, 2]


def test_conclusions_hold_and_fail() -> None:
    holds = sensitivity_ranking([_cell(0, "add", 0.5), _cell(1, "add", 0.2), _cell(2, "add", 0.0)], LAYERS)
    c = check_conclusions(holds, _layers(3))
    assert c["checked"] and c["first_most_sensitive"] and c["first_most_sensitive_strict"]
    assert c["last_least_sensitive"] and c["first_layer"]["rank"] == 1 and c["last_layer"]["rank"] == 3
    tied = sensitivity_ranking([_cell(0, "add", 0.5), _cell(1, "add", 0.5), _cell(2, "add", 0.6)], LAYERS)
    c = check_conclusions(tied, _layers(3))
    assert not c["first_most_sensitive"] and not c["last_least_sensitive"]
    assert c["layers_tied_least_sensitive"] == 2


def test_conclusions_need_add_on_the_first_and_last_layer() -> None:
    only_first = sensitivity_ranking([_cell(0, "add", 0.5), _cell(2, "noise", 0.1)], LAYERS)
    assert check_conclusions(only_first, _layers(3)) == {
        "checked": False,
        "reason": "needs the 'add' kind on both the first and the last layer",
    }
