"""The pipeline stages behind `python -m training <command>`; each reads the previous stage's work files."""

from __future__ import annotations

import json
import platform
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from masklite.card import DetectorSpec, ModelCard, ModelEntry, load_card, save_card
from masklite.paths import sha256_file
from training.config import FeatureConfig, HeadConfig, PrepareConfig
from training.export import (
    FLOAT32_FILE,
    INT8_FILE,
    compose,
    convert,
    representative_indices,
    saved_model,
)
from training.features import build_backbone, extract_features, input_spec, load_split
from training.finetune import FINETUNE_DIR
from training.head import save_history, train_head
from training.prepare import atomic_dir, commit_dir, load_manifest, prepare

REPRESENTATIVE_SAMPLES = 200


def stage_prepare(
    data_dir: Path,
    detector: Path,
    work: Path,
    cfg: PrepareConfig,
    progress: bool = True,
    datasets_root: Path | None = None,
) -> dict:
    return prepare(data_dir, detector, work / "prepare", cfg, progress, datasets_root)


def stage_features(
    data_dir: Path, work: Path, cfg: FeatureConfig, weights: str, progress: bool = True
) -> dict:
    _, report = load_manifest(work / "prepare")
    return extract_features(
        work, data_dir, work / "features", cfg, report["config"]["crop_margin"], weights, progress
    )


def load_features_meta(work: Path) -> dict:
    path = work / "features" / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `python -m training features` first")
    return json.loads(path.read_text())


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
    tmp = atomic_dir(work / "train")
    try:
        head.save(tmp / "head.keras")
        save_history(history, tmp / "history.json")
        info = {
            "config": asdict(cfg),
            "seconds": seconds,
            "train_vectors": int(len(train["X"])),
            "final": {k: v[-1] for k, v in history.items()},
        }
        (tmp / "train.json").write_text(json.dumps(info, indent=2) + "\n")
        commit_dir(tmp, work / "train")
        shutil.rmtree(work / FINETUNE_DIR, ignore_errors=True)  # it started from the previous head
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def composed_model(work: Path, weights: str | None):
    """Backbone (+ ImageNet weights) and the trained head as one Keras model on normalised images."""
    import keras

    meta = load_features_meta(work)
    size = int(meta["config"]["input_size"])
    head_path = work / "train" / "head.keras"
    if not head_path.is_file():
        raise FileNotFoundError(f"{head_path} not found: run `python -m training train` first")
    backbone = build_backbone(size, meta["config"]["alpha"], weights)
    tuned = work / FINETUNE_DIR
    if (tuned / "head.keras").is_file():  # the fine-tuned upper blocks and head, when that stage ran
        backbone.load_weights(tuned / "backbone.weights.h5")
        head_path = tuned / "head.keras"
    head = keras.models.load_model(head_path)
    return compose(backbone, head, size), meta


def _finetune_info(work: Path) -> dict | None:
    path = work / FINETUNE_DIR / "finetune.json"
    return json.loads(path.read_text()) if path.is_file() else None


def representative_batch(
    work: Path, meta: dict, n: int = REPRESENTATIVE_SAMPLES, seed: int = 0
) -> np.ndarray:
    from masklite.classifier import normalize

    with np.load(work / "features" / "crops_train.npz") as z:
        crops, y = z["crops"], z["y"]
    idx = representative_indices(y, n, seed)
    return normalize(crops[idx], input_spec(int(meta["config"]["input_size"])))


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def library_versions() -> dict:
    import cv2
    import keras
    import sklearn
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
    t0 = time.perf_counter()
    rep = representative_batch(work, meta, seed=seed)
    with saved_model(model, [1, size, size, 3]) as saved:
        t1 = time.perf_counter()
        f32 = convert(saved)
        t2 = time.perf_counter()
        i8 = convert(saved, rep)
        t3 = time.perf_counter()
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = atomic_dir(models_dir / ".export")
    try:
        (tmp / FLOAT32_FILE).write_bytes(f32)
        (tmp / INT8_FILE).write_bytes(i8)
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
            for p, f in (("float32", FLOAT32_FILE), ("int8", INT8_FILE))
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
                    "frozen": _finetune_info(work) is None,
                    "fine_tuned_from": None
                    if _finetune_info(work) is None
                    else "block_13 (blocks 13-16, Conv_1)",
                    "pooling": "global average",
                    "feature_dim": 1280,
                },
                "features": meta["config"],
                "feature_vectors": meta["counts"],
                "head": train_info["config"],
                "head_depth_counts_output_layer": True,
                "final_epoch": train_info["final"],
                **({"finetune": _finetune_info(work)} if _finetune_info(work) else {}),
                "export_seconds": {
                    "saved_model": round(t1 - t0, 1),
                    "float32": round(t2 - t1, 1),
                    "int8": round(t3 - t2, 1),
                },
            },
            versions=library_versions(),
        )
        for f in (FLOAT32_FILE, INT8_FILE):
            (tmp / f).replace(models_dir / f)
        from training.micro import carry_over_micro  # keep models.micro (python -m training micro) if valid

        carry_over_micro(models_dir, card)
        save_card(card, models_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return card
