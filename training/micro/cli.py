"""`python -m training micro`: its options, and its stages run in order (see training/micro/__init__.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from training.artifacts import load_features_meta
from training.micro.data import build_teacher, build_views
from training.micro.entry import MICRO_KEY
from training.micro.runs import DEFAULT_RUNS, VARIANTS, load_result, run_configs, train_runs
from training.micro.ship import stage_ship


def add_arguments(parser) -> None:
    parser.add_argument("--stage", choices=["data", "teacher", "train", "ship", "all"], default="all")
    parser.add_argument(
        "--runs",
        default=DEFAULT_RUNS,
        help=f"variant:kd|ce:epochs,... (variants: {', '.join(VARIANTS)}); default: the reported runs",
    )
    parser.add_argument("--retrain", action="store_true", help="retrain runs already measured")


def run_micro(
    args,
    work: Path,
    models_dir: Path,
    reports_dir: Path,
    data_dir,
    scenes_dir,
    detector_path,
    weights,
    progress: bool = True,
) -> int:
    """`python -m training micro`; data_dir/weights are callables so a stage only asks for what it needs."""
    cfgs = run_configs(args.runs)
    stages = ["data", "teacher", "train", "ship"] if args.stage == "all" else [args.stage]
    labels = load_features_meta(work)["labels"]
    for stage in stages:
        t0 = time.perf_counter()
        print(f"== micro {stage}", flush=True)
        if stage == "data":
            print(
                json.dumps(
                    build_views(work, data_dir(), tuple(sorted({c.net.size for c in cfgs})), progress)[
                        "counts"
                    ]
                )
            )
        elif stage == "teacher":
            print(json.dumps(build_teacher(work, weights(), models_dir), indent=1))
        elif stage == "train":
            train_runs(work, cfgs, labels, force=args.retrain, progress=progress)
        else:
            results = [r for c in cfgs if (r := load_result(work, c.name)) is not None]
            if not results:
                raise FileNotFoundError(
                    "no measured micro runs: run `python -m training micro --stage train`"
                )
            scenes = scenes_dir()
            entry = stage_ship(
                work, models_dir, reports_dir, results, scenes, detector_path() if scenes else None
            )
            x = entry.model_extra or {}
            print(
                f"models.{MICRO_KEY}: {entry.file} {entry.bytes / 1024:.1f} KB, arena "
                f"{x['tflm']['arena_bytes'] / 1024:.1f} KB, test {entry.metrics['test']['accuracy']:.4f} "
                f"(int8 {x['vs_int8']['int8_test_accuracy']:.4f}), TFLM agreement "
                f"{x['tflm']['agreement_vs_litert']['label_agreement']:.4f}"
            )
        print(f"== micro {stage} done in {time.perf_counter() - t0:.1f} s", flush=True)
    return 0
