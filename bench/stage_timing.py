"""CPU cost per pipeline stage, for the "what dominates, what would close it" questions.

    python -m bench.stage_timing [--sides 320,480,640] [--runs 30] [--runtime litert|onnxruntime|opencv]

One request on one core (1 thread per network: classifier on LiteRT; detector on LiteRT, onnxruntime or
OpenCV), for each detector input size (the service's detect_size) and each model: process CPU time of the
whole pipeline (masklite.pipeline.predict_image with that detect_size), of its decode and of its detector
call, each timed by calling the masklite function the pipeline calls; classify is the rest (crop,
preprocess, classify, label). Plus the scenes face recall at that size. CPU time is not inflated by
preemption, but a busy machine still slows caches and memory: the output says "noisy" when it was.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from tqdm import tqdm

from bench import stats
from bench.images import make_target_image
from bench.inprocess import SceneScore, detector_or_problem, load_classifiers, run_pipeline_once
from bench.sections import SectionOptions, run_section_cli, start_section
from masklite.faces import DETECT_MAX_SIDE, ENGINES
from masklite.image import DEFAULT_MAX_PIXELS, decode_image_reduced
from masklite.pipeline import Models, PredictOptions, draft_side, predict_image

T = TypeVar("T")
WARMUP = 3


def _cpu(fn: Callable[[], T]) -> tuple[float, T]:
    c0 = time.process_time()
    out = fn()
    return (time.process_time() - c0) * 1e3, out


def _median(values: list[float]) -> float:
    return round(float(np.median(values)), 2)


def stage_costs(
    options: SectionOptions,
    sides: tuple[int, ...] | list[int] = (320, 480, 640),
    runtime: str | None = None,
    default_side: int = DETECT_MAX_SIDE,
) -> dict[str, Any]:
    section = start_section(options)
    card, runs = section.card, options.runs
    detector, problem = detector_or_problem(card, options.detector_path, runtime, options.models_dir)
    if detector is None:
        return {"error": f"no detector: {problem}"}
    target = make_target_image(section.scenes)
    if target is None:
        return {"error": "no 640x480 target: it is cut from the scenes, set MASKLITE_SCENES_DIR"}
    classifiers = load_classifiers(card, options.models_dir, list(card.models), threads=1)
    out: dict[str, Any] = {
        "image": target.name,
        "runs": runs,
        "runtime": detector.runtime,
        "default_side": default_side,
        "sides": {},
    }
    for side in tqdm(sides, desc="stages: detect sizes", file=sys.stderr, leave=False):
        decode: list[float] = []
        detect: list[float] = []
        pipeline: dict[str, list[float]] = {p: [] for p in classifiers}
        found = 0
        min_side = draft_side(detector, side)  # the size predict_image decodes at for this detect size
        for i in range(runs + WARMUP):
            d_ms, (rgb, _) = _cpu(
                lambda min_side=min_side: decode_image_reduced(target.data, DEFAULT_MAX_PIXELS, min_side)
            )
            t_ms, _ = _cpu(lambda rgb=rgb, side=side: detector.detect(rgb, max_side=side))
            for p, clf in classifiers.items():
                p_ms, res = _cpu(
                    lambda clf=clf, p=p, side=side: predict_image(
                        target.data, Models(card, clf, detector), PredictOptions(model=p, detect_size=side)
                    )
                )
                found = len(res.faces)
                if i >= WARMUP:
                    pipeline[p].append(p_ms)
            if i >= WARMUP:
                decode.append(d_ms)
                detect.append(t_ms)
        decode_ms, detect_ms = _median(decode), _median(detect)
        models = {}
        for p, clf in classifiers.items():
            score = SceneScore()
            for scene in section.scenes:
                _timings, faces = run_pipeline_once(scene, card, clf, detector, side, p)
                score.add(scene, faces)
            total, scenes = _median(pipeline[p]), score.result()
            classify = round(max(total - decode_ms - detect_ms, 0.0), 2)  # the rest of the pipeline
            models[p] = {
                "classify_cpu_ms": classify,
                "classify_cpu_ms_per_face": round(classify / max(found, 1), 2),
                "scenes_recall": scenes["recall"],
                "scenes_label_accuracy": scenes["label_accuracy"],
                "pipeline_cpu_ms": total,
            }
        out["sides"][str(side)] = {
            "faces_on_target": found,
            "decode_cpu_ms": decode_ms,
            "detect_cpu_ms": detect_ms,
            "models": models,
        }
    out["conditions"] = section.conditions()
    return out


def format_costs(costs: dict[str, Any]) -> str:
    if "error" in costs:
        return f"stage timing: {costs['error']}"
    lines = [
        stats.conditions_line(costs.get("conditions")),
        f"CPU ms per stage on {costs['image']} (1 core: LiteRT 1 thread, detector {costs.get('runtime')} "
        f"1 thread; median of {costs['runs']}; classify = pipeline - decode - detect)",
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
    def own_arguments(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--sides", default="320,480,640", help="YuNet input sizes to try")
        runtimes = sorted(ENGINES)
        ap.add_argument("--runtime", choices=runtimes, default=None, help="default: the card's")

    def measure(options: SectionOptions, args: argparse.Namespace) -> dict[str, Any]:
        return stage_costs(options, [int(s) for s in args.sides.split(",")], args.runtime)  # its own options

    prog = "python -m bench.stage_timing"
    return run_section_cli(argv, prog, __doc__ or "", 30, measure, format_costs, own_arguments)


if __name__ == "__main__":
    raise SystemExit(main())
