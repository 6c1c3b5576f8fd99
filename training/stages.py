"""The stages behind `python -m training <command>`, one function each, in build order: prepare -> features
-> train -> finetune -> export -> evaluate (+ latency, and the build's time record). Each reads the
previous stage's work files and writes its own atomically (masklite.files); this is the only module that
joins the stages, and none of them imports it. TensorFlow is imported inside `library_versions` only.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import cv2
import numpy as np
import sklearn

from masklite.card import DetectorSpec, ModelCard, ModelEntry, load_card, save_card
from masklite.files import atomic_dir, staged_dir
from masklite.paths import sha256_file
from training.artifacts import (
    FINETUNE_DIR,
    composed_model,
    finetune_info,
    load_features_meta,
    representative_batch,
)
from training.config import FeatureConfig, HeadConfig
from training.evaluate import evaluate_models
from training.export import MODEL_FILES, convert, saved_model
from training.features import extract_features, input_spec, load_split
from training.finetune import FinetuneConfig, finetune
from training.head import save_history, train_head
from training.latency import remeasure_latency
from training.micro.entry import carry_over_micro
from training.model_card_md import write_model_card_md
from training.prepare import load_manifest, prepare

# Two stages are their module's function as it stands:
stage_prepare = prepare  # the image folders (+ the cross-source sets) -> <work>/prepare
stage_evaluate = evaluate_models  # every measurement into the card; plots, evalset.zip, MODEL_CARD.md


def stage_features(
    data_dir: Path, work: Path, cfg: FeatureConfig, weights: str, progress: bool = True
) -> dict:
    _, report = load_manifest(work / "prepare")
    return extract_features(
        work, data_dir, work / "features", cfg, report["config"]["crop_margin"], weights, progress
    )


def stage_train(work: Path, cfg: HeadConfig, verbose: int = 2) -> dict:
    meta = load_features_meta(work)
    train, val = load_split(work / "features", "train"), load_split(work / "features", "val")
    val_clean = val["view"] == 0
    t0 = time.perf_counter()
    head, history = train_head(
        train["X"],
        train["y"],
        val["X"][val_clean],
        val["y"][val_clean],
        len(meta["labels"]),
        cfg,
        verbose=verbose,
    )
    seconds = time.perf_counter() - t0
    with staged_dir(work / "train") as tmp:
        head.save(tmp / "head.keras")
        save_history(history, tmp / "history.json")
        info = {
            "config": asdict(cfg),
            "seconds": seconds,
            "train_vectors": int(len(train["X"])),
            "final": {k: v[-1] for k, v in history.items()},
        }
        (tmp / "train.json").write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(work / FINETUNE_DIR, ignore_errors=True)  # it started from the previous head
    return info


def stage_finetune(work: Path, weights: str, cfg: FinetuneConfig, progress: bool = True) -> dict | None:
    """The upper backbone blocks + head (training.finetune); None when `cfg.epochs` is 0 (the head-only
    model ships)."""
    return finetune(work, weights, cfg, progress) if cfg.epochs > 0 else None


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def library_versions() -> dict:
    import keras  # lazy: see the module docstring
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "ai_edge_litert": _package_version("ai-edge-litert"),
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "scikit_learn": sklearn.__version__,
        "masklite": _package_version("masklite"),
    }


def _detector_runtime_fields(models_dir: Path) -> dict[str, object]:
    """The serving detector's runtime fields of the card being replaced (training does not make them)."""
    try:
        previous = load_card(models_dir).detector
    except (OSError, ValueError):
        return {}
    return {k: getattr(previous, k) for k in DetectorSpec.RUNTIME_FIELDS}


def stage_export(work: Path, models_dir: Path, weights: str, seed: int = 0) -> ModelCard:
    """Writes both .tflite files and model_card.json (metrics are filled in by evaluate).

    Files are built in a temp folder inside models_dir and moved into place, the card last, so a
    failure never leaves a card pointing at a missing or different file."""
    model, meta = composed_model(work, weights)
    size = int(meta["config"]["input_size"])
    _, report = load_manifest(work / "prepare")
    train_info = json.loads((work / "train" / "train.json").read_text())
    tuned = finetune_info(work)
    t0 = time.perf_counter()
    rep = representative_batch(work, meta, seed=seed)
    with saved_model(model, [1, size, size, 3]) as saved:
        t1 = time.perf_counter()
        f32 = convert(saved)
        t2 = time.perf_counter()
        i8 = convert(saved, rep)
        t3 = time.perf_counter()
    tflite = {"float32": f32, "int8": i8}
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = atomic_dir(models_dir / ".export")
    try:
        for p, f in MODEL_FILES.items():
            (tmp / f).write_bytes(tflite[p])
        quant = {
            "float32": {"kind": "none (float32 weights and activations)"},
            "int8": {
                "kind": "full-integer (weights and activations int8, int8 input/output)",
                "representative_samples": int(len(rep)),
                "representative_source": "clean face crops from the train split, class-balanced, seeded",
            },
        }
        entries = {
            p: ModelEntry(
                file=f,
                sha256=sha256_file(tmp / f),
                bytes=(tmp / f).stat().st_size,
                precision=p,
                quantization=quant[p],
            )
            for p, f in MODEL_FILES.items()
        }
        card = ModelCard(
            name="masklite-mobilenetv2",
            version=time.strftime("%Y%m%d"),
            labels=meta["labels"],
            input=input_spec(size),
            crop_margin=float(report["config"]["crop_margin"]),
            detector=DetectorSpec(
                **{
                    k: report["detector"][k]
                    for k in ("name", "file", "sha256", "score_threshold", "nms_threshold")
                },
                **_detector_runtime_fields(models_dir),
            ),
            models=entries,
            dataset={
                "name": Path(report["data_dir"]).name,
                "fingerprint": report["fingerprint"],
                "num_images": report["num_images"],
                "crop_rule": report["crop_rule"],
                "crop_counts": report["crop_counts"],
                "images_with_several_faces": report["images_with_several_faces"],
                "groups": report["groups"],
                **({"cross_source": report["cross_source"]} if "cross_source" in report else {}),
            },
            splits=report["splits"],
            training={
                "backbone": {
                    "arch": "MobileNetV2",
                    "alpha": meta["config"]["alpha"],
                    "weights": meta["weights"],
                    "frozen": tuned is None,
                    "fine_tuned_from": None if tuned is None else "block_13 (blocks 13-16, Conv_1)",
                    "pooling": "global average",
                    "feature_dim": 1280,
                },
                "features": meta["config"],
                "feature_vectors": meta["counts"],
                "head": train_info["config"],
                "head_depth_counts_output_layer": True,
                "final_epoch": train_info["final"],
                **({"finetune": tuned} if tuned else {}),
                "export_seconds": {
                    "saved_model": round(t1 - t0, 1),
                    "float32": round(t2 - t1, 1),
                    "int8": round(t3 - t2, 1),
                },
            },
            versions=library_versions(),
        )
        for f in MODEL_FILES.values():
            (tmp / f).replace(models_dir / f)
        carry_over_micro(models_dir, card)  # keep models.micro (python -m training micro) while valid
        save_card(card, models_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return card


def stage_latency(models_dir: Path) -> ModelCard:
    """Re-measure the float32/int8 latency alone (e.g. on a quiet machine), then MODEL_CARD.md."""
    card = remeasure_latency(models_dir)
    write_model_card_md(card, models_dir)
    return card


def record_build_times(
    models_dir: Path, timings: dict[str, float], cpu: dict[str, float], load_before: float
) -> ModelCard:
    """`build`'s wall time per stage, plus this process's CPU time (all threads), into the card and
    MODEL_CARD.md: on a CPU shared with other jobs the wall time mostly measures the neighbours, the CPU
    time measures the build."""
    card = load_card(models_dir)
    card.training["build_seconds"] = {k: round(v, 1) for k, v in timings.items()} | {
        "total": round(sum(timings.values()), 1),
        "cpus": os.cpu_count(),
        "loadavg_1min_start": round(load_before, 2),
        "loadavg_1min_end": round(os.getloadavg()[0], 2),
    }
    card.training["build_cpu_seconds"] = {k: round(v, 1) for k, v in cpu.items()} | {
        "total": round(sum(cpu.values()), 1)
    }
    save_card(card, models_dir)
    write_model_card_md(card, models_dir)
    return card
