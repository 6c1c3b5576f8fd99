"""Old and new detector paths in one run: OpenCV's FaceDetectorYN against the card's runtime (LiteRT), and
onnxruntime too when it is installed.

    python -m bench.detectors [--runs 50] [--json out.json]

Same images, same classifier (int8), same card thresholds. Reports detector CPU ms on the 640x480 target
(1 thread each, all interleaved call by call, so all see the same background load) and each one's speed-up
over OpenCV, and on the scenes: each path's face recall, the share of OpenCV's faces the new path finds
with box IoU >= 0.9, and the share of faces found by both that get the same label.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from typing import Any

import numpy as np
from tqdm import tqdm

from bench import stats
from bench.images import BenchImage, make_target_image
from bench.inprocess import SceneScore, detector_or_problem, load_classifiers, run_pipeline_once
from bench.sections import SectionOptions, run_section_cli, start_section
from masklite.card import ModelCard
from masklite.classifier import Classifier
from masklite.faces import YuNet, match_boxes
from masklite.image import decode_image

BASELINE = "opencv"
SAME_FACE_IOU = 0.5  # a face both paths found, for the label comparison


def detect_cpu_ms(detectors: dict[str, YuNet], rgb: np.ndarray, runs: int) -> dict[str, dict]:
    """Thread CPU ms of detect() per detector, interleaved run by run."""
    for det in detectors.values():
        det.detect(rgb)
    samples: dict[str, list[float]] = {name: [] for name in detectors}
    for _ in range(runs):
        for name, det in detectors.items():
            c0 = time.thread_time()
            det.detect(rgb)
            samples[name].append((time.thread_time() - c0) * 1e3)
    return {name: stats.summarize(v) for name, v in samples.items()}


def compare_on_scenes(
    scenes: list[BenchImage],
    card: ModelCard,
    classifier: Classifier,
    baseline: YuNet,
    candidate: YuNet,
) -> dict[str, Any]:
    scores = {"baseline": SceneScore(), "candidate": SceneScore()}
    base_faces = iou90 = both = same_label = 0
    for scene in tqdm(scenes, desc="detectors: scenes", file=sys.stderr, leave=False):
        _, old = run_pipeline_once(scene, card, classifier, baseline, precision="int8")
        _, new = run_pipeline_once(scene, card, classifier, candidate, precision="int8")
        scores["baseline"].add(scene, old)
        scores["candidate"].add(scene, new)
        base_faces += len(old)
        iou90 += len(match_boxes([f.box for f in old], [f.box for f in new], 0.9))
        pairs = match_boxes([f.box for f in old], [f.box for f in new], SAME_FACE_IOU)
        both += len(pairs)
        same_label += sum(old[i].label == new[j].label for i, j in pairs)
    base, cand = scores["baseline"].result(), scores["candidate"].result()
    drop = None
    if isinstance(base["recall"], float) and isinstance(cand["recall"], float):
        drop = round(base["recall"] - cand["recall"], 4)
    return {
        "images": len(scenes),
        "baseline_recall": base["recall"],
        "candidate_recall": cand["recall"],
        "recall_drop": drop,
        "baseline_faces": base_faces,
        "iou90_share": round(iou90 / base_faces, 4) if base_faces else None,
        "faces_found_by_both": both,
        "same_label_share": round(same_label / both, 4) if both else None,
        "baseline_label_accuracy": base["label_accuracy"],
        "candidate_label_accuracy": cand["label_accuracy"],
    }


def compare_detectors(options: SectionOptions) -> dict[str, Any]:
    """The whole comparison -> JSON-able dict (the `detectors` section of `make bench`)."""
    section = start_section(options)
    card, scenes, models_dir = section.card, section.scenes, options.models_dir
    runtime = card.detector.runtime if card.detector.runtime != BASELINE else "litert"
    names = [BASELINE, runtime] + [
        rt
        for rt in card.detector.runtime_files
        if rt != runtime and (rt != "onnxruntime" or importlib.util.find_spec("onnxruntime"))
    ]
    detectors: dict[str, YuNet] = {}
    for name in names:
        det, problem = detector_or_problem(card, options.detector_path, name, models_dir)
        if det is None:
            return {"error": f"{name} detector unavailable: {problem}"}
        detectors[name] = det
    target = make_target_image(scenes) if scenes else None
    out: dict[str, Any] = {
        "baseline": BASELINE,
        "candidate": runtime,
        "thresholds": card.detector.model_dump(),
    }
    if target is not None:
        cpu = detect_cpu_ms(detectors, decode_image(target.data), options.runs)
        out["target"] = {"image": target.name, "detect_cpu_ms": cpu}
        old = cpu[BASELINE].get("p50")
        out["speedups"] = {
            name: round(old / cpu[name]["p50"], 3) if old and cpu[name].get("p50") else None
            for name in detectors
            if name != BASELINE
        }
        out["speedup"] = out["speedups"][runtime]
    if scenes:
        classifier = load_classifiers(card, models_dir, ["int8"])["int8"]
        out["compares"] = {
            name: compare_on_scenes(scenes, card, classifier, detectors[BASELINE], det)
            for name, det in detectors.items()
            if name != BASELINE
        }
        out["compare"] = out["compares"][runtime]
    out["conditions"] = section.conditions()
    return out


def format_detectors(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"detectors: {result['error']}"
    lines = [stats.conditions_line(result.get("conditions"))]
    target = result.get("target")
    if target:
        cpu = target["detect_cpu_ms"]
        lines.append(f"Detector CPU ms on {target['image']} (1 thread each, interleaved; p50 / p90):")
        for name, s in cpu.items():
            lines.append(f"  {name:<12} {s.get('p50', 0):7.2f} / {s.get('p90', 0):7.2f}")
        for name, speedup in (result.get("speedups") or {}).items():
            lines.append(f"  speed-up {name} over {result['baseline']}: {speedup}x")
    for name, c in (result.get("compares") or {}).items():
        lines.append(
            f"Scenes, {name} ({c['images']} images, same int8 classifier and thresholds): recall "
            f"{result['baseline']} {c['baseline_recall']} vs {name} {c['candidate_recall']} "
            f"(drop {c['recall_drop']}); box IoU>=0.9 for {c['iou90_share']} of {c['baseline_faces']} faces; "
            f"same label on {c['same_label_share']} of {c['faces_found_by_both']} faces found by both"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    prog = "python -m bench.detectors"
    return run_section_cli(argv, prog, __doc__ or "", 50, compare_detectors, format_detectors)


if __name__ == "__main__":
    raise SystemExit(main())
