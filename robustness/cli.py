"""`python -m robustness`: per-layer weight robustness of the shipped models (no TensorFlow).

    run      one grid on one model -> grid.csv/json, ranking.csv, heatmaps (PNG) in --out; prints the time
    layers   list the weighted layers of a model
    report   the full original grid (every layer x 11 scalars x {multiply, add}) plus noise and bit flips
             on float32 and int8 -> reports/robustness.md + PNGs   (make robustness-report)

Examples:
    python -m robustness run --precision int8 --workers 2 --out work/robustness/int8
    python -m robustness run --precision float32 --layers 0,-1 --kinds noise --noise-sigmas 0.5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from masklite.card import load_card
from masklite.evalset import EvalSetError
from masklite.paths import DEFAULT_MODELS_DIR, REPO_ROOT
from robustness.console import print_summary, progress_bar
from robustness.errors import RobustnessError
from robustness.evaluate import evaluate_spec, load_model_for
from robustness.outputs import write_outputs
from robustness.perturb import KINDS
from robustness.report import build_report
from robustness.spec import GridSpec


def _floats(text: str | None) -> list[float] | None:
    return [float(v) for v in text.split(",") if v.strip()] if text else None


def _layers(text: str) -> str | list[int | str]:
    if text == "all":
        return "all"
    return [int(v) if v.strip().lstrip("-").isdigit() else v.strip() for v in text.split(",") if v.strip()]


def cmd_run(args: argparse.Namespace) -> int:
    values = {
        "scalars": _floats(args.scalars),
        "noise_sigmas": _floats(args.noise_sigmas),
        "bitflip_rates": _floats(args.bitflip_rates),
    }
    spec = GridSpec(
        precision=args.precision,
        layers=_layers(args.layers),
        kinds=args.kinds.split(","),
        seed=args.seed,
        max_images=args.max_images,
        **{name: v for name, v in values.items() if v},  # the spec's defaults for those not given
    )
    t0 = time.perf_counter()
    with progress_bar(spec.precision) as progress:
        result = evaluate_spec(
            spec,
            args.models_dir,
            evalset_path=args.evalset,
            workers=args.workers,
            threads=args.threads,
            progress=progress,
            nice=args.nice,
        )
    files = write_outputs(result, args.out, title=spec.precision)
    print_summary(result)
    print(f"wrote {', '.join(files)} to {args.out}  (total {time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    model = load_model_for(load_card(args.models_dir), args.models_dir, args.precision)[0]
    for layer in model.layers:
        scales = f"{len(layer.scales)} scale(s)" if layer.scales else ""
        shape = str(list(layer.shape))
        print(f"{layer.index:>3}  {layer.op:<18} {layer.name:<28} {shape:<20} {layer.dtype} {scales}")
    for note in model.skipped:
        print("skipped:", note)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    per_precision = (item.split("=") for item in args.original_max_images.split(",") if item)
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
        original_max_images={"float32": args.float32_max_images, **{k: int(v) for k, v in per_precision}},
        timing_from=args.timing_from,
        cached_only=args.cached_only,
    )
    print(f"wrote {path}")
    return 0


def _grid_options(p: argparse.ArgumentParser) -> None:
    """The options of every command that runs grids (run, report)."""
    p.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    p.add_argument("--evalset", type=Path, help="zip, one folder per label (default: the shipped one)")
    p.add_argument("--max-images", type=int, help="stratified subset of the evaluation set")
    p.add_argument("--workers", type=int, default=2, help="evaluation processes (default 2)")
    p.add_argument("--threads", type=int, default=1, help="LiteRT threads per process")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nice", type=int, default=0, help="niceness of the worker processes")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m robustness", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="one grid on one model")
    _grid_options(run)
    run.add_argument("--precision", default="int8")
    run.add_argument("--layers", default="all", help='"all" or comma-separated indices/names (e.g. 0,-1)')
    run.add_argument("--kinds", default="multiply,add", help=f"comma-separated: {', '.join(KINDS)}")
    run.add_argument("--scalars", help="for multiply/add (default: the original 11)")
    run.add_argument("--noise-sigmas", help="x the layer's weight std")
    run.add_argument("--bitflip-rates", help="probability per stored bit")
    run.add_argument("--out", type=Path, default=REPO_ROOT / "work" / "robustness")
    run.set_defaults(fn=cmd_run)

    layers = sub.add_parser("layers", help="list the weighted layers")
    layers.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    layers.add_argument("--precision", default="int8")
    layers.set_defaults(fn=cmd_layers)

    report = sub.add_parser("report", help="reports/robustness.md for the shipped models")
    _grid_options(report)
    add = report.add_argument
    add("--precisions", default="int8,float32")
    add("--grids", default="original,faults", help="original (multiply/add) and/or faults (noise/bit flips)")
    add("--faults-max-images", type=int, default=200, help="images for noise/bit-flip grids")
    add("--float32-max-images", type=int, help="images for the float32 original grid (default: all)")
    add("--original-max-images", default="", help="per precision, e.g. int8=200,float32=100 (default: all)")
    add("--timing-from", type=Path, help="a cached full-grid JSON whose timing the report also shows")
    add("--cached-only", action="store_true", help="only grids already computed (no new runs)")
    add("--out", type=Path, default=REPO_ROOT / "reports")
    report.set_defaults(fn=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (RobustnessError, EvalSetError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
