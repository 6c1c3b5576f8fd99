"""What a finished grid says: layers ranked by sensitivity, and the original study's two conclusions
checked against that ranking."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from robustness.surgery import WeightedLayer


def sensitivity_ranking(
    cells: Iterable[dict[str, Any]], layers: list[dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """Per kind (and "overall"): layers by mean accuracy drop over that kind's values, then by flip rate."""
    cells = list(cells)
    name_of: dict[int, str] = {lyr["index"]: lyr["name"] for lyr in layers}
    kinds = list(dict.fromkeys(c["kind"] for c in cells))
    out: dict[str, list[dict[str, Any]]] = {}
    for kind in [*kinds, "overall"]:
        rows = []
        for index, name in name_of.items():
            mine = [c for c in cells if c["layer"] == index and (kind == "overall" or c["kind"] == kind)]
            if not mine:
                continue
            rows.append(
                {
                    "layer": index,
                    "name": name,
                    "mean_accuracy_drop": float(np.mean([c["accuracy_drop"] for c in mine])),
                    "mean_flip_rate": float(np.mean([c["flip_rate"] for c in mine])),
                    "worst_accuracy": float(min(c["accuracy"] for c in mine)),
                }
            )
        # rounded, so that float noise does not order layers that tie
        rows.sort(
            key=lambda r: (-round(r["mean_accuracy_drop"], 9), -round(r["mean_flip_rate"], 9), r["layer"]),
        )
        for rank, row in enumerate(rows, 1):
            row["rank"] = rank
        out[kind] = rows
    return out


def check_conclusions(
    ranking: dict[str, list[dict[str, Any]]], all_layers: list[WeightedLayer]
) -> dict[str, Any]:
    """The original study: the first layer is the most sensitive to addition, the last the least."""
    rows = ranking.get("add")
    first, last = all_layers[0].index, all_layers[-1].index
    if not rows or first not in {r["layer"] for r in rows} or last not in {r["layer"] for r in rows}:
        return {"checked": False, "reason": "needs the 'add' kind on both the first and the last layer"}
    by_layer = {r["layer"]: r for r in rows}
    drops = [r["mean_accuracy_drop"] for r in rows]
    flips = [r["mean_flip_rate"] for r in rows]
    eps = 1e-9
    f, la = by_layer[first], by_layer[last]
    top = [r for r in rows if r["mean_accuracy_drop"] >= max(drops) - eps]
    bottom = [r for r in rows if r["mean_accuracy_drop"] <= min(drops) + eps]
    return {
        "checked": True,
        "layers": len(rows),
        "first_layer": {k: f[k] for k in ("name", "rank", "mean_accuracy_drop", "mean_flip_rate")},
        "last_layer": {k: la[k] for k in ("name", "rank", "mean_accuracy_drop", "mean_flip_rate")},
        "first_most_sensitive": f["mean_accuracy_drop"] >= max(drops) - eps,
        "first_most_sensitive_strict": f["rank"] == 1 and len(top) == 1,
        "layers_tied_most_sensitive": len(top),
        "last_least_sensitive": la["mean_accuracy_drop"] <= min(drops) + eps,
        "last_least_sensitive_by_flips": la["mean_flip_rate"] <= min(flips) + eps,
        "layers_tied_least_sensitive": len(bottom),
    }
