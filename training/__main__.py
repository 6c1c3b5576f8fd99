"""python -m training prepare|features|train|export|evaluate|build|study — see training/README.md."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from masklite.paths import (
    DEFAULT_MODELS_DIR,
    ENV_DATA_DIR,
    ENV_DATASETS_DIR,
    ENV_PEER_MODEL,
    ENV_SCENES_DIR,
    env_path,
    resolve_detector_path,
)
from training.config import DEFAULT_REPORTS_DIR, DEFAULT_WORK_DIR, FeatureConfig, HeadConfig, PrepareConfig
from training.dataset import DatasetError
from training.finetune import FinetuneConfig


def _data_dir(args) -> Path:
    path = Path(args.data_dir) if args.data_dir else env_path(ENV_DATA_DIR)
    if path is None:
        raise SystemExit(f"error: no dataset: pass --data-dir or set {ENV_DATA_DIR}")
    return path


def _scenes_dir(args) -> Path | None:
    if args.no_scenes:
        return None
    path = Path(args.scenes_dir) if args.scenes_dir else env_path(ENV_SCENES_DIR)
    if path is None:
        print(
            f"note: no scene photos ({ENV_SCENES_DIR} unset): the cross-source check is skipped",
            file=sys.stderr,
        )
    return path


def _datasets_dir(args) -> Path | None:
    from training.sources import datasets_root

    path = datasets_root(args.datasets_dir)
    if path is None:
        print(
            f"note: no cross-source sets ({ENV_DATASETS_DIR} unset): training uses the data folder only",
            file=sys.stderr,
        )
    return path


def _peer_model(args) -> Path | None:
    path = Path(args.peer_model) if args.peer_model else env_path(ENV_PEER_MODEL)
    if path is None:
        print(f"note: no peer model ({ENV_PEER_MODEL} unset): the card has no peer rows", file=sys.stderr)
    return path


def _weights(args) -> str:
    from training.features import backbone_weights

    return backbone_weights(args.weights)


def _head_cfg(args) -> HeadConfig:
    return HeadConfig(
        depth=args.depth,
        width=args.width,
        dropout=args.dropout,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
    )


def _prepare_cfg(args) -> PrepareConfig:
    return PrepareConfig(crop_margin=args.margin, split_seed=args.split_seed)


def _feature_cfg(args) -> FeatureConfig:
    return FeatureConfig(
        input_size=args.input_size, train_views=args.views, seed=args.seed, engine=args.feature_engine
    )


def main(argv: list[str] | None = None) -> int:
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
    from training.micro import add_arguments as add_micro_arguments  # issue #9

    add_micro_arguments(
        sub.add_parser("micro", parents=[common], help="microcontroller int8 model (TFLM) -> models/")
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    work, models_dir = Path(args.work_dir), Path(args.models_dir)
    progress = not args.quiet
    try:
        if args.command == "micro":
            from training.micro import run_micro

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
            from training.study import run_study

            run_study(args.kind, work, Path(args.reports_dir), _head_cfg(args), args.seeds, _weights(args))
            return 0
        stages = (
            ["prepare", "features", "train", "finetune", "export", "evaluate"]
            if args.command == "build"
            else [args.command]
        )
        timings: dict[str, float] = {}
        cpu: dict[str, float] = {}
        load_before = os.getloadavg()[0]
        for stage in stages:
            t0, c0 = time.perf_counter(), time.process_time()
            print(f"== {stage}", flush=True)
            _run_stage(stage, args, work, models_dir, progress)
            timings[stage], cpu[stage] = time.perf_counter() - t0, time.process_time() - c0
            print(f"== {stage} done in {timings[stage]:.1f} s (CPU {cpu[stage]:.1f} s)", flush=True)
        if args.command == "build":
            _finish_build(models_dir, timings, cpu, load_before)
        return 0
    except (DatasetError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run_stage(stage: str, args, work: Path, models_dir: Path, progress: bool) -> None:
    from training import stages

    if stage == "prepare":
        report = stages.stage_prepare(
            _data_dir(args),
            resolve_detector_path(args.detector),
            work,
            _prepare_cfg(args),
            progress,
            _datasets_dir(args),
        )
        print(
            json.dumps({k: report[k] for k in ("fingerprint", "crop_counts", "groups", "splits")}, indent=1)
        )
    elif stage == "features":
        meta = stages.stage_features(_data_dir(args), work, _feature_cfg(args), _weights(args), progress)
        print(json.dumps(meta["counts"]))
    elif stage == "train":
        info = stages.stage_train(work, _head_cfg(args), verbose=2 if progress else 0)
        print(json.dumps(info["final"]))
    elif stage == "finetune":
        from training.finetune import FinetuneConfig, finetune

        cfg = FinetuneConfig(epochs=args.finetune_epochs, seed=args.seed)
        if cfg.epochs > 0:
            print(json.dumps(finetune(work, _weights(args), cfg, progress)["final"]))
    elif stage == "export":
        card = stages.stage_export(work, models_dir, _weights(args), seed=args.seed)
        for p, e in card.models.items():
            print(f"{p:8s} {e.file}  {e.bytes / 1e6:.2f} MB  sha256 {e.sha256[:12]}")
    elif stage == "latency":
        from training.evaluate import stage_latency
        from training.model_card_md import print_summary, write_model_card_md

        card = stage_latency(models_dir)
        write_model_card_md(card, models_dir)
        print_summary(card)
    elif stage == "evaluate":
        from training.evaluate import stage_evaluate
        from training.model_card_md import print_summary, write_model_card_md

        scenes_dir = _scenes_dir(args)
        detector = resolve_detector_path(args.detector) if scenes_dir else None
        card = stage_evaluate(
            work,
            models_dir,
            _weights(args),
            scenes_dir,
            detector,
            _head_cfg(args),
            progress,
            ablation=not args.no_ablation,
            peer_path=_peer_model(args),
        )
        write_model_card_md(card, models_dir)
        print_summary(card)


def _finish_build(
    models_dir: Path, timings: dict[str, float], cpu: dict[str, float], load_before: float
) -> None:
    """Wall time per stage, plus this process's CPU time (all threads): on a CPU shared with other jobs the
    wall time mostly measures the neighbours, the CPU time measures the build."""
    from masklite.card import load_card, save_card
    from training.model_card_md import write_model_card_md

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
