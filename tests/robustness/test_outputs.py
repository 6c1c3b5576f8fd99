"""robustness.outputs and robustness.charts: a grid's CSVs, JSON and heatmaps."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from masklite.card import ModelCard
from masklite.evalset import EvalSet
from robustness.grid import GridResult, run_grid
from robustness.outputs import CSV_COLUMNS, RANKING_COLUMNS, write_outputs
from robustness.spec import GridSpec
from robustness.surgery import TFLiteModel

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_result(tiny_int8: TFLiteModel, tiny_evalset: EvalSet, tiny_card: ModelCard) -> GridResult:
    spec = GridSpec(kinds=["multiply", "add", "bitflip"], scalars=[0.5, 1.0], bitflip_rates=[0.01])
    return run_grid(tiny_int8, tiny_evalset, tiny_card, spec)


def test_files_and_their_columns(tiny_result: GridResult, tmp_path: Path) -> None:
    files = write_outputs(tiny_result, tmp_path, "tiny")
    heatmaps = ["heatmap.png", "heatmap_multiply.png", "heatmap_add.png", "heatmap_bitflip.png"]
    assert files == ["grid.csv", "ranking.csv", "grid.json", *heatmaps]
    for name in heatmaps:
        assert (tmp_path / name).read_bytes()[:8] == PNG
    rows = list(csv.DictReader((tmp_path / "grid.csv").open()))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 2 * 5
    assert rows[-1]["saturated"] == ""  # a bit flip is not requantized: no saturation to report
    ranking = list(csv.reader((tmp_path / "ranking.csv").open()))
    assert tuple(ranking[0]) == RANKING_COLUMNS
    assert [r[0] for r in ranking[1:]] == ["multiply"] * 2 + ["add"] * 2 + ["bitflip"] * 2 + ["overall"] * 2
    # grid.json is the whole result: the report's cache reads it back
    assert GridResult(**json.loads((tmp_path / "grid.json").read_text())) == tiny_result


def test_without_matplotlib_only_the_numbers(
    tiny_result: GridResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("robustness.outputs.charts_available", lambda: False)  # the serving image
    assert write_outputs(tiny_result, tmp_path) == ["grid.csv", "ranking.csv", "grid.json"]
    assert not list(tmp_path.glob("*.png"))


def test_outputs_ranking_and_conclusions(
    int8_model: TFLiteModel, evalset: EvalSet, card: ModelCard, tmp_path: Path
) -> None:
    spec = GridSpec(layers=[0, 1, -2, -1], kinds=["add", "noise"], scalars=[0.25, 2.0], noise_sigmas=[1.0])
    seen: list[float] = []
    result = run_grid(int8_model, evalset, card, spec, progress=lambda f, p: seen.append(f))
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    assert set(result.ranking) == {"add", "noise", "overall"}
    assert [r["rank"] for r in result.ranking["add"]] == [1, 2, 3, 4]
    assert result.conclusions["checked"] is True
    assert result.conclusions["first_layer"]["name"] == int8_model.layers[0].name
    files = write_outputs(result, tmp_path, "test")
    assert {"grid.csv", "grid.json", "ranking.csv", "heatmap.png", "heatmap_add.png"} <= set(files)
    assert (tmp_path / "heatmap.png").read_bytes()[:8] == PNG
    assert len((tmp_path / "grid.csv").read_text().splitlines()) == 1 + 4 * 3
