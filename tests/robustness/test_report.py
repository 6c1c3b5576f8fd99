"""robustness.report: reports/robustness.md from every grid, on the tiny models (fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robustness.errors import RobustnessError
from robustness.report import build_report


def test_report_on_the_tiny_models(
    tiny_dir: Path, tiny_evalset_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports, cache = tmp_path / "reports", tmp_path / "cache"
    args = (tiny_dir, reports, tiny_evalset_path, 1, 1, 0, ["int8", "float32"])
    path = build_report(*args, cache_dir=cache)
    text = path.read_text()
    assert path == reports / "robustness.md" and text.startswith("# Per-layer weight robustness")
    assert "`python -m robustness report --workers 2`" in text
    for precision in ("int8", "float32"):
        assert f"## {precision}: clean accuracy 100.0%" in text
        for grid in ("original", "faults"):
            out = reports / "robustness" / precision / grid
            assert (out / "grid.csv").is_file() and (out / "heatmap.png").is_file()
            assert not (out / "grid.json").exists()  # the CSVs hold the cells; the repo stays lean
    assert "*First layer most sensitive to addition*: **holds**" in text
    summary = json.loads((reports / "robustness" / "summary.json").read_text())
    assert set(summary["precisions"]) == {"int8", "float32"}
    assert len(list(cache.glob("*.json"))) == 4
    # a second run reuses every cached grid: same cells, no new run
    capsys.readouterr()
    build_report(*args, cache_dir=cache, cached_only=True)
    assert capsys.readouterr().out.count(": reusing ") == 4


def test_report_needs_an_original_grid(tiny_dir: Path, tiny_evalset_path: Path, tmp_path: Path) -> None:
    with pytest.raises(RobustnessError, match="no original grid ran or was cached"):
        build_report(
            tiny_dir, tmp_path, tiny_evalset_path, 1, 1, 0, ["int8"], cache_dir=tmp_path, cached_only=True
        )
