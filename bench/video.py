"""`python -m bench.video`: the video path's numbers (issue 23), printed and optionally saved as JSON.

    throughput   frames/s analysed at stride 1 on a 640x480 clip with up to 4 faces, in-process: detect +
                 classify alone, and the whole loop (decode, track, vote); the tracker + vote share
    counting     unique people, ID switches and per-person label accuracy on pan/zoom clips of the held-out
                 scenes (scenes-sample), for ByteTrack (the shipped tracker) and Norfair when importable
    stream       a real RTSP server on loopback (bench/rtsp.py) read for --seconds (60): the lag of each
                 frame behind the stream's own clock, its trend, and the frames dropped

Timings depend on the machine and its load: take them on a quiet one (`--threads 1` is the service's
per-request setting). `--quick` is a short correctness run (10 s stream, two pan clips).

Norfair pins numpy<2, so it is not in the lock; to compare it, install it beside the project without
its dependencies: `pip install --target /tmp/norfair --no-deps norfair==2.3.0 filterpy==1.4.5`, then
`PYTHONPATH=/tmp/norfair python -m bench.video`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.clips import (
    TrackScore,
    annotation_complete,
    encode,
    plan_shots,
    render_clip,
    score_tracks,
    suitable_scenes,
)
from bench.rtsp import RtspServer
from masklite.paths import DEFAULT_MODELS_DIR, ENV_SCENES_DIR
from masklite.tracking import LOST_AFTER_S, PersonVotes, make_tracker
from masklite.video import Models, VideoOptions, _analyse, analyse_video, load_models, open_source

FPS = 10.0


class NorfairTracker:
    """Norfair behind the same one method as masklite.tracking.ByteTracker, with the same settings: IoU
    distance (match down to IoU 0.2), forget after LOST_AFTER_S, confirm on the 2nd frame."""

    name = "norfair"

    def __init__(self, fps: float):
        import norfair

        self._norfair = norfair
        self._tracker = norfair.Tracker(
            distance_function="iou",
            distance_threshold=0.8,
            hit_counter_max=max(1, round(fps * LOST_AFTER_S)),
            initialization_delay=1,
        )

    def update(self, boxes: Sequence[tuple[int, int, int, int]], scores: Sequence[float]) -> list[int | None]:
        detections = [
            self._norfair.Detection(
                points=np.array([[x, y], [x + w, y + h]], dtype=float), scores=np.array([s, s]), data=i
            )
            for i, ((x, y, w, h), s) in enumerate(zip(boxes, scores, strict=True))
        ]
        ids: list[int | None] = [None] * len(boxes)
        for obj in self._tracker.update(detections=detections):
            det = obj.last_detection
            if det is not None and any(det is d for d in detections):  # matched in this frame
                ids[det.data] = int(obj.id)
        return ids


def norfair_available() -> bool:
    try:
        import norfair  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------- clips


def pan_clips(scenes: Path, models: Models, count: int) -> list[tuple[str, Any]]:
    """One clip per pair of complete held-out scenes: a pan, then a cut to a zoom."""
    stems = [s for s in suitable_scenes(scenes) if annotation_complete(scenes, s, models.detector)]
    pairs = [stems[i : i + 2] for i in range(0, len(stems) - 1, 2)][:count]
    return [("+".join(p), render_clip(plan_shots(scenes, p), fps=FPS, seconds_per_shot=3)) for p in pairs]


def throughput_clip(scenes: Path, models: Models) -> Any:
    """640x480, up to 4 faces per frame: pans and zooms of the complete scenes with 2..4 faces."""
    stems = [
        s for s in suitable_scenes(scenes, max_faces=4) if annotation_complete(scenes, s, models.detector)
    ]
    return render_clip(plan_shots(scenes, stems[:4]), fps=FPS, seconds_per_shot=5)


# ---------------------------------------------------------------- measurements


def measure_throughput(path: Path, models: Models, repeats: int) -> dict[str, Any]:
    """Detect + classify alone on decoded frames, then the whole loop on the file; best of `repeats`."""
    with open_source(path) as source:
        frames = [cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) for _, _, bgr in source]
    for rgb in frames[:5]:  # warm up the interpreters
        _analyse(rgb, models)
    analyse_s, found = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        found = [_analyse(rgb, models) for rgb in frames]
        analyse_s.append(time.perf_counter() - t0)
    # the tracker and the vote alone, on the same detections
    track_s = []
    for _ in range(repeats):
        tracker, votes = make_tracker(FPS), PersonVotes()
        t0 = time.perf_counter()
        for i, faces in enumerate(found):
            ids = tracker.update([f.box for f in faces], [f.detector_score or 1.0 for f in faces])
            for face, track_id in zip(faces, ids, strict=True):
                if track_id is not None:
                    votes.add(track_id, face.label, i / FPS)
            _ = [votes.label(i) for i in ids if i is not None]
        track_s.append(time.perf_counter() - t0)
    loop_s = []
    for _ in range(repeats):
        with open_source(path) as source:
            result = analyse_video(source, models, VideoOptions(stride=1))
        loop_s.append(len(frames) / result.summary["fps_processed"])
    n = len(frames)
    faces_per_frame = [len(f) for f in found]
    return {
        "frames": n,
        "faces_per_frame": {"mean": round(statistics.mean(faces_per_frame), 2), "max": max(faces_per_frame)},
        "fps_detect_classify": round(n / min(analyse_s), 1),
        "fps_whole_loop": round(n / min(loop_s), 1),
        "tracker_vote_ms_per_frame": round(1e3 * min(track_s) / n, 3),
        "tracker_vote_share": round(min(track_s) / min(analyse_s), 4),
    }


def measure_counting(
    clips: list[tuple[str, Any]], models: Models, trackers: dict[str, Any], strides: Sequence[int]
) -> dict[str, Any]:
    """Each tracker at each stride (a larger stride: fewer analysed frames, faces move further between
    them, the harder case for a tracker) on every clip; the totals add the clips up."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = [
            (name, clip, encode(clip.frames, Path(tmp) / f"{i}.mp4", FPS))
            for i, (name, clip) in enumerate(clips)
        ]
        for name, make in trackers.items():
            for stride in strides:
                rows, total = [], None
                for clip_name, clip, path in files:
                    lines: list[dict] = []
                    with open_source(path) as source:
                        options = VideoOptions(stride=stride)
                        tracker = make(FPS / stride)
                        result = analyse_video(
                            source, models, options, on_frame=lines.append, tracker=tracker
                        )
                    score = score_tracks(clip.truth, lines, result.people)
                    rows.append({"clip": clip_name, **score.as_json()})
                    total = score if total is None else _add(total, score)
                assert total is not None
                out[f"{name} stride {stride}"] = {"clips": rows, "total": total.as_json()}
    return out


def _add(a: TrackScore, b: TrackScore) -> TrackScore:
    return TrackScore(*(x + y for x, y in zip(a.__dict__.values(), b.__dict__.values(), strict=True)))


def measure_stream(path: Path, models: Models, seconds: float) -> dict[str, Any]:
    """Lag of frame i = (when it was handed out) - (stream start + i / fps), less the smallest such value
    seen: how far behind the freshest frame each frame came. Growing lag = a reader falling behind."""
    with RtspServer(path, fps=FPS) as rtsp, open_source(rtsp.url) as source:
        raw: list[tuple[float, float]] = []  # (t_s, raw lag), after each frame's analysis
        options = VideoOptions(duration_s=seconds)
        start = time.monotonic()

        def on_frame(line: dict[str, Any]) -> None:
            raw.append((line["t_s"], time.monotonic() - start - line["frame"] / source.fps))

        result = analyse_video(source, models, options, on_frame=on_frame)
    base = min(lag for _, lag in raw)
    lags = [(t, lag - base) for t, lag in raw]
    third = max(1, len(lags) // 3)
    first, last = [lag for _, lag in lags[:third]], [lag for _, lag in lags[-third:]]
    return {
        "seconds": seconds,
        "fps_stream": source.fps,
        "frames_read": result.summary["frames_read"],
        "frames_analysed": result.summary["frames_analysed"],
        "frames_dropped": result.summary["frames_dropped"],
        "lag_ms_median_first_third": round(1e3 * statistics.median(first), 1),
        "lag_ms_median_last_third": round(1e3 * statistics.median(last), 1),
        "lag_ms_max": round(1e3 * max(lag for _, lag in lags), 1),
        "lag_growth_ms": round(1e3 * (statistics.median(last) - statistics.median(first)), 1),
    }


# ---------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.video", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", default=os.environ.get(ENV_SCENES_DIR), help="scenes-sample folder")
    parser.add_argument("--models-dir", default=str(DEFAULT_MODELS_DIR))
    parser.add_argument("--threads", type=int, default=1, help="LiteRT threads (the service: 1 per request)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to read the RTSP stream")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clips", type=int, default=4, help="pan clips for the counting numbers")
    parser.add_argument(
        "--strides", type=lambda v: [int(x) for x in v.split(",")], default=[1, 3], help="counting strides"
    )
    parser.add_argument("--quick", action="store_true", help="a short correctness run: 10 s stream, 2 clips")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers here")
    args = parser.parse_args(argv)
    if not args.scenes:
        parser.error(f"set --scenes or {ENV_SCENES_DIR}")
    if args.quick:
        args.seconds, args.repeats, args.clips = 10.0, 1, 2
    scenes = Path(args.scenes)
    models = load_models(Path(args.models_dir), "int8", threads=args.threads)
    trackers: dict[str, Any] = {"bytetrack": make_tracker}
    if norfair_available():
        trackers["norfair"] = NorfairTracker
    result: dict[str, Any] = {"threads": args.threads, "trackers": list(trackers)}
    with tempfile.TemporaryDirectory() as tmp:
        clip = throughput_clip(scenes, models)
        path = encode(clip.frames, Path(tmp) / "throughput.mp4", FPS)
        print("throughput ...", file=sys.stderr)
        result["throughput"] = measure_throughput(path, models, args.repeats)
        print("counting ...", file=sys.stderr)
        clips = pan_clips(scenes, models, args.clips)
        result["counting"] = measure_counting(clips, models, trackers, args.strides)
        print(f"stream ({args.seconds:g} s) ...", file=sys.stderr)
        result["stream"] = measure_stream(path, models, args.seconds)
    print(format_result(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def format_result(result: dict[str, Any]) -> str:
    t, s = result["throughput"], result["stream"]
    lines = [
        f"throughput (640x480, {t['frames']} frames, faces/frame mean {t['faces_per_frame']['mean']} "
        f"max {t['faces_per_frame']['max']}, {result['threads']} thread(s))",
        f"  detect + classify     {t['fps_detect_classify']:8.1f} frames/s",
        f"  whole loop            {t['fps_whole_loop']:8.1f} frames/s (decode + detect + classify + track)",
        f"  tracker + vote        {t['tracker_vote_ms_per_frame']:8.3f} ms/frame = "
        f"{100 * t['tracker_vote_share']:.2f} % of detect + classify",
        "counting (pan/zoom clips of held-out scenes)",
    ]
    for name, block in result["counting"].items():
        tot = block["total"]
        lines.append(
            f"  {name:18s} true {tot['true_people']:3d}  counted {tot['counted']:3d} "
            f"({100 * tot['count_error']:+.1f} %)  tracks {tot['tracks']:3d}  found {tot['found']:3d}  "
            f"ID switches {tot['id_switches']:2d}  labels right {100 * tot['label_accuracy']:.1f} %"
        )
    lines += [
        f"stream (RTSP on loopback, {s['fps_stream']:g} fps, {s['seconds']:g} s)",
        f"  frames read {s['frames_read']}, analysed {s['frames_analysed']}, dropped {s['frames_dropped']}",
        f"  lag median first third {s['lag_ms_median_first_third']} ms, last third "
        f"{s['lag_ms_median_last_third']} ms, growth {s['lag_growth_ms']} ms, max {s['lag_ms_max']} ms",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
