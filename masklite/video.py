"""Video in, people out: frames from a file, an RTSP/HTTP(S) URL or a webcam -> faces every `stride`-th
frame -> tracks (masklite/tracking.py) -> one label per person by a vote -> per-frame JSON lines, a
summary, an annotated video.

    models = load_models(models_dir, "int8")
    with open_source("clip.mp4") as source:
        result = analyse_video(source, models, VideoOptions(stride=2), on_frame=print)
    result.summary, result.people

Frames are read with OpenCV's FFmpeg backend, not PyAV: OpenCV is already a base dependency, one
`VideoCapture` takes a file, a URL or a webcam index (V4L2), it has open/read timeouts for streams, and it
hands back the BGR arrays the rest of the core uses. PyAV (installed with the `video` extra) does the two
things OpenCV's wheel cannot: `probe` demuxes without decoding (a cheap length and truncation check on
uploads), and `AnnotatedWriter` encodes H.264 (the wheel's FFmpeg has no software H.264 encoder).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np

from masklite.card import MASK_LABEL, UNKNOWN_LABEL, load_card, verify_model_file
from masklite.classifier import Classifier
from masklite.draw import DrawnFace, annotate
from masklite.faces import load_detector
from masklite.pipeline import FaceResult, Models, PredictOptions, predict_frame
from masklite.tracking import DEFAULT_MIN_VOTES, PersonVotes, Tracker, make_tracker

LIVE_SCHEMES = ("rtsp://", "rtsps://")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
RTSP_CAPTURE_OPTIONS = "rtsp_transport;tcp|analyzeduration;500000|probesize;100000"
# what a caller's stream may use under it: network protocols only, never file, data, pipe or crypto
STREAM_PROTOCOLS = "rtsp,rtsps,tcp,tls,udp,rtp,srtp,http,https,httpproxy"
OPEN_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 10.0
# compliance buckets: a minute each, or 10 s for a clip shorter than this
SHORT_CLIP_S = 180.0


class VideoError(ValueError):
    """The input is not a usable video. `code` says which way (the service maps it to its 4xx)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class VideoOptions:
    stride: int = 1  # analyse every Nth frame (the others are written with the last boxes)
    min_votes: int = DEFAULT_MIN_VOTES  # judged frames before a person gets a label
    max_frames: int | None = None  # read at most this many frames
    duration_s: float | None = None  # read at most this many seconds of video (a stream: of wall time)
    blur: bool = False  # pixelate faces in the annotated output
    bucket_s: float | None = None  # compliance bucket; None: 60 s, or 10 s for a short clip


# ---------------------------------------------------------------- frame sources


def parse_source(spec: str | int | Path) -> str | int:
    """'0' -> webcam 0; a URL stays a URL; anything else is a file path."""
    if isinstance(spec, int):
        return spec
    text = str(spec)
    return int(text) if text.isdigit() else text


class FrameSource:
    """One opened video. Iterating gives (frame index, t_s, BGR frame). A live source (RTSP, a webcam) is
    read on its own thread that keeps only the newest frame, so a slow consumer drops frames instead of
    falling further and further behind the camera."""

    def __init__(
        self,
        spec: str | int | Path,
        live: bool | None = None,
        timeout_s: float = OPEN_TIMEOUT_S,
        protocols: str | None = None,
    ):
        """protocols: FFmpeg's protocol whitelist for a URL (e.g. STREAM_PROTOCOLS): a stream that
        points elsewhere (an HLS playlist naming file://) is refused. It replaces the capture options
        of this process, so a service sets it in its job process only."""
        self.spec = parse_source(spec)
        is_url = isinstance(self.spec, str) and self.spec.lower().startswith(STREAM_SCHEMES)
        self.live = (
            live
            if live is not None
            else isinstance(self.spec, int) or str(self.spec).lower().startswith(LIVE_SCHEMES)
        )
        if isinstance(self.spec, str) and not is_url and not Path(self.spec).is_file():
            raise VideoError("not_found", f"no such file: {self.spec}")
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(READ_TIMEOUT_S * 1000),
        ]  # fmt: skip
        if str(self.spec).lower().startswith(LIVE_SCHEMES):
            # RTP over the RTSP connection (TCP): no UDP ports to open, no packet loss on a busy link; a
            # short stream probe (0.5 s, not 5 s): opening took ~3 s and the frames buffered meanwhile came
            # out stale. OpenCV reads this variable at open time; a caller who set it keeps theirs
            os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", RTSP_CAPTURE_OPTIONS)
        if is_url and protocols is not None:
            rtsp = RTSP_CAPTURE_OPTIONS + "|" if self.live else ""
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = f"{rtsp}protocol_whitelist;{protocols}"
        backend = cv2.CAP_ANY if isinstance(self.spec, int) else cv2.CAP_FFMPEG
        self._cap = cv2.VideoCapture(self.spec, backend, params)
        if not self._cap.isOpened():
            self._cap.release()
            if isinstance(self.spec, int):
                raise VideoError("no_camera", f"cannot open {self._describe()}")
            what = "cannot connect to the stream" if is_url else "not a readable video"
            raise VideoError("unreachable" if is_url else "not_video", f"{what}: {self._describe()}")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if math.isfinite(fps) and 0 < fps <= 240 else 25.0
        self.width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if self.width <= 0 or self.height <= 0:
            # opened, but the probe saw no picture (a stream without its parameters in the SDP and no
            # key frame within the probe): reading would fail at once, so say so now
            self._cap.release()
            raise VideoError("no_frames", f"no picture from {self._describe()}")
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count: int | None = count if count > 0 and not self.live else None
        self.frames_read = 0  # decoded from the source (a live source: more than were handed out)
        self._latest: tuple[int, float, np.ndarray] | None = None
        self._cond = threading.Condition()
        self._ended = False
        self._reader: threading.Thread | None = None
        self._t0 = time.monotonic()

    def _describe(self) -> str:
        if isinstance(self.spec, int):
            return f"webcam {self.spec}"
        return self.spec.split("?", 1)[0] if "://" in self.spec else Path(self.spec).name

    def position_s(self) -> float:
        """The source's own clock (container / stream timestamps) of the last frame read."""
        return float(self._cap.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        return self._live_frames() if self.live else self._file_frames()

    def _file_frames(self) -> Iterator[tuple[int, float, np.ndarray]]:
        index = 0
        while True:
            ok, frame = self._cap.read()
            if not ok or frame is None:
                return
            self.frames_read += 1
            yield index, index / self.fps, frame
            index += 1

    def _read_loop(self) -> None:
        try:
            index = 0
            while not self._ended:
                ok, frame = self._cap.read()
                if not ok or frame is None:
                    break
                with self._cond:
                    self.frames_read += 1
                    self._latest = (index, time.monotonic() - self._t0, frame)
                    self._cond.notify_all()
                index += 1
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _live_frames(self) -> Iterator[tuple[int, float, np.ndarray]]:
        self._reader = threading.Thread(target=self._read_loop, name="masklite-frames", daemon=True)
        self._reader.start()
        while True:
            with self._cond:
                while self._latest is None and not self._ended:
                    self._cond.wait(0.5)
                if self._latest is None:
                    return
                item, self._latest = self._latest, None
            yield item

    def close(self) -> None:
        self._ended = True
        if self._reader is not None:
            self._reader.join(timeout=READ_TIMEOUT_S + 1)
        self._cap.release()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_source(
    spec: str | int | Path,
    live: bool | None = None,
    timeout_s: float = OPEN_TIMEOUT_S,
    protocols: str | None = None,
) -> FrameSource:
    return FrameSource(spec, live, timeout_s, protocols)


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frames: int
    duration_s: float
    codec: str


def probe(path: Path | str | BinaryIO, max_duration_s: float | None = None) -> VideoInfo:
    """Demux a video file without decoding it (cheap enough for the API process): its size, frame count
    and length; VideoError for a file that is not a video, is cut short, has no frames, or is too long."""
    import av  # the `video` extra

    try:
        target = str(path) if isinstance(path, str | Path) else path
        with av.open(target, metadata_errors="ignore") as container:
            if not container.streams.video:
                raise VideoError("not_video", "no video stream in the file")
            stream = container.streams.video[0]
            declared = int(stream.frames or 0)
            packets, last_pts, time_base = 0, None, stream.time_base
            for packet in container.demux(stream):
                if packet.size == 0:  # the demuxer's flush packet
                    continue
                packets += 1
                if packet.pts is not None:
                    last_pts = packet.pts if last_pts is None else max(last_pts, packet.pts)
                seconds = float(last_pts * time_base) if last_pts is not None and time_base else 0.0
                if max_duration_s is not None and seconds > max_duration_s:
                    raise VideoError("too_long", f"the video is longer than {max_duration_s:g} s")
            width, height = stream.codec_context.width, stream.codec_context.height
            rate = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
            codec = stream.codec_context.name
            duration = (
                float(last_pts * time_base) + 1 / rate
                if last_pts is not None and time_base
                else packets / rate
            )
    except VideoError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise VideoError("not_video", f"not a readable video ({type(exc).__name__})") from exc
    if packets == 0 or width <= 0 or height <= 0:
        raise VideoError("no_frames", "the video has no frames")
    if declared > 0 and packets < declared * 0.95:
        raise VideoError("truncated", f"the file is cut short: {packets} of {declared} frames")
    return VideoInfo(width, height, rate, packets, duration, codec)


# ---------------------------------------------------------------- annotated output


class AnnotatedWriter:
    """Writes RGB frames to an MP4: H.264 (libx264, yuv420p, faststart) through PyAV when it is there,
    else MPEG-4 Part 2 ('mp4v') through OpenCV, whose wheel has no software H.264 encoder. `codec` says
    which one was used."""

    def __init__(self, path: Path | str, fps: float, width: int, height: int):
        self.path = Path(path)
        # yuv420p needs even sides: drop a last odd row / column
        self.width, self.height = width - width % 2, height - height % 2
        self._container: Any = None
        self._stream: Any = None
        self._cv: cv2.VideoWriter | None = None
        try:
            import av

            if "libx264" not in av.codecs_available:
                raise ImportError("no libx264")
            self._av = av
            self._container = av.open(str(self.path), "w", options={"movflags": "+faststart"})
            self._stream = self._container.add_stream("libx264", rate=round(fps) or 25)
            self._stream.width, self._stream.height = self.width, self.height
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"preset": "veryfast", "crf": "26"}
            self.codec = "h264"
        except ImportError:
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            self._cv = cv2.VideoWriter(str(self.path), fourcc, fps or 25.0, (self.width, self.height))
            if not self._cv.isOpened():
                raise OSError(f"cannot write {self.path.name}") from None
            self.codec = "mpeg4"

    def write(self, rgb: np.ndarray) -> None:
        rgb = rgb[: self.height, : self.width]
        if self._cv is not None:
            self._cv.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            return
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        if self._cv is not None:
            self._cv.release()
        elif self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None

    def __enter__(self) -> AnnotatedWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- the models and the one pipeline call


def load_models(
    models_dir: Path,
    precision: str = "int8",
    detector_path: Path | None = None,
    runtime: str | None = None,
    threads: int = 1,
) -> Models:
    """The card, the classifier of `precision` (sha256 checked) and the card's detector (load_detector)."""
    card = load_card(models_dir)
    if precision not in card.models:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(card.models)}")
    classifier = Classifier(
        verify_model_file(card, models_dir, precision), num_threads=threads, spec=card.model_input(precision)
    )
    detector = load_detector(
        card.detector, models_dir, runtime=runtime, path=detector_path, num_threads=threads
    )
    return Models(card, classifier, detector)


def _analyse(rgb: np.ndarray, models: Models) -> list[FaceResult]:
    """The one call into the image pipeline (masklite/pipeline.py): detect, crop, classify, label."""
    return predict_frame(rgb, models, PredictOptions()).faces


# ---------------------------------------------------------------- the loop


@dataclass
class VideoResult:
    summary: dict[str, Any]
    people: list[dict[str, Any]]


@dataclass
class _Buckets:
    size_s: float
    people: dict[int, set[int]] = field(default_factory=dict)  # bucket index -> track ids seen

    def add(self, t_s: float, track_id: int) -> None:
        self.people.setdefault(int(t_s // self.size_s), set()).add(track_id)

    def rows(self, labels: dict[int, str], end_s: float, names: Sequence[str]) -> list[dict[str, Any]]:
        """One row per bucket: the people seen in it, counted by their final label (every label in
        `names`, zeros included), and with_mask / judged."""
        rows = []
        for b in range(max(1, math.ceil(end_s / self.size_s - 1e-9))):  # the last one may be partial
            ids = self.people.get(b, set())
            counts = {name: 0 for name in names} | _count(labels[i] for i in ids)
            judged = counts.get(MASK_LABEL, 0) + sum(
                n for k, n in counts.items() if k not in (MASK_LABEL, UNKNOWN_LABEL)
            )
            rows.append({
                "start_s": round(b * self.size_s, 3),
                "end_s": round(min((b + 1) * self.size_s, max(end_s, b * self.size_s)), 3),
                "people": len(ids),
                **counts,
                "compliance": round(counts.get(MASK_LABEL, 0) / judged, 4) if judged else None,
            })  # fmt: skip
        return rows


def _count(labels: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for label in labels:
        out[label] = out.get(label, 0) + 1
    return out


def bucket_size(options: VideoOptions, expected_s: float | None) -> float:
    if options.bucket_s:
        return options.bucket_s
    return 10.0 if expected_s is not None and expected_s < SHORT_CLIP_S else 60.0


def analyse_video(
    source: FrameSource,
    models: Models,
    options: VideoOptions = VideoOptions(),
    on_frame: Callable[[dict[str, Any]], None] | None = None,
    writer: AnnotatedWriter | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    tracker: Tracker | None = None,
) -> VideoResult:
    """Read `source` to its end (or the options' limits), analyse every `stride`-th frame, track and vote.

    on_frame: each analysed frame's JSON line (a dict). writer: every frame, annotated (and blurred).
    progress(frames_read, total or None) after each frame. The summary's `fps_processed` is analysed
    frames per second of wall time, everything included (decode, draw, encode)."""
    stride = max(1, options.stride)
    tracker = tracker or make_tracker(source.fps / stride)
    votes = PersonVotes(options.min_votes)
    expected_s = (
        options.duration_s
        if options.duration_s is not None
        else (source.frame_count / source.fps if source.frame_count else None)
    )
    buckets = _Buckets(bucket_size(options, expected_s))
    total = source.frame_count
    if options.max_frames is not None:
        total = min(total, options.max_frames) if total else None
    frames, analysed, last_t = 0, 0, 0.0
    drawn: list[DrawnFace] = []
    started = time.perf_counter()
    stopped_by_limit = False
    interrupted = False
    try:  # Ctrl-C on a webcam or a stream ends the reading, not the summary
        for index, t_s, bgr in source:
            if options.duration_s is not None and t_s > options.duration_s:
                stopped_by_limit = True
                break
            frames += 1
            last_t = t_s
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if (frames - 1) % stride == 0:
                faces = _analyse(rgb, models)
                ids = tracker.update([f.box for f in faces], [f.detector_score or 1.0 for f in faces])
                analysed += 1
                for face, track_id in zip(faces, ids, strict=True):
                    if track_id is not None:
                        votes.add(track_id, face.label, t_s)
                        buckets.add(t_s, track_id)
                drawn = [
                    DrawnFace(f.box, votes.label(i) if i is not None else f.label, i)
                    for f, i in zip(faces, ids, strict=True)
                ]
                if on_frame is not None:
                    on_frame(_frame_line(index, t_s, faces, ids, votes))
            if writer is not None:
                writer.write(annotate(rgb, drawn, blur=options.blur))
            if progress is not None:
                progress(frames, total)
            if options.max_frames is not None and frames >= options.max_frames:
                stopped_by_limit = True
                break
    except KeyboardInterrupt:
        interrupted = True
    elapsed = time.perf_counter() - started
    if frames == 0:
        raise VideoError("no_frames", "the video has no frames")
    people = votes.people()
    labels = {p.id: p.label for p in people}
    end_s = last_t + 1 / source.fps
    per_label = {label: 0 for label in (*models.card.labels, UNKNOWN_LABEL)}
    per_label.update(_count(labels.values()))
    summary = {
        "people": per_label,
        "people_total": len(people),
        "compliance": buckets.rows(labels, end_s, list(per_label)),
        "bucket_s": buckets.size_s,
        "frames_read": source.frames_read,
        "frames_analysed": analysed,
        "frames_dropped": max(0, source.frames_read - frames) if source.live else 0,
        "duration_s": round(end_s, 3),
        "fps_source": round(source.fps, 3),
        "fps_processed": round(analysed / elapsed, 2) if elapsed > 0 else None,
        "stride": stride,
        "min_votes": options.min_votes,
        "tracker": getattr(tracker, "name", type(tracker).__name__),
        "size": [source.width, source.height],
        "stopped_at_limit": stopped_by_limit,
        "interrupted": interrupted,
    }
    if writer is not None:
        summary["video_codec"] = writer.codec
    return VideoResult(summary, [p.as_json() for p in people])


def _frame_line(
    index: int, t_s: float, faces: list[FaceResult], ids: list[int | None], votes: PersonVotes
) -> dict[str, Any]:
    return {
        "frame": index,
        "t_s": round(t_s, 3),
        "faces": [
            {
                "id": track_id,
                "box": list(face.box),
                "label": face.label,
                "mask_probability": round(face.mask_probability, 4),
                "detector_score": None if face.detector_score is None else round(face.detector_score, 4),
                "person_label": votes.label(track_id) if track_id is not None else UNKNOWN_LABEL,
            }
            for face, track_id in zip(faces, ids, strict=True)
        ],
    }
