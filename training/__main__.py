"""python -m training prepare|features|train|finetune|export|evaluate|build|latency|study|micro — see
training/README.md. The options become configs and paths here; the work is done by training/stages.py (the
build's commands), training/study.py and training/micro/cli.py."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TypeVar

from masklite.paths import (
    DEFAULT_MODELS_DIR,
    ENV_DATA_DIR,
    ENV_DATASETS_DIR,
    ENV_PEER_MODEL,
    ENV_SCENES_DIR,
    env_path,
    resolve_detector_path,
)
from training import stages
from training.config import DEFAULT_REPORTS_DIR, DEFAULT_WORK_DIR, FeatureConfig, HeadConfig, PrepareConfig
from training.dataset import DatasetError
from training.features import backbone_weights
from training.finetune import FinetuneConfig
from training.micro.cli import add_arguments as add_micro_arguments
from training.micro.cli import run_micro
from training.model_card_md import print_summary
from training.study import run_study

T = TypeVar("T")
BUILD = ("prepare", "features", "train", "finetune", "export", "evaluate")  # `build`: these, in this order


def _path(explicit: str | None, env: str) -> Path | None:
    """A path given as a flag, else from the environment variable `env`, else None."""
    return Path(explicit) if explicit else env_path(env)


def _optional_path(explicit: str | None, env: str, missing: str, so: str) -> Path | None:
    """`_path`, with a note on stderr when there is none: what is `missing`, and `so` what is left out."""
    path = _path(explicit, env)
    if path is None:
        print(f"note: {missing} ({env} unset): {so}", file=sys.stderr)
    return path


def _data_dir(args) -> Path:
    path = _path(args.data_dir, ENV_DATA_DIR)
    if path is None:
        raise SystemExit(f"error: no dataset: pass --data-dir or set {ENV_DATA_DIR}")
    return path


def _scenes_dir(args) -> Path | None:
    if args.no_scenes:
        return None
    return _optional_path(
        args.scenes_dir, ENV_SCENES_DIR, "no scene photos", "the cross-source check is skipped"
    )


def _datasets_dir(args) -> Path | None:
    return _optional_path(
        args.datasets_dir, ENV_DATASETS_DIR, "no cross-source sets", "training uses the data folder only"
    )


def _peer_model(args) -> Path | None:
    return _optional_path(args.peer_model, ENV_PEER_MODEL, "no peer model", "the card has no peer rows")


def _weights(args) -> str:
    return backbone_weights(args.weights)


# Which option fills which config field (argparse dest -> field); the other fields keep their defaults.
CONFIG_OPTIONS: dict[type, dict[str, str]] = {
    PrepareConfig: {"margin": "crop_margin", "split_seed": "split_seed"},
    FeatureConfig: {
        "input_size": "input_size",
        "views": "train_views",
        "seed": "seed",
        "feature_engine": "engine",
    },
    HeadConfig: {
        "depth": "depth",
        "width": "width",
        "dropout": "dropout",
        "epochs": "epochs",
        "batch_size": "batch_size",
        "lr": "learning_rate",
        "seed": "seed",
    },
    FinetuneConfig: {"finetune_epochs": "epochs", "seed": "seed"},
}


def _config(cls: type[T], args) -> T:
    return cls(**{field: getattr(args, dest) for dest, field in CONFIG_OPTIONS[cls].items()})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help=f"ImageFolder dataset (default ${ENV_DATA_DIR})")
    common.add_argument(
        "--detector", help="YuNet .onnx (default $MASKLITE_DETECTOR_PATH, else the one shipped in models/)"
    )
    common.add_argument(
        "--weights",
        help="MobileNetV2 no-top .h5 (default $MASKLITE_BACKBONE_WEIGHTS, else Keras 'imagenet' download)",
    )
    common.add_argument(
        "--datasets-dir",
        help=f"root of the cross-source sets (default ${ENV_DATASETS_DIR})",
    )
    common.add_argument("--scenes-dir", help=f"VOC-annotated scene photos (default ${ENV_SCENES_DIR})")
    common.add_argument("--no-scenes", action="store_true", help="skip the cross-source scene check")
    common.add_argument("--work-dir", default=str(DEFAULT_WORK_DIR), help="work files (default ./work)")
    common.add_argument(
        "--models-dir", default=str(DEFAULT_MODELS_DIR), help="output models (default ./models)"
    )
    common.add_argument("--reports-dir", default=str(DEFAULT_REPORTS_DIR))
    common.add_argument("--margin", type=float, default=PrepareConfig.crop_margin)
    common.add_argument("--split-seed", type=int, default=PrepareConfig.split_seed)
    common.add_argument("--input-size", type=int, default=FeatureConfig.input_size)
    common.add_argument(
        "--views", type=int, default=FeatureConfig.train_views, help="augmented views per train image"
    )
    common.add_argument(
        "--feature-engine",
        choices=["keras", "litert"],
        default=FeatureConfig.engine,
        help="backbone runtime for the cached features (litert: ~3x faster, not bit-identical)",
    )
    common.add_argument(
        "--depth", type=int, default=HeadConfig.depth, help="dense layers incl. the output layer"
    )
    common.add_argument("--width", type=int, default=HeadConfig.width)
    common.add_argument("--dropout", type=float, default=HeadConfig.dropout)
    common.add_argument("--epochs", type=int, default=HeadConfig.epochs)
    common.add_argument("--batch-size", type=int, default=HeadConfig.batch_size)
    common.add_argument("--lr", type=float, default=HeadConfig.learning_rate)
    common.add_argument("--seed", type=int, default=0)
    common.add_argument(
        "--finetune-epochs",
        type=int,
        default=FinetuneConfig.epochs,
        help="epochs of upper-block fine-tuning (0: ship the head-only model)",
    )
    common.add_argument(
        "--peer-model",
        help=f"AIZOO face-mask detector .tflite, the peer in the card's tables (default ${ENV_PEER_MODEL})",
    )
    common.add_argument("--no-ablation", action="store_true", help="evaluate: skip the framing ablation")
    common.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_ in (
        ("prepare", "detect faces, group near-duplicates/identities, split -> work/prepare"),
        ("features", "crop (+augment) and cache frozen MobileNetV2 features -> work/features"),
        ("train", "train the dense head on the cached features -> work/train"),
        ("finetune", "fine-tune the upper backbone blocks + head on the cached views -> work/finetune"),
        ("export", "float32 + full-int8 TFLite and model_card.json -> models/"),
        ("evaluate", "metrics, scenes, latency, plots, evalset.zip, MODEL_CARD.md -> models/"),
        ("build", "all of the above, end to end, with the time per stage"),
        ("latency", "re-measure float32/int8 latency (1 thread, batch 1) and update the card"),
    ):
        sub.add_parser(name, parents=[common], help=help_)
    study = sub.add_parser("study", parents=[common], help="reduction studies on cached features -> reports/")
    study.add_argument("kind", choices=["layers", "epochs"])
    study.add_argument("--seeds", type=int, default=3)
    add_micro_arguments(
        sub.add_parser("micro", parents=[common], help="microcontroller int8 model (TFLM) -> models/")
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    work, models_dir = Path(args.work_dir), Path(args.models_dir)
    progress = not args.quiet
    try:
        if args.command == "micro":
            return run_micro(
                args,
                work,
                models_dir,
                Path(args.reports_dir),
                lambda: _data_dir(args),
                lambda: _scenes_dir(args),
                lambda: resolve_detector_path(args.detector),
                lambda: _weights(args),
                progress,
            )
        if args.command == "study":
            run_study(
                args.kind, work, Path(args.reports_dir), _config(HeadConfig, args), args.seeds, _weights(args)
            )
            return 0
        timings: dict[str, float] = {}
        cpu: dict[str, float] = {}
        load_before = os.getloadavg()[0]
        for stage in BUILD if args.command == "build" else [args.command]:
            t0, c0 = time.perf_counter(), time.process_time()
            print(f"== {stage}", flush=True)
            _run_stage(stage, args, work, models_dir, progress)
            timings[stage], cpu[stage] = time.perf_counter() - t0, time.process_time() - c0
            print(f"== {stage} done in {timings[stage]:.1f} s (CPU {cpu[stage]:.1f} s)", flush=True)
        if args.command == "build":
            stages.record_build_times(models_dir, timings, cpu, load_before)
            _print_build_times(timings, cpu, load_before)
        return 0
    except (DatasetError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run_stage(stage: str, args, work: Path, models_dir: Path, progress: bool) -> None:
    """One command of the build (training/stages.py), and what it prints."""
    if stage == "prepare":
        report = stages.stage_prepare(
            _data_dir(args),
            resolve_detector_path(args.detector),
            work,
            _config(PrepareConfig, args),
            progress,
            _datasets_dir(args),
        )
        print(
            json.dumps({k: report[k] for k in ("fingerprint", "crop_counts", "groups", "splits")}, indent=1)
        )
    elif stage == "features":
        cfg = _config(FeatureConfig, args)
        meta = stages.stage_features(_data_dir(args), work, cfg, _weights(args), progress)
        print(json.dumps(meta["counts"]))
    elif stage == "train":
        info = stages.stage_train(work, _config(HeadConfig, args), verbose=2 if progress else 0)
        print(json.dumps(info["final"]))
    elif stage == "finetune":
        info = stages.stage_finetune(work, _weights(args), _config(FinetuneConfig, args), progress)
        if info is not None:
            print(json.dumps(info["final"]))
    elif stage == "export":
        card = stages.stage_export(work, models_dir, _weights(args), seed=args.seed)
        for p, e in card.models.items():
            print(f"{p:8s} {e.file}  {e.bytes / 1e6:.2f} MB  sha256 {e.sha256[:12]}")
    elif stage == "latency":
        print_summary(stages.stage_latency(models_dir))
    elif stage == "evaluate":
        scenes_dir = _scenes_dir(args)
        card = stages.stage_evaluate(
            work,
            models_dir,
            _weights(args),
            scenes_dir,
            resolve_detector_path(args.detector) if scenes_dir else None,
            _config(HeadConfig, args),
            progress,
            ablation=not args.no_ablation,
            peer_path=_peer_model(args),
        )
        print_summary(card)


def _print_build_times(timings: dict[str, float], cpu: dict[str, float], load_before: float) -> None:
    print("\nbuild time per stage (wall / CPU of this process):")
    for k, v in timings.items():
        print(f"  {k:9s} {v:7.1f} s  {cpu[k]:7.1f} s")
    total = sum(timings.values())
    print(
        f"  {'total':9s} {total:7.1f} s  {sum(cpu.values()):7.1f} s  ({total / 60:.1f} min wall; target 20)"
    )
    print(
        f"  1-min load average {load_before:.1f} at start, {os.getloadavg()[0]:.1f} at end "
        f"on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    sys.exit(main())
