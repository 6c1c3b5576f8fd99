"""The `masklite` command (pyproject [project.scripts]).

    masklite predict PATH... [--model int8] [--server URL]     images or folders -> JSON lines
    masklite video IN [--out annotated.mp4] [--jsonl F] [--stride N] [--blur] [--server URL]
                                      IN: a file, an rtsp/http URL or a webcam index
    masklite serve [--host 127.0.0.1] [--port 8000]            the HTTP service (python -m service)

In-process by default (the shipped models, this machine's CPU); `--server URL` sends the work to a running
service through masklite.client instead. Progress bars (tqdm) go to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from masklite.paths import DEFAULT_MODELS_DIR

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def image_paths(inputs: Sequence[str]) -> Iterator[Path]:
    """Files as given; folders walked (sorted) for images."""
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            )
        else:
            yield path


def _summary(labels: Sequence[str]) -> dict[str, int]:
    return dict(Counter(labels))


def _face_json(face: Any) -> dict[str, Any]:
    """A pipeline FaceResult or a client Face -> the service's face JSON."""
    score = face.detector_score
    return {
        "box": list(face.box),
        "label": face.label,
        "mask_probability": round(face.mask_probability, 4),
        "detector_score": None if score is None else round(score, 4),
        "landmarks": [list(p) for p in getattr(face, "landmarks", ())],
    }


# ---------------------------------------------------------------- predict


def _predict_local(paths: list[Path], args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    from masklite.image import ImageError
    from masklite.pipeline import PredictOptions, predict_image
    from masklite.video import load_models

    models = load_models(Path(args.models_dir), args.model)
    for path in paths:
        try:
            result = predict_image(path.read_bytes(), models, PredictOptions(model=args.model))
        except (OSError, ImageError) as exc:
            yield {"path": str(path), "error": str(exc)}
            continue
        faces = result.faces
        yield {
            "path": str(path),
            "image": {"width": result.width, "height": result.height},
            "faces": [_face_json(f) for f in faces],
            "summary": _summary([f.label for f in faces]),
        }


def _predict_remote(paths: list[Path], args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    from masklite.client import Client, MaskliteError

    with Client(args.server, api_key=args.api_key) as client:
        for path in paths:
            try:
                result = client.predict(path, model=args.model)
            except (OSError, MaskliteError) as exc:
                yield {"path": str(path), "error": str(exc)}
                continue
            yield {
                "path": str(path),
                "image": {"width": result.width, "height": result.height},
                "faces": [_face_json(f) for f in result.faces],
                "summary": _summary([f.label for f in result.faces]),
            }


def cmd_predict(args: argparse.Namespace) -> int:
    paths = list(image_paths(args.paths))
    if not paths:
        print("masklite predict: no images found", file=sys.stderr)
        return 2
    run = _predict_remote if args.server else _predict_local
    failed = 0
    bar = tqdm(total=len(paths), unit="img", disable=len(paths) < 2 or args.quiet, file=sys.stderr)
    for line in run(paths, args):
        failed += "error" in line
        print(json.dumps(line), flush=True)
        bar.update()
    bar.close()
    return 1 if failed else 0


# ---------------------------------------------------------------- video


def _video_local(args: argparse.Namespace) -> dict[str, Any]:
    from masklite.video import AnnotatedWriter, VideoOptions, analyse_video, load_models, open_source

    models = load_models(Path(args.models_dir), args.model)
    options = VideoOptions(
        stride=args.stride, min_votes=args.min_votes, duration_s=args.duration, blur=args.blur
    )
    jsonl = open(args.jsonl, "w") if args.jsonl else None  # noqa: SIM115 - closed below
    try:
        with open_source(args.input) as source:
            writer = AnnotatedWriter(args.out, source.fps, source.width, source.height) if args.out else None
            total = source.frame_count
            if args.duration and not total:
                total = int(args.duration * source.fps)
            bar = tqdm(total=total, unit="frame", disable=args.quiet, file=sys.stderr)

            def tick(frames: int, _total: int | None) -> None:
                bar.update(frames - bar.n)

            try:
                result = analyse_video(
                    source,
                    models,
                    options,
                    on_frame=(lambda line: jsonl.write(json.dumps(line) + "\n")) if jsonl else None,
                    writer=writer,
                    progress=tick,
                )
            finally:
                bar.close()
                if writer is not None:
                    writer.close()
    finally:
        if jsonl is not None:
            jsonl.close()
    return {"summary": result.summary, "people": result.people}


def _video_remote(args: argparse.Namespace) -> dict[str, Any]:
    from masklite.client import Client

    if args.out and not args.blur:
        raise SystemExit("masklite video --server: the service keeps no frames without --blur; add --blur")
    is_url = "://" in args.input
    with Client(args.server, api_key=args.api_key) as client:
        job = client.video(
            None if is_url else Path(args.input),
            url=args.input if is_url else None,
            duration_s=args.duration,
            stride=args.stride,
            blur=args.blur,
            precision=args.model,
            min_votes=args.min_votes,
        )
        bar = tqdm(total=100, unit="%", disable=args.quiet, file=sys.stderr)
        job = client.wait(job, on_progress=lambda j: bar.update(round(j.progress * 100) - bar.n))
        bar.close()
        if args.jsonl:
            Path(args.jsonl).write_bytes(client.artifact(job, "frames.jsonl"))
        if args.out:
            Path(args.out).write_bytes(client.artifact(job, "annotated.mp4"))
    return job.result or {}


def cmd_video(args: argparse.Namespace) -> int:
    from masklite.video import VideoError

    try:
        result = _video_remote(args) if args.server else _video_local(args)
    except VideoError as exc:
        print(f"masklite video: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


# ---------------------------------------------------------------- serve


def cmd_serve(args: argparse.Namespace) -> int:
    """`python -m service` in this process's place (the core never imports the service)."""
    env = dict(os.environ)
    # loopback unless told otherwise: the Docker image and `make serve` set MASKLITE_HOST themselves
    env["MASKLITE_HOST"] = args.host or env.get("MASKLITE_HOST") or "127.0.0.1"
    if args.port is not None:
        env["MASKLITE_PORT"] = str(args.port)
    os.execve(sys.executable, [sys.executable, "-m", "service"], env)
    return 0  # not reached


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="masklite", description="Face-mask detection: images, videos, service"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", default="int8", help="precision from the model card (default int8)")
        p.add_argument("--models-dir", default=str(DEFAULT_MODELS_DIR), help="in-process: the models folder")
        p.add_argument("--server", metavar="URL", help="use a running service instead of this process")
        p.add_argument("--api-key", default=os.environ.get("MASKLITE_API_KEY"), help="for --server")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("predict", help="images or folders -> one JSON line per image")
    p.add_argument("paths", nargs="+", metavar="PATH")
    common(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("video", help="a video, stream or webcam -> people over time (JSON)")
    p.add_argument("input", metavar="IN", help="file, rtsp/http(s) URL, or webcam index (0)")
    p.add_argument("--out", metavar="MP4", help="write the annotated video here")
    p.add_argument("--jsonl", metavar="FILE", help="write one JSON line per analysed frame here")
    p.add_argument("--stride", type=int, default=1, help="analyse every Nth frame")
    p.add_argument("--blur", action="store_true", help="pixelate faces in the annotated video")
    p.add_argument("--min-votes", type=int, default=3, help="judged frames before a person gets a label")
    p.add_argument("--duration", type=float, help="seconds to read (a stream or webcam: required to stop)")
    common(p)
    p.set_defaults(func=cmd_video)

    p = sub.add_parser("serve", help="run the HTTP service (python -m service)")
    p.add_argument("--host", help="interface to bind (default 127.0.0.1, or $MASKLITE_HOST)")
    p.add_argument("--port", type=int, help="TCP port (default 8000, or $MASKLITE_PORT)")
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "stride", 1) < 1:
        build_parser().error("--stride must be at least 1")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
