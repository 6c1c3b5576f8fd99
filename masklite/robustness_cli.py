"""`python -m masklite.robustness_cli`: per-layer weight robustness of the shipped models (no TensorFlow).

    run      one grid on one model -> grid.csv/json, ranking.csv, heatmaps (PNG) in --out; prints the time
    layers   list the weighted layers of a model
    report   the full original grid (every layer x 11 scalars x {multiply, add}) plus noise and bit flips
             on float32 and int8 -> reports/robustness.md + PNGs   (make robustness-report)

Examples:
    python -m masklite.robustness_cli run --precision int8 --workers 2 --out work/robustness/int8
    python -m masklite.robustness_cli run --precision float32 --layers 0,-1 --kinds noise --noise-sigmas 0.5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

from masklite.card import load_card
from masklite.evalset import EvalSetError, default_evalset_path, load_evalset_file
from masklite.paths import DEFAULT_MODELS_DIR, REPO_ROOT
from masklite.robustness import (
    KINDS,
    GridResult,
    GridSpec,
    RobustnessError,
    TFLiteModel,
    load_model_for,
    run_grid,
    write_outputs,
)


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _layers(text: str) -> str | list[int | str]:
    if text == "all":
        return "all"
    return [int(v) if v.strip().lstrip("-").isdigit() else v.strip() for v in text.split(",") if v.strip()]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    p.add_argument(
        "--evalset", type=Path, default=None, help="zip, one folder per label (default: the shipped one)"
    )
    p.add_argument("--max-images", type=int, default=None, help="stratified subset of the evaluation set")
    p.add_argument("--workers", type=int, default=2, help="evaluation processes (default 2)")
    p.add_argument("--threads", type=int, default=1, help="LiteRT threads per process")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nice", type=int, default=0, help="niceness of the worker processes")


def run_one(
    spec: GridSpec,
    models_dir: Path,
    evalset_path: Path | None,
    workers: int,
    threads: int,
    nice: int = 0,
    label: str = "",
) -> GridResult:
    card = load_card(models_dir).for_precision(spec.precision)
    model, info = load_model_for(card, models_dir, spec.precision)
    path = evalset_path or default_evalset_path(models_dir)
    evalset = load_evalset_file(path, card, max_images=spec.max_images, seed=spec.seed)
    bar = tqdm(total=1.0, desc=label or spec.precision, unit="grid", bar_format="{l_bar}{bar}| {postfix}")

    def progress(fraction: float, partial: dict | None) -> None:
        bar.n = round(fraction, 4)
        if partial:
            bar.set_postfix_str(f"{partial['cells_done']}/{partial['cells_total']} cells", refresh=False)
        bar.refresh()

    try:
        return run_grid(model, evalset, card, spec, workers, threads, progress, info, nice=nice)
    finally:
        bar.close()


def print_summary(result: GridResult) -> None:
    t = result.timing
    print(
        f"{result.model.get('precision', '?')}: clean accuracy {result.clean['accuracy']:.4f} on "
        f"{result.evalset['images']} images; {t['cells']} cells in {t['seconds']:.1f} s "
        f"({t['seconds_per_cell']:.2f} s/cell, {t['workers']} worker(s), {t['suffix_only_cells']} cells "
        f"re-ran only the layers after the perturbed one)"
    )
    print(
        f"  CPU time {t['cpu_seconds']:.0f} s -> about {t['cpu_seconds'] / max(t['workers'], 1):.0f} s "
        f"on {t['workers']} idle core(s)"
    )
    for kind, rows in result.ranking.items():
        top = ", ".join(f"{r['name']} ({r['mean_accuracy_drop']:+.3f})" for r in rows[:3])
        low = ", ".join(f"{r['name']} ({r['mean_accuracy_drop']:+.3f})" for r in rows[-2:])
        print(f"  {kind:>8}: most sensitive {top}; least {low}")
    c = result.conclusions
    if c.get("checked"):
        print(
            f"  original conclusions: first layer most sensitive to addition: {c['first_most_sensitive']} "
            f"(rank {c['first_layer']['rank']}/{c['layers']}, {c['layers_tied_most_sensitive']} tied); "
            f"last layer least: {c['last_least_sensitive']} (rank {c['last_layer']['rank']})"
        )


def cmd_run(args: argparse.Namespace) -> int:
    spec = GridSpec(
        precision=args.precision,
        layers=_layers(args.layers),
        kinds=args.kinds.split(","),
        scalars=_floats(args.scalars) if args.scalars else GridSpec().scalars,
        noise_sigmas=_floats(args.noise_sigmas) if args.noise_sigmas else GridSpec().noise_sigmas,
        bitflip_rates=_floats(args.bitflip_rates) if args.bitflip_rates else GridSpec().bitflip_rates,
        seed=args.seed,
        max_images=args.max_images,
    )
    t0 = time.perf_counter()
    result = run_one(spec, args.models_dir, args.evalset, args.workers, args.threads, args.nice)
    files = write_outputs(result, args.out, title=spec.precision)
    print_summary(result)
    print(f"wrote {', '.join(files)} to {args.out}  (total {time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    card = load_card(args.models_dir)
    model: TFLiteModel = load_model_for(card, args.models_dir, args.precision)[0]
    for layer in model.layers:
        scales = f"{len(layer.scales)} scale(s)" if layer.scales else ""
        shape = str(list(layer.shape))
        print(f"{layer.index:>3}  {layer.op:<18} {layer.name:<28} {shape:<20} {layer.dtype} {scales}")
    for note in model.skipped:
        print("skipped:", note)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from masklite.robustness_report import build_report

    path = build_report(
        args.models_dir,
        args.out,
        args.evalset,
        args.workers,
        args.threads,
        args.nice,
        args.precisions.split(","),
        grids=tuple(args.grids.split(",")),
        faults_max_images=args.faults_max_images,
        original_max_images={
            "float32": args.float32_max_images,
            **{
                k: int(v)
                for k, v in (item.split("=") for item in args.original_max_images.split(",") if item)
            },
        },
        timing_from=args.timing_from,
        cached_only=args.cached_only,
    )
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m masklite.robustness_cli", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="one grid on one model")
    _common(run)
    run.add_argument("--precision", default="int8")
    run.add_argument("--layers", default="all", help='"all" or comma-separated indices/names (e.g. 0,-1)')
    run.add_argument("--kinds", default="multiply,add", help=f"comma-separated: {', '.join(KINDS)}")
    run.add_argument("--scalars", default=None, help="for multiply/add (default: the original 11)")
    run.add_argument("--noise-sigmas", default=None, help="x the layer's weight std")
    run.add_argument("--bitflip-rates", default=None, help="probability per stored bit")
    run.add_argument("--out", type=Path, default=REPO_ROOT / "work" / "robustness")
    run.set_defaults(fn=cmd_run)
    layers = sub.add_parser("layers", help="list the weighted layers")
    layers.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    layers.add_argument("--precision", default="int8")
    layers.set_defaults(fn=cmd_layers)
    report = sub.add_parser("report", help="reports/robustness.md for the shipped models")
    _common(report)
    report.add_argument("--precisions", default="int8,float32")
    report.add_argument("--faults-max-images", type=int, default=200, help="images for noise/bit-flip grids")
    report.add_argument(
        "--float32-max-images",
        type=int,
        default=None,
        help="images for the float32 original grid (default: all)",
    )
    report.add_argument(
        "--original-max-images", default="", help="per precision, e.g. int8=200,float32=100 (default: all)"
    )
    report.add_argument(
        "--timing-from",
        type=Path,
        default=None,
        help="a cached full-grid JSON whose timing the report also shows",
    )
    report.add_argument(
        "--cached-only", action="store_true", help="only grids already computed (no new runs)"
    )
    report.add_argument(
        "--grids", default="original,faults", help="original (multiply/add) and/or faults (noise/bit flips)"
    )
    report.add_argument("--out", type=Path, default=REPO_ROOT / "reports")
    report.set_defaults(fn=cmd_report)
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except (RobustnessError, EvalSetError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
