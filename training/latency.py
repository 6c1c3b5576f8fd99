"""Latency of the shipped float32 and int8 models: LiteRT through masklite.classifier.Classifier, 1 thread,
batch 1. `evaluate` records it in the card; `python -m training latency` re-measures it alone."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from masklite.card import ModelCard, load_card, save_card
from masklite.classifier import Classifier
from training.export import PRECISIONS


def measure_latency(paths: dict[str, Path], size: tuple[int, int], runs: int = 400, rounds: int = 20) -> dict:
    """ms per image, 1 thread, batch 1. Precisions are interleaved in short rounds so load from other
    processes on a shared CPU hits both alike; the 10th percentile is reported beside the median because
    it is far less sensitive to that load."""
    x = np.random.default_rng(0).uniform(-1, 1, (1, *size, 3)).astype(np.float32)
    clfs = {p: Classifier(path, num_threads=1) for p, path in paths.items()}
    times: dict[str, list[float]] = {p: [] for p in clfs}
    for clf in clfs.values():
        for _ in range(20):
            clf.predict(x)
    load_before = os.getloadavg()[0]
    for _ in range(rounds):
        for p, clf in clfs.items():
            for _ in range(runs // rounds):
                t0 = time.perf_counter()
                clf.predict(x)
                times[p].append((time.perf_counter() - t0) * 1e3)
    load = {
        "cpu": cpu_summary(),
        "loadavg_1min_before": round(load_before, 2),
        "loadavg_1min_after": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    return {
        p: {
            "median_ms": float(np.median(t)),
            "p10_ms": float(np.percentile(t, 10)),
            "p90_ms": float(np.percentile(t, 90)),
            "min_ms": float(np.min(t)),
            "runs": len(t),
            "threads": 1,
            "batch": 1,
            **load,
        }
        for p, t in times.items()
    }


def cpu_summary() -> str:
    """CPU model and the SIMD features that decide int8 speed (XNNPACK's fast int8 kernels need VNNI)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    model = next(
        (ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "?"
    )
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
    simd = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return f"{model} ({', '.join(simd) or 'no AVX2'})"


def speedups(latency: dict) -> dict[str, float]:
    """int8 speed-up over float32, at the median and at the 10th percentile (the card's two figures)."""
    return {
        "int8_speedup_vs_float32": latency["float32"]["median_ms"] / latency["int8"]["median_ms"],
        "int8_speedup_vs_float32_p10": latency["float32"]["p10_ms"] / latency["int8"]["p10_ms"],
    }


def measure_card_models(card: ModelCard, models_dir: Path) -> dict:
    """Latency of the card's float32 and int8 files, per precision."""
    return measure_latency({p: models_dir / card.models[p].file for p in PRECISIONS}, tuple(card.input.size))


def remeasure_latency(models_dir: Path) -> ModelCard:
    """Re-measure only the latency (e.g. on a quiet machine) and update the card in place."""
    card = load_card(models_dir)
    latency = measure_card_models(card, models_dir)
    for p in PRECISIONS:
        card.models[p].latency_ms = latency[p]  # type: ignore[attr-defined]
    extra = card.model_extra if card.model_extra is not None else {}
    extra.setdefault("evaluation", {}).update(speedups(latency))
    save_card(card, models_dir)
    return card
