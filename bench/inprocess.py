"""The in-process benchmark: classifier latency, pipeline latency per stage, scenes recall/accuracy, memory.

Everything runs through masklite (Classifier, masklite.faces.load_detector, masklite.pipeline.predict_image):
the exact path the service takes, so the numbers are the service's numbers minus HTTP.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from bench import stats
from bench.images import BenchImage, load_scenes, make_target_image, scenes_dir
from masklite.card import ModelCard, load_card, verify_model_file
from masklite.classifier import Classifier, preprocess
from masklite.faces import YuNet, crop_face, load_detector, match_boxes
from masklite.image import decode_image
from masklite.paths import DEFAULT_MODELS_DIR
from masklite.pipeline import Models, PredictOptions, predict_image

SCHEMA_VERSION = 1
STAGES = ("decode", "detect", "classify", "total", "cpu")
IOU_MATCH = 0.3

# progress(done_fraction in [0, 1], message)
Progress = Callable[[float, str], None]


@dataclass
class BenchConfig:
    models_dir: Path = DEFAULT_MODELS_DIR
    precisions: list[str] | None = None  # None: every model in the card
    threads: list[int] = field(default_factory=lambda: [1, 2])
    batch_sizes: list[int] = field(default_factory=lambda: [1, 4])
    runs: int = 100  # timed classifier calls per (model, threads, batch)
    warmup: int = 10
    pipeline_runs: int = 50  # timed runs on the 640x480 target image per (model, threads)
    scene_repeats: int = 1  # timed passes over the image set per (model, threads)
    scenes_dir: Path | None = None
    scene_limit: int | None = None  # first N scenes only (short runs: tests, CI)
    images: list[BenchImage] | None = None  # given images replace the scenes set
    detector_path: Path | None = None
    include_pipeline: bool = True
    detect_max_side: int | None = None  # a what-if: YuNet input size (default masklite.faces.DETECT_MAX_SIDE)
    detector_runtime: str | None = None  # None: the card's detector.runtime


class Steps:
    """Counts finished units of work for the progress callback."""

    def __init__(self, total: int, progress: Progress | None):
        self.total, self.done, self.progress = max(total, 1), 0, progress

    def tick(self, message: str, units: int = 1) -> None:
        self.done += units
        if self.progress is not None:
            self.progress(min(self.done / self.total, 1.0), message)


class SceneScore:
    """Face recall (IoU >= 0.3 with annotated boxes) and label accuracy on the faces that were found."""

    def __init__(self) -> None:
        self.truth: dict[str, int] = {}
        self.found: dict[str, int] = {}
        self.correct: dict[str, int] = {}
        self.detections = 0
        self.unmatched_detections = 0
        self.images = 0

    def add(self, image: BenchImage, faces: list) -> None:
        if not image.annotated:
            return
        self.images += 1
        self.detections += len(faces)
        matches = match_boxes([t.box for t in image.truth], [f.box for f in faces], IOU_MATCH)
        self.unmatched_detections += len(faces) - len(matches)
        for t in image.truth:
            self.truth[t.label] = self.truth.get(t.label, 0) + 1
        for i, j in matches:
            label = image.truth[i].label
            self.found[label] = self.found.get(label, 0) + 1
            if faces[j].label == label:
                self.correct[label] = self.correct.get(label, 0) + 1

    def result(self) -> dict[str, object]:
        n_truth, n_found, n_correct = (sum(d.values()) for d in (self.truth, self.found, self.correct))
        per_label = {
            label: {
                "annotated": n,
                "found": self.found.get(label, 0),
                "recall": _ratio(self.found.get(label, 0), n),
                "label_accuracy": _ratio(self.correct.get(label, 0), self.found.get(label, 0)),
            }
            for label, n in sorted(self.truth.items())
        }
        return {
            "images": self.images,
            "annotated_faces": n_truth,
            "found_faces": n_found,
            "recall": _ratio(n_found, n_truth),
            "label_accuracy": _ratio(n_correct, n_found),
            "detections": self.detections,
            # the scenes do not annotate every face, so these are not all false positives
            "unmatched_detections": self.unmatched_detections,
            "per_label": per_label,
            "iou_threshold": IOU_MATCH,
        }


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def target_boxes(
    card: ModelCard, classifier: Classifier, detector: YuNet | None, image: BenchImage | None
) -> list[tuple[int, int, int, int]]:
    """The faces the pipeline finds on the image (its annotated faces when there is no detector)."""
    if image is None:
        return []
    if detector is None:
        return [t.box for t in image.truth]
    return [
        f.box for f in predict_image(image.data, Models(card, classifier, detector), PredictOptions()).faces
    ]


def face_batch(
    card: ModelCard,
    image: BenchImage | None,
    boxes: list[tuple[int, int, int, int]],
    n: int,
    precision: str | None = None,
) -> np.ndarray:
    """n face crops preprocessed for one model (its own input spec): the classifier benchmark's input, cut
    at `boxes` by the pipeline's own crop and preprocessing; noise when there are no faces."""
    spec = card.model_input(precision)
    crops: list[np.ndarray] = []
    if image is not None and boxes:
        rgb = decode_image(image.data)
        crops = [crop_face(rgb, box, card.crop_margin) for box in boxes]
    if not crops:
        rng = np.random.default_rng(0)
        crops = [rng.integers(0, 256, (*spec.size, 3), dtype=np.uint8)]
    crops = [crops[i % len(crops)] for i in range(n)]
    return preprocess(crops, spec)


def load_classifiers(
    card: ModelCard, models_dir: Path, precisions: list[str], threads: int = 1
) -> dict[str, Classifier]:
    """One classifier per precision, sha256-checked, with its card input spec (as the service loads them)."""
    return {
        p: Classifier(verify_model_file(card, models_dir, p), num_threads=threads, spec=card.model_input(p))
        for p in precisions
    }


def bench_classifiers(
    classifiers: dict[str, Classifier], batches: dict[str, np.ndarray], runs: int, warmup: int
) -> dict[str, dict[str, object]]:
    """Classifier latency per precision, the precisions interleaved call by call.

    Interleaving puts every precision under the same background load (a shared 2-core machine), so
    their ratio holds even when the absolute times drift.
    """
    for precision, classifier in classifiers.items():
        for _ in range(warmup):
            classifier.predict(batches[precision])
    samples: dict[str, list[float]] = {p: [] for p in classifiers}
    cpu: dict[str, list[float]] = {p: [] for p in classifiers}
    for _ in range(runs):
        for precision, classifier in classifiers.items():
            c0, t0 = time.process_time(), time.perf_counter()
            classifier.predict(batches[precision])
            samples[precision].append((time.perf_counter() - t0) * 1e3)
            cpu[precision].append((time.process_time() - c0) * 1e3)
    return {
        p: {
            "batch": len(batches[p]),
            "input_size": list(batches[p].shape[1:3]),
            "latency_ms": stats.summarize(v),
            "per_face_ms": stats.summarize(np.asarray(v) / len(batches[p])),
            # CPU time of the whole process (every interpreter thread): what the work costs, without the
            # time spent preempted by other processes; the CI ratio check reads this one
            "cpu_per_face_ms": stats.summarize(np.asarray(cpu[p]) / len(batches[p])),
        }
        for p, v in samples.items()
    }


def run_pipeline_once(
    image: BenchImage,
    card: ModelCard,
    classifier: Classifier,
    detector: YuNet | None,
    detect_size: int | None = None,
    precision: str | None = None,
) -> tuple[dict[str, float], list]:
    """decode -> detect -> classify, as the service does it (predict_image); stage times in ms (+ CPU)."""
    options = PredictOptions(model=precision, detect_size=detect_size)
    c0, t0 = time.process_time(), time.perf_counter()
    res = predict_image(image.data, Models(card, classifier, detector), options)
    t2, c2 = time.perf_counter(), time.process_time()
    timings = {
        "decode": res.timings_ms["decode"],
        "detect": res.timings_ms.get("detect", 0.0),
        "classify": res.timings_ms.get("classify", 0.0),
        "total": (t2 - t0) * 1e3,
        "cpu": (c2 - c0) * 1e3,  # every thread of this process: what one image costs the machine
    }
    return timings, res.faces


def _stage_summary(rows: list[dict[str, float]]) -> dict[str, dict[str, float | int]]:
    return {stage: stats.summarize([r[stage] for r in rows]) for stage in STAGES}


def bench_pipeline(
    images: list[BenchImage],
    card: ModelCard,
    classifier: Classifier,
    detector: YuNet | None,
    repeats: int,
    score: SceneScore | None,
    tick: Callable[[str], None],
    precision: str | None = None,
    detect_size: int | None = None,
) -> dict[str, object]:
    """The pipeline on every image of the set, `repeats` passes; scored on the first pass."""

    def run(image: BenchImage) -> tuple[dict[str, float], list]:
        return run_pipeline_once(image, card, classifier, detector, detect_size, precision)

    rows: list[dict[str, float]] = []
    per_image: dict[str, list[float]] = {}
    faces_per_image: dict[str, int] = {}
    if images:
        run(images[0])  # warm-up
    for rep in range(repeats):
        for image in images:
            timings, faces = run(image)
            rows.append(timings)
            per_image.setdefault(image.name, []).append(timings["total"])
            if rep == 0:
                faces_per_image[image.name] = len(faces)
                if score is not None:
                    score.add(image, faces)
            tick(image.name)
    return {
        "images": len(images),
        "repeats": repeats,
        "stages_ms": _stage_summary(rows) if rows else {},
        "per_image_total_p50_ms": {k: round(float(np.median(v)), 3) for k, v in per_image.items()},
        "faces_per_image": faces_per_image,
    }


def bench_target(
    image: BenchImage,
    card: ModelCard,
    classifiers: dict[str, Classifier],
    detector: YuNet | None,
    runs: int,
    warmup: int,
    tick: Callable[[str], None],
    detect_size: int | None = None,
) -> dict[str, dict[str, object]]:
    """Pipeline per stage on one image, per precision, interleaved run by run (see bench_classifiers)."""
    for precision, classifier in classifiers.items():
        for _ in range(warmup):
            run_pipeline_once(image, card, classifier, detector, detect_size, precision)
    rows: dict[str, list[dict[str, float]]] = {p: [] for p in classifiers}
    faces: dict[str, int] = {}
    for _ in range(runs):
        for precision, classifier in classifiers.items():
            timings, found = run_pipeline_once(image, card, classifier, detector, detect_size, precision)
            rows[precision].append(timings)
            faces[precision] = len(found)
            tick(f"{precision} {image.name}")
    return {
        p: {"image": image.name, "bytes": len(image.data), "faces": faces[p], "stages_ms": _stage_summary(r)}
        for p, r in rows.items()
    }


def detector_or_problem(
    card: ModelCard, explicit: Path | None, runtime: str | None = None, models_dir: Path = DEFAULT_MODELS_DIR
) -> tuple[YuNet | None, str | None]:
    """The detector the service would use (masklite.faces.load_detector; the card's runtime unless `runtime`
    says otherwise) at the default input size, or None and why: a benchmark runs without one."""
    try:
        return load_detector(card.detector, models_dir, runtime=runtime, path=explicit), None
    except (FileNotFoundError, ValueError) as exc:
        return None, str(exc)


def run_benchmark(config: BenchConfig, progress: Progress | None = None) -> dict[str, object]:
    """The whole in-process benchmark -> a JSON-able dict (schema in BENCHMARKS.md)."""
    started = time.time()
    before = stats.snapshot()
    card = load_card(config.models_dir)
    precisions = config.precisions or list(card.models)
    unknown = [p for p in precisions if p not in card.models]
    if unknown:
        raise ValueError(f"models {unknown} are not in the card (has {sorted(card.models)})")
    detector, detector_problem = detector_or_problem(
        card, config.detector_path, config.detector_runtime, config.models_dir
    )
    detect_size = config.detect_max_side  # None: the detector's own default (DETECT_MAX_SIDE)

    scene_dir = scenes_dir(config.scenes_dir)
    scenes = load_scenes(scene_dir) if scene_dir is not None and (scene_dir / "images").is_dir() else []
    target = make_target_image(scenes) if scenes else None
    image_set = config.images if config.images is not None else scenes[: config.scene_limit]
    image_set_name = "uploaded" if config.images is not None else ("scenes" if scenes else "none")
    if config.images is not None and target is None and config.images:
        target = config.images[0]  # the caller's first image stands in for the 640x480 target

    n_combo = len(precisions) * len(config.threads)
    pipe_units = (config.pipeline_runs if target else 0) + len(image_set) * config.scene_repeats
    steps = Steps(
        n_combo * len(config.batch_sizes) + (n_combo * pipe_units if config.include_pipeline else 0), progress
    )

    # the classifier benchmark's faces: what the pipeline finds on the target
    finder = load_classifiers(card, config.models_dir, precisions[:1])[precisions[0]]
    boxes = target_boxes(card, finder, detector, target)
    del finder
    rss_start = stats.rss_mb()
    batches = {n: {p: face_batch(card, target, boxes, n, p) for p in precisions} for n in config.batch_sizes}
    result: dict[str, object] = {
        "schema": SCHEMA_VERSION,
        "kind": "masklite-benchmark",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": stats.machine_info(),
        "card": {
            "name": card.name,
            "version": card.version,
            "labels": card.labels,
            "input": list(card.input.size),
        },
        "config": {
            "precisions": precisions,
            "threads": config.threads,
            "batch_sizes": config.batch_sizes,
            "runs": config.runs,
            "warmup": config.warmup,
            "pipeline_runs": config.pipeline_runs,
            "scene_repeats": config.scene_repeats,
            "scene_limit": config.scene_limit,
            "image_set": image_set_name,
            "detect_max_side": detect_size or (detector.max_side if detector is not None else None),
            "images": len(image_set),
        },
        "detector": {
            "available": detector is not None,
            "problem": detector_problem,
            "runtime": detector.runtime if detector is not None else None,
        },
        "models": {},
    }
    models: dict[str, dict[str, object]] = {}
    paths = {p: verify_model_file(card, config.models_dir, p) for p in precisions}
    scores = {p: SceneScore() for p in precisions}
    for precision, path in paths.items():
        models[precision] = {
            "file": path.name,
            "bytes": path.stat().st_size,
            "sha256": card.models[precision].sha256,
            "input_size": list(card.model_input(precision).size),
            "card_metrics": card.models[precision].metrics.get("test", {}),
            "threads": {},
        }
    for threads in config.threads:
        cv2.setNumThreads(threads)
        gc.collect()
        classifiers: dict[str, Classifier] = {}
        per_thread: dict[str, dict[str, object]] = {}
        for precision, path in paths.items():
            rss_before = stats.rss_mb()
            classifiers[precision] = Classifier(path, num_threads=threads, spec=card.model_input(precision))
            rss_loaded = stats.rss_mb()
            per_thread[precision] = {
                "rss_model_mb": round((rss_loaded or 0) - (rss_before or 0), 1),
                "classifier": {},
            }
        for n, per_model in batches.items():
            for precision, row in bench_classifiers(
                classifiers, per_model, config.runs, config.warmup
            ).items():
                per_thread[precision]["classifier"][f"batch{n}"] = row  # type: ignore[index]
            steps.tick(f"threads={threads} classifier batch {n}", len(classifiers))
        if config.include_pipeline:

            def tick(name: str, t: int = threads) -> None:
                steps.tick(f"threads={t} pipeline {name}")

            if target is not None:
                warm = min(config.warmup, 5)
                for precision, row in bench_target(
                    target, card, classifiers, detector, config.pipeline_runs, warm, tick, detect_size
                ).items():
                    per_thread[precision]["target"] = row
            if image_set:
                for precision, classifier in classifiers.items():
                    # recall/accuracy do not depend on threads: score the first thread setting only
                    per_thread[precision]["images"] = bench_pipeline(
                        image_set,
                        card,
                        classifier,
                        detector,
                        config.scene_repeats,
                        scores[precision] if threads == config.threads[0] else None,
                        lambda name, p=precision: tick(f"{p} {name}"),
                        precision,
                        detect_size,
                    )
        for precision in precisions:
            models[precision]["threads"][str(threads)] = per_thread[precision]  # type: ignore[index]
        del classifiers
    for precision, score in scores.items():
        if config.include_pipeline and score.images:
            models[precision]["scenes"] = score.result()
    cv2.setNumThreads(-1)
    result["models"] = models
    result["speedup"] = speedups(models)
    result["memory"] = {
        "rss_start_mb": rss_start,
        "rss_end_mb": stats.rss_mb(),
        "peak_rss_mb": stats.peak_rss_mb(),
    }
    result["duration_s"] = round(time.time() - started, 2)
    result["conditions"] = stats.conditions(before, stats.snapshot())
    return result


def _get(d: object, *keys: str) -> float | None:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return float(d) if isinstance(d, int | float) else None


def speedups(models: dict[str, dict[str, object]], base: str = "float32") -> dict[str, object]:
    """p50 ratio base/other for the classifier (per batch) and the target pipeline, per thread count."""
    out: dict[str, object] = {}
    if base not in models:
        return out
    for precision, entry in models.items():
        if precision == base:
            continue
        per: dict[str, object] = {}
        for threads, other in entry.get("threads", {}).items():  # type: ignore[union-attr]
            ref = models[base]["threads"].get(threads)  # type: ignore[union-attr]
            if ref is None:
                continue
            row: dict[str, float | None] = {}
            for key in other.get("classifier", {}):
                a = _get(ref, "classifier", key, "latency_ms", "p50")
                b = _get(other, "classifier", key, "latency_ms", "p50")
                row[f"classifier_{key}"] = round(a / b, 3) if a and b else None
                a = _get(ref, "classifier", key, "cpu_per_face_ms", "p50")
                b = _get(other, "classifier", key, "cpu_per_face_ms", "p50")
                row[f"classifier_{key}_cpu"] = round(a / b, 3) if a and b else None
            a = _get(ref, "target", "stages_ms", "total", "p50")
            b = _get(other, "target", "stages_ms", "total", "p50")
            row["pipeline_target"] = round(a / b, 3) if a and b else None
            per[threads] = row
        out[f"{precision}_vs_{base}"] = per
    return out
