"""Reduction-study bookkeeping; the studies themselves run with `python -m training study`."""

from __future__ import annotations

import json

import pandas as pd

from training.study import GRIDS, summarise, write_markdown


def _runs(param: str, values: list[int]) -> pd.DataFrame:
    rows = []
    for v in values:
        for seed in range(3):
            rows.append(
                {
                    "depth": v if param == "depth" else 4,
                    "epochs": v if param == "epochs" else 15,
                    "seed": seed,
                    "width": 128,
                    "head_params": 1000 * v,
                    "val_accuracy": 0.98 + 0.001 * seed,
                    "float32_accuracy": 0.99 + 0.001 * seed,
                    "int8_accuracy": 0.989 + 0.001 * seed,
                    "int8_vs_float32_label_agreement": 0.998,
                    "train_seconds": 1.0,
                }
            )
    return pd.DataFrame(rows)


def test_grids_are_the_original_ones():
    assert GRIDS["layers"]["values"] == [1, 2, 4, 8] and GRIDS["layers"]["fixed"] == {"epochs": 15}
    assert GRIDS["epochs"]["values"] == [5, 10, 15, 20] and GRIDS["epochs"]["fixed"] == {"depth": 4}


def test_summary_has_mean_and_sd_per_value():
    summary = summarise(_runs("depth", [1, 2, 4, 8]), "depth")
    assert list(summary["depth"]) == [1, 2, 4, 8]
    assert (summary["seeds"] == 3).all()
    assert abs(summary["float32_accuracy_mean"].iloc[0] - 0.991) < 1e-9
    assert abs(summary["float32_accuracy_sd"].iloc[0] - 0.001) < 1e-9  # sample sd of 0.990, 0.991, 0.992


def test_markdown_lists_both_studies(tmp_path):
    out = tmp_path / "studies"
    out.mkdir()
    for kind, grid in GRIDS.items():
        summary = summarise(_runs(grid["param"], grid["values"]), grid["param"])
        summary.to_csv(out / f"{kind}.csv", index=False)
        meta = {"base": {"width": 128, "dropout": 0.3}, "seeds": 3, "grid": grid, "test_n": 594}
        (out / f"{kind}_meta.json").write_text(json.dumps(meta))
    text = write_markdown(tmp_path, tmp_path).read_text()
    assert "Accuracy vs head depth" in text and "Accuracy vs epochs" in text
    assert "| 8 | 8,000 |" in text and "99.10 ± 0.10 %" in text
