"""What the one-core sections of `make bench` share (stage timing, detectors, phone): their start and their
command line.

    section = start_section(options)                          1 OpenCV thread, card, scenes
    run_section_cli(argv, prog, doc, runs, measure, render)   --models-dir --detector --runs ... -> options

Each section measures one request on one core: 1 LiteRT thread per network, 1 OpenCV thread.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2

from bench import stats
from bench.images import BenchImage, load_scenes, scenes_dir
from masklite.card import ModelCard, load_card
from masklite.paths import DEFAULT_MODELS_DIR


@dataclass(frozen=True)
class SectionOptions:
    """What every section takes: the models, the detector file, timed runs, the scenes."""

    models_dir: Path = DEFAULT_MODELS_DIR
    detector_path: Path | None = None  # None: the card's, shipped in models/
    runs: int = 15
    scenes_dir: Path | None = None  # None: $MASKLITE_SCENES_DIR
    scene_limit: int | None = None


@dataclass
class Section:
    card: ModelCard
    scenes: list[BenchImage]
    before: dict[str, object]  # stats.snapshot() at the start, for the section's own conditions

    def conditions(self) -> dict[str, Any]:
        """Load and steal over the section so far (stats.conditions)."""
        return stats.conditions(self.before, stats.snapshot())


def start_section(options: SectionOptions) -> Section:
    """One OpenCV thread, the conditions snapshot, the card, the scenes ($MASKLITE_SCENES_DIR by default)."""
    cv2.setNumThreads(1)
    before = stats.snapshot()
    directory = scenes_dir(options.scenes_dir)
    found = directory is not None and (directory / "images").is_dir()
    scenes = load_scenes(directory)[: options.scene_limit] if found else []  # type: ignore[arg-type]
    return Section(load_card(options.models_dir), scenes, before)


def run_section_cli(
    argv: list[str] | None,
    prog: str,
    doc: str,
    runs: int,
    measure: Callable[..., dict[str, Any]],
    render: Callable[[dict[str, Any]], str],
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """A section's `main`: the common options, run, print, optionally write JSON; exit 1 when the result is
    an error. `measure(options)`, or `measure(options, args)` for a section with `add_arguments`."""
    ap = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    ap.add_argument("--detector", type=Path, default=None, help="default: $MASKLITE_DETECTOR_PATH")
    ap.add_argument("--runs", type=int, default=runs)
    ap.add_argument("--scenes-dir", type=Path, default=None, help="default: $MASKLITE_SCENES_DIR")
    ap.add_argument("--scene-limit", type=int, default=None, help="first N scenes only")
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    if add_arguments is not None:
        add_arguments(ap)
    args = ap.parse_args(argv)
    options = SectionOptions(args.models_dir, args.detector, args.runs, args.scenes_dir, args.scene_limit)
    result = measure(options) if add_arguments is None else measure(options, args)
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 1 if "error" in result else 0
