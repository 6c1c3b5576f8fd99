"""`python -m service check` (or `make check`): a first-run check a user can run before serving.

Verifies what the service would load, exactly as it loads it: the model card, every model's sha256 and
that LiteRT loads it, the face detector (file, sha256 against the card, its runtime loads it), the thread
settings, and that the whole app imports. Then one detection and one classification per model on the
bundled sample image, printing what was found and how long each stage took. Exit 0 when everything
passed, 1 with the reason on the first broken part (a damaged model, a missing detector, ...).
The Docker build runs it too, so an image that builds is an image that serves.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

from masklite.card import ModelCard, load_card, verify_model_file
from masklite.classifier import Classifier
from masklite.image import decode_image
from masklite.paths import DEFAULT_MODELS_DIR
from masklite.pipeline import Models, PredictOptions, predict_frame
from service.runtime import load_served_detector
from service.settings import Settings

SAMPLE_IMAGE = DEFAULT_MODELS_DIR / "samples" / "astronaut_pair.jpg"
T = TypeVar("T")


class CheckFailed(Exception):
    pass


class Report:
    def __init__(self, out: Callable[[str], None] = print):
        self.out = out

    def line(self, status: str, what: str, detail: str) -> None:
        self.out(f"  {status:<5} {what:<16} {detail}")

    def step(self, what: str, fn: Callable[[], T]) -> tuple[T, float]:
        """Run one step; on any error print FAIL with the reason and stop the check."""
        t0 = time.perf_counter()
        try:
            value = fn()
        except Exception as exc:  # noqa: BLE001 - every failure is reported the same way
            self.line("FAIL", what, f"{type(exc).__name__}: {exc}")
            raise CheckFailed(what) from exc
        return value, (time.perf_counter() - t0) * 1e3


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_check(settings: Settings, image: Path = SAMPLE_IMAGE, out: Callable[[str], None] = print) -> int:
    r = Report(out)
    t_start = time.perf_counter()
    out(f"masklite check: models {settings.models_dir}")
    try:
        card: ModelCard
        card, _ = r.step("model card", lambda: load_card(settings.models_dir))
        r.line("ok", "model card", f"{card.name} {card.version}, labels {', '.join(card.labels)}")
        classifiers: dict[str, Classifier] = {}
        for precision, entry in card.models.items():
            what = f"model {precision}"
            path, _ = r.step(what, partial(verify_model_file, card, settings.models_dir, precision))
            clf, ms = r.step(what, partial(Classifier, path, num_threads=1))
            classifiers[precision] = clf
            r.line("ok", f"model {precision}", f"{entry.file}, sha256 {entry.sha256[:12]}… matches the card, "
                   f"loads in {ms:.0f} ms")  # fmt: skip
        spec = card.detector
        detector, ms = r.step("detector", lambda: load_served_detector(settings, spec))
        files = detector.files
        assert files is not None  # load_detector records them
        det_path, runtime, run_path = files.source, detector.runtime, detector.model_path
        sha = {
            True: f"sha256 {spec.sha256 and spec.sha256[:12]}… matches the card",
            False: "sha256 does NOT match the card (MASKLITE_DETECTOR_OPTIONAL: OpenCV runs it as it is)",
            None: "no sha256 in the card",
        }[files.sha256_ok]
        via = f"; {runtime} runs {run_path.name}" if run_path != det_path else f"; {runtime}"
        r.line("ok", "detector", f"{spec.name} {det_path}, {sha}{via}, loads in {ms:.0f} ms")
        cpus = _cpus()
        ocv = "OpenCV default" if settings.opencv_threads < 0 else f"OpenCV {settings.opencv_threads}"
        ocv += f", a lone request on {settings.solo_threads} LiteRT threads"
        threads = f"{settings.threads} inference threads x {settings.workers} workers, {ocv}, {cpus} CPUs"
        if settings.threads * settings.workers > cpus:
            r.line("warn", "threads", f"{threads}: more inference threads than CPUs (MASKLITE_THREADS)")
        else:
            r.line("ok", "threads", threads)
        _, ms = r.step("app", lambda: _import_app(settings))  # imported here: a broken one is reported
        r.line("ok", "app", f"every router imports, {ms:.0f} ms")

        data, _ = r.step("sample", image.read_bytes)
        rgb, ms = r.step("decode", lambda: decode_image(data))
        out(f"sample {image.name} ({rgb.shape[1]}x{rgb.shape[0]}, {len(data) // 1024} KB)")
        r.line("ok", "decode", f"{ms:.1f} ms")
        faces, ms = r.step("detect", lambda: detector.detect(rgb))
        if not faces:
            r.line("FAIL", "detect", "no face found on the sample image")
            raise CheckFailed("detect")
        r.line("ok", "detect", f"{len(faces)} faces in {ms:.1f} ms: " + ", ".join(
            f"[{', '.join(map(str, f.box))}] score {f.score:.2f}" for f in faces))  # fmt: skip
        for precision, clf in classifiers.items():
            pred, ms = r.step(
                f"classify {precision}",
                lambda c=clf, p=precision: predict_frame(
                    rgb, Models(card, c, detector), PredictOptions(model=p)
                ),
            )
            labels = ", ".join(f"{f.label} ({f.mask_probability:.2f})" for f in pred.faces)
            r.line("ok", f"classify {precision}", f"{labels}; {pred.timings_ms['classify']:.1f} ms classify, "
                   f"{ms:.1f} ms detect+crop+classify")  # fmt: skip
    except CheckFailed as exc:
        out(f"check FAILED at {exc}: see the line above")
        return 1
    out(f"check passed in {time.perf_counter() - t_start:.1f} s")
    return 0


def _import_app(settings: Settings) -> None:
    from service.app import create_app  # every router and its dependencies; a missing one raises here

    create_app(settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service check", description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=SAMPLE_IMAGE, help="image to detect and classify")
    args = parser.parse_args(argv)
    return run_check(Settings(), args.image)


if __name__ == "__main__":
    sys.exit(main())
