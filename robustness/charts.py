"""A grid's heatmaps: heatmap.png (accuracy, every kind side by side) and heatmap_<kind>.png (accuracy,
flip rate and, for int8, saturation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from robustness.grid import GridResult

AXIS_LABELS = {
    "multiply": "x scalar",
    "add": "+ scalar",
    "noise": "sigma / weight std",
    "bitflip": "bit-flip rate",
}


def plot_heatmaps(result: GridResult, out_dir: Path, title: str = "") -> list[str]:
    """Writes the PNGs into `out_dir`; returns their file names."""
    # imported here, not at the top: matplotlib is the optional extra `charts`, absent from the serving image
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layer_names = [f"{lyr['index']:>2} {lyr['name']}" for lyr in result.layers]
    row_of = {lyr["index"]: i for i, lyr in enumerate(result.layers)}
    kinds = list(dict.fromkeys(p["kind"] for p in result.perturbations))
    height = 1.6 + 0.16 * len(layer_names)
    written = []

    def grid(kind: str, metric: str) -> tuple[np.ndarray, list[float]]:
        values = [p["value"] for p in result.perturbations if p["kind"] == kind]
        col = {v: j for j, v in enumerate(values)}
        mat = np.full((len(layer_names), len(values)), np.nan)
        for c in result.cells:
            if c["kind"] == kind and c.get(metric) is not None:
                mat[row_of[c["layer"]], col[c["value"]]] = c[metric]
        return mat, values

    def draw(
        ax: Any, mat: np.ndarray, values: list[float], label: str, cmap: str, show_names: bool, kind: str
    ) -> Any:
        im = ax.imshow(mat, aspect="auto", cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_xticks(range(len(values)), [f"{v:g}" for v in values], rotation=90, fontsize=7)
        ax.set_xlabel(AXIS_LABELS.get(kind, kind), fontsize=8)
        ticks = layer_names if show_names else [""] * len(layer_names)
        ax.set_yticks(range(len(layer_names)), ticks, fontsize=6)
        ax.set_title(label, fontsize=9)
        return im

    # heatmap.png: accuracy for every kind side by side
    fig, axes = plt.subplots(1, len(kinds), figsize=(2.2 + 2.6 * len(kinds), height), squeeze=False)
    im = None
    for j, kind in enumerate(kinds):
        mat, values = grid(kind, "accuracy")
        im = draw(axes[0, j], mat, values, f"accuracy: {kind}", "RdYlGn", j == 0, kind)
    fig.colorbar(im, ax=axes[0, :].tolist(), fraction=0.03, pad=0.02)
    fig.suptitle(
        f"{title} clean accuracy {result.clean['accuracy']:.3f} on {result.evalset['images']} images".strip(),
        fontsize=10,
        y=1.0 + 0.35 / height,
    )
    fig.savefig(out_dir / "heatmap.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    written.append("heatmap.png")

    # one figure per kind: accuracy, flip rate and (int8) saturation
    for kind in kinds:
        panels = [("accuracy", "accuracy", "RdYlGn"), ("flip_rate", "flip rate", "magma_r")]
        if any(c.get("saturated_share") is not None for c in result.cells if c["kind"] == kind):
            panels.append(("saturated_share", "saturated share", "Blues"))
        fig, axes = plt.subplots(1, len(panels), figsize=(2.2 + 2.8 * len(panels), height), squeeze=False)
        for j, (metric, label, cmap) in enumerate(panels):
            mat, values = grid(kind, metric)
            im = draw(axes[0, j], mat, values, f"{kind}: {label}", cmap, j == 0, kind)
            fig.colorbar(im, ax=axes[0, j], fraction=0.05, pad=0.02)
        fig.suptitle(f"{title} {kind}".strip(), fontsize=10, y=1.0 + 0.35 / height)
        name = f"heatmap_{kind}.png"
        fig.savefig(out_dir / name, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(name)
    return written
