"""CPU cost per pipeline stage, for the "what dominates, what would close it" questions.

    python -m bench.stage_timing [--sides 320,480,640] [--runs 30] [--runtime litert|onnxruntime|opencv]

Runs the service's steps one by one with 1 thread per network (classifier on LiteRT; detector on LiteRT,
onnxruntime or OpenCV): one request on one core. Reports process CPU time per stage for each detector
input size (the service's detect_size) and each model, plus the scenes face recall at that size. CPU
time is not inflated by preemption, but a busy machine still slows caches and memory: the output says
"noisy" when it was.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from bench import stats
from bench.images import load_scenes, make_target_image, scenes_dir
from bench.runner import SceneScore, load_detector, run_pipeline_once
from masklite.card import load_card, verify_model_file
from masklite.classifier import Classifier, preprocess
from masklite.faces import DETECT_MAX_SIDE, DETECTOR_RUNTIMES, crop_face
from masklite.image import decode_image
from masklite.paths import DEFAULT_MODELS_DIR


def _cpu(fn: Any) -> tuple[float, Any]:
    c0 = time.process_time()
    out = fn()
    return (time.process_time() - c0) * 1e3, out


def stage_costs(
    models_dir: Path,
    sides: list[int],
    runs: int,
    detector_path: Path | None,
    runtime: str | None = None,
    default_side: int = DETECT_MAX_SIDE,
) -> dict[str, Any]:
    cv2.setNumThreads(1)
    before = stats.snapshot()
    card = load_card(models_dir)
    detector, problem = load_detector(card, detector_path, runtime, models_dir)
    if detector is None:
        raise SystemExit(f"no detector: {problem}")
    directory = scenes_dir()
    scenes = load_scenes(directory) if directory else []
    target = make_target_image(scenes)
    if target is None:
        raise SystemExit("set MASKLITE_SCENES_DIR: the 640x480 target is cut from the scenes")
    classifiers = {p: Classifier(verify_model_file(card, models_dir, p), num_threads=1) for p in card.models}
    out: dict[str, Any] = {
        "image": target.name,
        "runs": runs,
        "runtime": detector.runtime,
        "default_side": default_side,
        "sides": {},
    }
    for side in tqdm(sides, desc="stages: detect sizes", file=sys.stderr, leave=False):
        rows: dict[str, list[float]] = {"decode": [], "detect": []}
        crops_rows: dict[str, list[float]] = {p: [] for p in classifiers}
        found = 0
        for i in range(runs + 3):
            d_ms, rgb = _cpu(lambda: decode_image(target.data))
            t_ms, faces = _cpu(lambda rgb=rgb, side=side: detector.detect(rgb, max_side=side))
            crops = [crop_face(rgb, f.box, card.crop_margin) for f in faces]
            found = len(crops)
            for p, clf in classifiers.items():
                spec = card.input_for(p)
                c_ms, _ = _cpu(lambda clf=clf, crops=crops, spec=spec: clf.predict(preprocess(crops, spec)))
                if i >= 3:
                    crops_rows[p].append(c_ms)
            if i >= 3:
                rows["decode"].append(d_ms)
                rows["detect"].append(t_ms)
        per_model = {}
        for p, clf in classifiers.items():
            score = SceneScore()
            for scene in scenes:
                _timings, found_faces = run_pipeline_once(scene, card, clf, detector, side)
                score.add(scene, found_faces)
            res = score.result()
            per_model[p] = {
                "classify_cpu_ms": round(float(np.median(crops_rows[p])), 2),
                "classify_cpu_ms_per_face": round(float(np.median(crops_rows[p])) / max(found, 1), 2),
                "scenes_recall": res["recall"],
                "scenes_label_accuracy": res["label_accuracy"],
            }
        decode, detect = (round(float(np.median(rows[k])), 2) for k in ("decode", "detect"))
        out["sides"][str(side)] = {
            "faces_on_target": found,
            "decode_cpu_ms": decode,
            "detect_cpu_ms": detect,
            "models": {
                p: {**m, "pipeline_cpu_ms": round(decode + detect + m["classify_cpu_ms"], 2)}
                for p, m in per_model.items()
            },
        }
    out["conditions"] = stats.conditions(before, stats.snapshot())
    return out


def format_costs(costs: dict[str, Any]) -> str:
    lines = [
        stats.conditions_line(costs.get("conditions")),
        f"CPU ms per stage on {costs['image']} (1 core: LiteRT 1 thread, detector {costs.get('runtime')} "
        f"1 thread; median of {costs['runs']})",
        f"{'side':>5} {'faces':>5} {'decode':>7} {'detect':>7} {'model':>8} {'classify':>9} {'per_face':>9} "
        f"{'total':>7} {'req/s@2cores':>12} {'recall':>7} {'acc':>6}",
    ]
    for side, row in costs["sides"].items():
        for p, m in row["models"].items():
            total = m["pipeline_cpu_ms"]
            lines.append(
                f"{side:>5} {row['faces_on_target']:>5} "
                f"{row['decode_cpu_ms']:>7.2f} {row['detect_cpu_ms']:>7.2f} "
                f"{p:>8} {m['classify_cpu_ms']:>9.2f} {m['classify_cpu_ms_per_face']:>9.2f} {total:>7.2f} "
                f"{2000 / total:>12.1f} {m['scenes_recall']:>7.3f} {m['scenes_label_accuracy']:>6.3f}"
            )
    lines.append("req/s@2cores = 2000 / total: the ceiling with both cores busy and no HTTP cost")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.stage_timing", description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    ap.add_argument("--sides", default="320,480,640", help="YuNet input sizes to try")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--detector", type=Path, default=None, help="default: $MASKLITE_DETECTOR_PATH")
    ap.add_argument("--runtime", choices=sorted(DETECTOR_RUNTIMES), default=None, help="default: the card's")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    sides = [int(s) for s in args.sides.split(",")]
    costs = stage_costs(args.models_dir, sides, args.runs, args.detector, args.runtime)
    print(format_costs(costs))
    if args.json:
        args.json.write_text(json.dumps(costs, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
