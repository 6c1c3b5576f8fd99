"""`evaluate`: Keras, float32 TFLite and int8 TFLite on the test split and on the scene photos.

The two TFLite models run through masklite.classifier.Classifier on inputs from its `preprocess`,
the exact code the service uses. Writes metrics into model_card.json, plots into models/plots/,
the held-out evaluation set models/evalset.zip, and models/MODEL_CARD.md.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from masklite.card import ModelCard, load_card, save_card
from masklite.classifier import Classifier, preprocess
from masklite.evalset import load_evalset_file
from masklite.faces import load_detector
from masklite.files import write_bytes_atomic
from masklite.paths import sha256_file
from training import evaluate_cross as ec
from training import plots
from training.ablation import run_ablation
from training.artifacts import composed_model, crops_path, load_crops
from training.config import HeadConfig
from training.export import PRECISIONS
from training.features import load_split
from training.latency import measure_card_models, speedups
from training.model_card_md import write_model_card_md
from training.prepare import load_manifest
from training.scenes import load_scenes, scene_metrics
from training.scores import classification_metrics, summary

EVALSET_FILE = "evalset.zip"
EVALSET_PER_CLASS = 200
PLOTS_DIR = "plots"
ZIP_DATE = (2020, 1, 1, 0, 0, 0)  # fixed timestamps: the same crops give a byte-identical zip


def classify_fn(model, spec):
    """list of RGB crops (any size) -> probabilities, through the card's preprocessing."""
    if isinstance(model, Classifier):
        return lambda crops: model.predict(preprocess(crops, spec))
    return lambda crops: np.asarray(model.predict(preprocess(crops, spec), batch_size=64, verbose=0))


def write_evalset(
    work: Path, card: ModelCard, manifest, path: Path, per_class: int = EVALSET_PER_CLASS, seed: int = 0
) -> dict:
    """Up to `per_class` test-split face crops per label, at input size, JPEG q95, one folder per label."""
    crops, y, rows = load_crops(work, "test")
    rng = np.random.default_rng(seed)
    picks = np.sort(
        np.concatenate([rng.permutation(np.flatnonzero(y == k))[:per_class] for k in range(len(card.labels))])
    )
    buf = io.BytesIO()
    counts = dict.fromkeys(card.labels, 0)
    used: set[str] = set()  # `85.jpg` and `85.png` both exist: keep zip names unique
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in picks:
            label = card.labels[int(y[i])]
            name = Path(str(manifest.loc[int(rows[i]), "rel"]))
            stem = name.stem if f"{label}/{name.stem}.jpg" not in used else f"{name.stem}_{name.suffix[1:]}"
            used.add(f"{label}/{stem}.jpg")
            ok, enc = cv2.imencode(
                ".jpg", cv2.cvtColor(crops[i], cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
            )
            if not ok:
                raise RuntimeError("JPEG encoding failed")
            zf.writestr(zipfile.ZipInfo(f"{label}/{stem}.jpg", date_time=ZIP_DATE), enc.tobytes())
            counts[label] += 1
    write_bytes_atomic(path, buf.getvalue())
    return {
        "file": path.name,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "counts": counts,
        "source": "test split (group-aware; never seen in training), detector face crops",
        "format": "zip, one folder per label, JPEG q95 at model input size",
        "size": list(card.input.size),
    }


def read_evalset(path: Path, card: ModelCard) -> tuple[list[np.ndarray], np.ndarray]:
    """The shipped set through masklite.evalset, the loader the service and the robustness jobs use."""
    ev = load_evalset_file(path, card)
    return list(ev.images), ev.labels


def evaluate_models(
    work: Path,
    models_dir: Path,
    weights: str,
    scenes_dir: Path | None,
    detector_path: Path | None,
    head_cfg: HeadConfig | None = None,
    progress: bool = True,
    ablation: bool = True,
    peer_path: Path | None = None,
) -> ModelCard:
    """The `evaluate` stage: every measurement into the card, then models/MODEL_CARD.md from it (see the
    module docstring for what else it writes)."""
    card = load_card(models_dir)
    spec = card.input
    labels = card.labels
    plots_dir = models_dir / PLOTS_DIR
    plots_dir.mkdir(parents=True, exist_ok=True)
    manifest, _ = load_manifest(work / "prepare")
    keras_model, _ = composed_model(work, weights)
    paths = {p: models_dir / card.models[p].file for p in PRECISIONS}
    clfs = {p: Classifier(paths[p], num_threads=2) for p in PRECISIONS}
    runners = {"keras": classify_fn(keras_model, spec), **{p: classify_fn(clfs[p], spec) for p in PRECISIONS}}

    results: dict[str, dict] = {name: {} for name in runners}
    probs_test: dict[str, np.ndarray] = {}
    for split in ("test", "val"):
        crops, y, _ = load_crops(work, split)
        for name, run in tqdm(runners.items(), desc=f"evaluate {split}", disable=not progress):
            probs = run(list(crops))
            results[name][split] = classification_metrics(probs, y, labels, positive=card.mask_index)
            if split == "test":
                probs_test[name] = probs
    y_test = load_crops(work, "test")[1]
    parity = {
        "n": int(len(y_test)),
        "label_agreement": {
            "float32_vs_keras": float(
                (probs_test["float32"].argmax(1) == probs_test["keras"].argmax(1)).mean()
            ),
            "int8_vs_float32": float(
                (probs_test["int8"].argmax(1) == probs_test["float32"].argmax(1)).mean()
            ),
            "int8_vs_keras": float((probs_test["int8"].argmax(1) == probs_test["keras"].argmax(1)).mean()),
        },
        "max_abs_prob_diff": {
            "float32_vs_keras": float(np.abs(probs_test["float32"] - probs_test["keras"]).max()),
            "int8_vs_float32": float(np.abs(probs_test["int8"] - probs_test["float32"]).max()),
        },
        "mean_abs_prob_diff": {
            "float32_vs_keras": float(np.abs(probs_test["float32"] - probs_test["keras"]).mean()),
            "int8_vs_float32": float(np.abs(probs_test["int8"] - probs_test["float32"]).mean()),
        },
    }

    scenes, detector = None, None
    if scenes_dir is not None:
        scenes = load_scenes(scenes_dir)
        if detector_path is not None:
            detector = load_detector(card.detector, models_dir, path=detector_path)
        for name, run in runners.items():
            results[name]["scenes"] = scene_metrics(scenes, labels, run, card.crop_margin, detector)

    # evaluation set shipped beside the models, and the models' accuracy on it (decoded JPEGs)
    evalset = write_evalset(work, card, manifest, models_dir / EVALSET_FILE)
    ev_crops, ev_y = read_evalset(models_dir / EVALSET_FILE, card)
    for name, run in runners.items():
        results[name]["evalset"] = summary(
            classification_metrics(run(ev_crops), ev_y, labels, card.mask_index)
        )

    latency = measure_card_models(card, models_dir)
    speedup = speedups(latency)
    print(
        "latency (LiteRT, 1 thread, batch 1): "
        + ", ".join(
            f"{p} median {v['median_ms']:.2f} ms / p10 {v['p10_ms']:.2f} ms" for p, v in latency.items()
        )
        + f"; int8 speed-up {speedup['int8_speedup_vs_float32']:.2f}x (median), "
        f"{speedup['int8_speedup_vs_float32_p10']:.2f}x (p10); "
        f"load average {latency['int8']['loadavg_1min_before']} on {latency['int8']['cpus']} CPUs"
    )

    cross = None
    if crops_path(work, "xval").is_file() and detector_path is not None:
        cross = cross_source(
            work,
            card,
            runners,
            models_dir,
            Path(detector_path),
            peer_path,
            head_cfg,
            plots_dir,
            progress,
            ablation,
        )
        if scenes is not None and detector is not None:  # scenes-sample at the newly chosen threshold
            detector = load_detector(card.detector, models_dir, path=detector_path)
            for name, run in runners.items():
                results[name]["scenes"] = scene_metrics(scenes, labels, run, card.crop_margin, detector)

    # plots
    plots.confusion_matrices(
        {n: results[n]["test"]["confusion_matrix"] for n in runners},
        labels,
        plots_dir / "confusion_test.png",
        "Test split (group-aware)",
    )
    if scenes is not None:
        plots.confusion_matrices(
            {n: _scene_cm(results[n]["scenes"]["annotated"], labels) for n in runners},
            labels,
            plots_dir / "confusion_scenes.png",
            "Scene faces (annotated boxes)",
        )
    plots.reliability(
        {n: results[n]["test"]["reliability"] for n in runners},
        {n: results[n]["test"]["ece"] for n in runners},
        plots_dir / "reliability_test.png",
    )
    history = json.loads((work / "train" / "history.json").read_text())
    plots.training_curves(history, plots_dir / "training_curves.png")

    # card
    for p in PRECISIONS:
        entry = card.models[p]
        entry.metrics = {
            "test": summary(results[p]["test"]),
            "val": summary(results[p]["val"]),
            "evalset": results[p]["evalset"],
        }
        if "scenes" in results[p]:
            entry.metrics["scenes"] = results[p]["scenes"]
        if cross is not None:
            entry.metrics["cross_source"] = cross["models"][p]
        entry.latency_ms = latency[p]  # type: ignore[attr-defined]
    if cross is not None and "micro" in cross["models"]:
        card.models["micro"].metrics["cross_source"] = cross["models"]["micro"]
    extra = card.model_extra if card.model_extra is not None else {}
    extra["evaluation"] = {
        "keras": {
            "test": summary(results["keras"]["test"]),
            "scenes": results["keras"].get("scenes"),
            "evalset": results["keras"]["evalset"],
        },
        "parity_test": parity,
        **speedup,
        "latency_note": (
            "masklite.classifier.Classifier, LiteRT, 1 thread, batch 1, median of interleaved runs "
            "on a shared 2-core CPU"
        ),
        "scenes_note": (
            "scenes-sample: 30 photos, 88 with_mask + 30 without_mask annotated faces, a different "
            "source from training; small, so read it as a cross-source check, not a benchmark"
        ),
        "plots": sorted(f"{PLOTS_DIR}/{p.name}" for p in plots_dir.glob("*.png")),
    }
    if cross is not None:
        extra["evaluation"]["cross_source"] = {k: v for k, v in cross.items() if k != "models"}
    card.evalset = evalset  # type: ignore[attr-defined]
    save_card(card, models_dir)
    (models_dir / "evaluation_report.json").write_text(json.dumps(_jsonable(results), indent=1) + "\n")
    write_model_card_md(card, models_dir)
    return card


def cross_source(
    work: Path,
    card: ModelCard,
    runners: dict,
    models_dir: Path,
    detector_path: Path,
    peer_path: Path | None,
    head_cfg: HeadConfig | None,
    plots_dir: Path,
    progress: bool,
    ablation: bool,
) -> dict:
    """Thresholds chosen on xval (written into `card`), then every cross-source score for the card."""
    _, report = load_manifest(work / "prepare")
    root = Path(report["cross_source"]["root"])
    xval_scenes = ec.scenes_of(work, root, "xval", ("macwinwin", "wider"))
    sweep = ec.detector_sweep(
        xval_scenes, ec.detections(xval_scenes, detector_path, ec.DETECTOR_GRID[0], progress)
    )
    card.detector.score_threshold = sweep["chosen"]
    models = {p: runners[p] for p in PRECISIONS}
    if "micro" in card.models:  # the micro model carried over from `python -m training micro`
        micro = Classifier(models_dir / card.models["micro"].file, num_threads=2)
        models["micro"] = classify_fn(micro, card.model_input("micro"))
    chosen = ec.choose_thresholds(work, card, models)
    for p in models:
        card.models[p].decision_threshold = chosen["decision"][p]["threshold"]
    card.min_judgeable_face = chosen["min_face"]["min_face_size"]
    out: dict = {"detector_sweep": sweep, "thresholds": chosen, "models": {}, "end_to_end": {}}
    for p in models:
        out["models"][p] = ec.score_model(
            work, card, p, models[p], card.models[p].decision_threshold, card.min_judgeable_face
        )
    for name, scenes_part, sources in (
        ("xtest", "xtest", ("macwinwin", "wider")),
        ("scenes", "test", ("scenes",)),
    ):
        scenes = ec.scenes_of(work, root, scenes_part, sources)
        found = ec.detections(scenes, detector_path, ec.DETECTOR_GRID[0], progress)
        out["end_to_end"][name] = {
            p: ec.end_to_end(
                scenes, found, card.detector.score_threshold, card.crop_margin, models[p], card, p
            )
            for p in PRECISIONS
        }
        if peer_path is not None and peer_path.is_file():
            crops = {}
            if name == "xtest":
                for part in ("xtest",):
                    feats = load_split(work / "features", part)
                    part_crops, part_y, _ = load_crops(work, part)
                    crops[part] = (list(part_crops), part_y, feats["source"][feats["view"] == 0])
            out.setdefault("peer", {})[name] = ec.peer_scores(scenes, peer_path, crops, card.labels, progress)
    out["gallery"] = ec.error_gallery(
        work,
        card,
        models["int8"],
        card.models["int8"].decision_threshold,
        plots_dir / "errors_cross_source.png",
    )
    if ablation:
        out["ablation"] = run_ablation(work, card.labels, head_cfg or HeadConfig(), progress=progress)
    return out


def _scene_cm(block: dict, labels: list[str]) -> list[list[int]]:
    """Confusion matrix from per-class accuracy blocks (2 classes)."""
    cm = []
    for k, lab in enumerate(labels):
        n = block["per_class"][lab]["n"]
        right = round((block["per_class"][lab]["accuracy"] or 0) * n)
        row = [0] * len(labels)
        row[k] = right
        row[1 - k if len(labels) == 2 else k] += n - right
        cm.append(row)
    return cm


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
