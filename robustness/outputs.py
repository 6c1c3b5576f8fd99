"""A grid's files: grid.csv (one row a cell), ranking.csv, grid.json (everything), and the heatmaps."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from masklite import charts_available
from robustness.charts import plot_heatmaps
from robustness.grid import GridResult

CSV_COLUMNS = (
    "layer",
    "layer_name",
    "kind",
    "value",
    "accuracy",
    "accuracy_drop",
    "flip_rate",
    "changed_rate",
    "saturated",
    "saturated_share",
    "weights_changed",
    "seconds",
)
RANKING_COLUMNS = ("kind", "rank", "layer", "name", "mean_accuracy_drop", "mean_flip_rate", "worst_accuracy")


def write_outputs(result: GridResult, out_dir: Path, title: str = "") -> list[str]:
    """grid.csv, grid.json, ranking.csv, heatmap.png (+ one heatmap per kind); returns the file names."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "grid.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(result.cells)
    with open(out_dir / "ranking.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(RANKING_COLUMNS)
        for kind, rows in result.ranking.items():
            for r in rows:
                writer.writerow(
                    [kind, r["rank"], r["layer"], r["name"], f"{r['mean_accuracy_drop']:.4f}",
                     f"{r['mean_flip_rate']:.4f}", f"{r['worst_accuracy']:.4f}"]
                )  # fmt: skip
    (out_dir / "grid.json").write_text(json.dumps(result.to_dict(), indent=1) + "\n")
    written = ["grid.csv", "ranking.csv", "grid.json"]
    if charts_available():  # optional (extra `charts`): the Docker image serves without matplotlib
        written += plot_heatmaps(result, out_dir, title)
    return written
