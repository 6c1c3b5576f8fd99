"""PNG plots for the model card (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def confusion_matrices(mats: dict[str, list[list[int]]], labels: list[str], path: Path, title: str) -> None:
    fig, axes = plt.subplots(1, len(mats), figsize=(3.6 * len(mats), 3.4), squeeze=False)
    for ax, (name, m) in zip(axes[0], mats.items(), strict=True):
        m = np.asarray(m)
        ax.imshow(m, cmap="Blues")
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(
                    j,
                    i,
                    str(m[i, j]),
                    ha="center",
                    va="center",
                    color="white" if m[i, j] > m.max() / 2 else "black",
                    fontsize=12,
                )
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def reliability(tables: dict[str, list[dict]], eces: dict[str, float], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.plot([0.5, 1], [0.5, 1], "k--", lw=1, label="perfect calibration")
    for name, table in tables.items():
        conf = [b["confidence"] for b in table]
        acc = [b["accuracy"] for b in table]
        ax.plot(conf, acc, "o-", label=f"{name} (ECE {eces[name]:.4f})")
    ax.set_xlabel("mean confidence (top class)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0.5, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_title("Reliability, test split")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def training_curves(history: dict[str, list[float]], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    epochs = np.arange(1, len(history["loss"]) + 1)
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        ax.plot(epochs, history[key], label="train (augmented views)")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], label="val")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def bars(
    rows: list[dict], x_key: str, y_keys: list[str], path: Path, title: str, ylabel: str = "accuracy"
) -> None:
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / len(y_keys)
    xs = np.arange(len(rows))
    for k, key in enumerate(y_keys):
        means = [r[key]["mean"] if isinstance(r[key], dict) else r[key] for r in rows]
        sds = [r[key]["sd"] if isinstance(r[key], dict) else 0.0 for r in rows]
        ax.bar(xs + k * width, means, width, yerr=sds, capsize=3, label=key)
    ax.set_xticks(xs + width * (len(y_keys) - 1) / 2, [r[x_key] for r in rows], fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0.5, 1.0)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
