"""The micro model's `ship` stage: the selected run copied to models/, measured like the main models
(evalset, scenes, its own cross-source threshold), verified in TFLM, written into the card as models.micro,
and reported (reports/micro.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from masklite.card import InputSpec, ModelCard, ModelEntry, load_card, save_card
from masklite.classifier import Classifier, preprocess
from masklite.evalset import default_evalset_path, load_evalset_file
from masklite.faces import load_detector
from masklite.files import write_bytes_atomic
from masklite.paths import sha256_file
from training import evaluate_cross
from training.artifacts import crops_path, feature_config
from training.evaluate import classify_fn
from training.micro.data import MICRO_DIR
from training.micro.entry import (
    MAX_ACC_GAP,
    MAX_ARENA_BYTES,
    MAX_FILE_BYTES,
    MICRO_FILE,
    MICRO_KEY,
    SELECT_TIE,
)
from training.micro.report import write_report
from training.micro.runs import RunResult, micro_spec, runs_dir, select
from training.micro.tflm import agreement, allocations_report, latency_ms, min_arena, quantize_input
from training.model_card_md import write_model_card_md
from training.scenes import load_scenes, scene_metrics
from training.scores import classification_metrics, summary


def _evalset_inputs(models_dir: Path, card: ModelCard, spec: InputSpec) -> tuple[np.ndarray, np.ndarray, str]:
    """The shipped evaluation set (models/evalset.zip, test-split crops) through the card's preprocessing
    at the micro model's `spec`."""
    path = default_evalset_path(models_dir)
    ev = load_evalset_file(path, card)
    return preprocess(list(ev.images), spec), ev.labels, path.name


def verify_in_tflm(model_path: Path, x: np.ndarray) -> dict:
    """Smallest arena (searched twice: it must reproduce), then TFLM vs LiteRT on `x` AT that arena."""
    first, second = min_arena(model_path), min_arena(model_path)
    if first["arena_bytes"] != second["arena_bytes"]:
        raise RuntimeError(f"TFLM arena search is not reproducible: {first} vs {second}")
    arena = first["arena_bytes"]
    model = model_path.read_bytes()
    agree = agreement(model, quantize_input(model, x), arena)
    return {
        "arena": first | {"repeat_arena_bytes": second["arena_bytes"]},
        "agreement": agree,
        "latency_ms": latency_ms(model, arena),
        "allocations": allocations_report(model, arena),
    }


def stage_ship(
    work: Path,
    models_dir: Path,
    reports_dir: Path,
    results: list[RunResult],
    scenes_dir: Path | None,
    detector_path: Path | None,
) -> ModelEntry:
    """Copy the selected run to models/, measure it like the others, add models.micro, write the report."""
    card = load_card(models_dir)
    if "int8" not in card.models:
        raise FileNotFoundError(f"{models_dir}/model_card.json has no int8 model: build the main model first")
    chosen = select(results)
    cfg = chosen.config
    spec = micro_spec(int(cfg["net"]["size"]))
    src = runs_dir(work) / cfg["name"] / "int8.tflite"
    write_bytes_atomic(models_dir / MICRO_FILE, src.read_bytes())
    path = models_dir / MICRO_FILE
    clf = Classifier(path, num_threads=1)
    if clf.precision != "int8" or clf.input_size != tuple(spec.size):
        raise ValueError(f"{src}: expected an int8 model with a {spec.size} input")

    metrics: dict = {"test": chosen.int8["test"], "val": chosen.int8["val"]}
    x_ev, y_ev, ev_name = _evalset_inputs(models_dir, card, spec)
    metrics["evalset"] = summary(
        classification_metrics(clf.predict(x_ev), y_ev, card.labels, card.mask_index)
    )
    if scenes_dir is not None:
        detector = None
        if detector_path is not None:
            detector = load_detector(card.detector, models_dir, path=detector_path)
        metrics["scenes"] = scene_metrics(
            load_scenes(scenes_dir), card.labels, classify_fn(clf, spec), card.crop_margin, detector
        )
    if crops_path(work, "xval").is_file():  # its own threshold, chosen on xval like the others
        classify = classify_fn(clf, spec)
        chosen_t = evaluate_cross.choose_thresholds(work, card, {MICRO_KEY: classify})["decision"][MICRO_KEY]
        threshold = chosen_t["threshold"]
        metrics["cross_source"] = evaluate_cross.score_model(
            work, card, MICRO_KEY, classify, threshold, card.min_judgeable_face
        )
    else:
        threshold = 0.5
    tflm = verify_in_tflm(path, x_ev)
    tflm["agreement"]["source"] = ev_name
    main_test = card.models["int8"].metrics.get("test", {}).get("accuracy")
    gap = None if main_test is None else float(main_test - metrics["test"]["accuracy"])
    teacher = json.loads((work / MICRO_DIR / "teacher" / "teacher.json").read_text())
    entry = ModelEntry(
        file=MICRO_FILE,
        sha256=sha256_file(path),
        bytes=path.stat().st_size,
        precision="int8",
        metrics=metrics,
        input=spec,
        decision_threshold=threshold,
    )
    extra = {
        "latency_ms": tflm["latency_ms"]["litert"] | {"threads": 1, "batch": 1, "runtime": "LiteRT"},
        "quantization": {
            "kind": "full-integer (weights and activations int8, int8 input/output)",
            "representative_samples": 200,
            "representative_source": "clean face crops from the train split, class-balanced, seeded",
        },
        "architecture": {
            "arch": "MobileNetV2 (training/micro/net.py)",
            **cfg["net"],
            "weights": "from scratch",
            "params_note": "no ImageNet weights exist here for alpha < 1",
        },
        "macs": chosen.macs,
        "tflm": {
            "arena_bytes": tflm["arena"]["arena_bytes"],
            "arena_search": tflm["arena"],
            "agreement_vs_litert": tflm["agreement"],
            "latency_ms": tflm["latency_ms"]["tflm"],
            "kernels": "tflite-micro Python interpreter, reference kernels on this x86 CPU",
        },
        "budgets": {
            "max_file_bytes": MAX_FILE_BYTES,
            "max_arena_bytes": MAX_ARENA_BYTES,
            "max_test_accuracy_gap_vs_int8": MAX_ACC_GAP,
        },
        "vs_int8": {"test_accuracy_gap": gap, "int8_test_accuracy": main_test},
        "training": {
            **{k: v for k, v in cfg.items() if k != "net"},
            "train_seconds": chosen.train_seconds,
            "teacher": {
                k: teacher[k] for k in ("teacher", "teacher_sha256", "check", "teacher_train_accuracy")
            },
            "data": (
                "the main pipeline's cached train views (clean, plain, degraded, synthetic-mask; "
                "every source), random h-flip"
            ),
            "feature_config": feature_config(work).__dict__,
        },
        "dataset_fingerprint": card.dataset.get("fingerprint", {}).get("sha256"),
        "selection": "distilled runs within the budgets; "
        f"best val int8 accuracy, ties within {SELECT_TIE} to "
        "the smallest file; test accuracy not used",
    }
    for k, v in extra.items():
        setattr(entry, k, v)
    card.models[MICRO_KEY] = entry
    save_card(card, models_dir)
    write_model_card_md(card, models_dir)
    allocations = tflm.pop("allocations")
    write_report(reports_dir, card, entry, results, chosen, allocations)
    return entry
