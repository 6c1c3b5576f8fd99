"""The `video` job kind: an uploaded video or an allowed stream URL -> people over time (masklite/video.py).

    video_params(spec, card, settings, parts)   the route's checks -> (job params, public params); 4xx
    video_job(params, progress, out_dir)        in the job process: result {summary, people}, artifacts
                                                frames.jsonl and, with blur=true, annotated.mp4

Privacy: the server keeps no picture of a face. Without `blur` no frame is written at all (only the
numbers); with `blur=true` the annotated video has every analysed face pixelated.

Request forgery: a caller URL is read only when MASKLITE_STREAM_URLS lists its host (empty, the default:
no URL at all), only with rtsp, rtsps, http or https, never a file:// URL or a local path; what FFmpeg
then opens for it is limited to network protocols (STREAM_PROTOCOLS: an HLS playlist naming file:// is
refused). An allowed HTTP host can still redirect FFmpeg to another host: list only hosts you trust.
The route connects to the host's port once (3 s), so an unreachable or refused stream is a 422 at once
rather than a failed job later.
"""

from __future__ import annotations

import importlib.util
import io
import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from masklite.card import ModelCard
from masklite.paths import ENV_DETECTOR_PATH, env_path
from masklite.video import (
    STREAM_PROTOCOLS,
    AnnotatedWriter,
    VideoError,
    VideoOptions,
    analyse_video,
    load_models,
    open_source,
    probe,
)
from service.bodies import Part
from service.errors import ApiError
from service.settings import Settings

FRAMES_FILE, VIDEO_FILE = "frames.jsonl", "annotated.mp4"
STREAM_SCHEMES = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}  # scheme -> default port
# what PyAV calls the containers we take: mp4/mov, webm/mkv, avi, gif
CONTAINERS = {"mov,mp4,m4a,3gp,3g2,mj2": ".mp4", "matroska,webm": ".mkv", "avi": ".avi", "gif": ".gif"}
ACCEPTED = "mp4, webm, mov, avi, mkv or gif"
CONNECT_TIMEOUT_S = 3.0


class VideoRequest(BaseModel):
    """What to analyse and how. An upload goes in the multipart part `file`; a stream is `url`."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, max_length=2048, description="rtsp/rtsps/http/https stream (allowed hosts)")
    duration_s: float | None = Field(None, gt=0, description="seconds of the stream to read (URL only)")
    stride: int = Field(1, ge=1, le=100, description="analyse every Nth frame")
    blur: bool = Field(False, description="write annotated.mp4 with every face pixelated")
    precision: str = Field("int8", pattern=r"^[A-Za-z0-9_]{1,32}$", description="a model from /v1/models")
    min_votes: int = Field(3, ge=1, le=100, description="judged frames before a person gets a label")


def video_unavailable(reason: str) -> ApiError:
    return ApiError(
        503, "video_unavailable", f"video support is not installed here ({reason})", {"Retry-After": "60"}
    )


def require_video_extra() -> None:
    """The tracker (supervision) and PyAV come with the extra `video`; without them no job is queued."""
    missing = [name for name in ("supervision", "av") if importlib.util.find_spec(name) is None]
    if missing:
        raise video_unavailable(f"missing {', '.join(missing)}: pip install 'masklite[video]'")


def check_stream_url(url: str, allowed_hosts: list[str]) -> tuple[str, int]:
    """(host, port) of an allowed stream URL; 403 when URLs are off or the host is not listed, 422 for
    any other scheme (file://, a local path, ...) or a URL without a host."""
    if not allowed_hosts:
        raise ApiError(
            403, "stream_urls_disabled", "stream URLs are off on this service (MASKLITE_STREAM_URLS)"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ApiError(422, "invalid_url", f"url: not a valid URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme not in STREAM_SCHEMES:
        shown = scheme or "none (a local path?)"
        raise ApiError(
            422, "invalid_url", f"url: scheme {shown!r} not allowed; use rtsp, rtsps, http or https"
        )
    host = (parts.hostname or "").lower()
    if not host:
        raise ApiError(422, "invalid_url", "url: no host")
    port = port or STREAM_SCHEMES[scheme]
    allowed = {h.strip().lower() for h in allowed_hosts}
    if host not in allowed and f"{host}:{port}" not in allowed:
        raise ApiError(403, "stream_not_allowed", f"url: host {host[:100]!r} is not in MASKLITE_STREAM_URLS")
    return host, port


def check_reachable(host: str, port: int) -> None:
    """One TCP connection to the stream's port: refused or unreachable -> 422 now, not a failed job."""
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = "refused" if isinstance(exc, ConnectionRefusedError) else "unreachable"
        raise ApiError(
            422, "stream_unreachable", f"url: the stream's host is {reason} ({host}:{port})"
        ) from exc


def _video_error(exc: VideoError) -> ApiError:
    if exc.code == "too_long":
        return ApiError(422, "video_too_long", f"file: {exc}")
    return ApiError(422, "invalid_video", f"file: {exc}")


def looks_like_video(data: bytes) -> bool:
    """The first bytes of an accepted container: MP4/MOV, Matroska/WebM, AVI, GIF."""
    return (
        data[4:8] == b"ftyp"
        or data[:4] == b"\x1a\x45\xdf\xa3"
        or (data[:4] == b"RIFF" and data[8:12] == b"AVI ")
        or data[:6] in (b"GIF87a", b"GIF89a")
    )


def check_upload(data: bytes, max_s: float) -> tuple[str, dict[str, Any]]:
    """The uploaded bytes demuxed once (no decoding): (file suffix, facts); 415 for anything that is not one
    of the accepted containers, 422 for a cut, empty or too long one."""
    import av  # the `video` extra, like the tracker

    try:
        with av.open(io.BytesIO(data), metadata_errors="ignore") as container:
            format_name = container.format.name
    except av.error.FFmpegError as exc:
        if looks_like_video(data):  # the right magic bytes, then nothing readable: damaged, not foreign
            raise ApiError(422, "invalid_video", "file: the video is cut short or corrupt") from exc
        raise ApiError(415, "unsupported_media_type", f"file: not a video ({ACCEPTED})") from exc
    suffix = CONTAINERS.get(format_name)
    if suffix is None:
        raise ApiError(415, "unsupported_media_type", f"file: {format_name.split(',')[0]} is not {ACCEPTED}")
    try:
        info = probe(io.BytesIO(data), max_duration_s=max_s)
    except VideoError as exc:
        raise _video_error(exc) from exc
    facts = {
        "container": format_name.split(",")[0],
        "codec": info.codec,
        "width": info.width,
        "height": info.height,
        "frames": info.frames,
        "duration_s": round(info.duration_s, 3),
    }
    return suffix, facts


def video_params(
    spec: VideoRequest, card: ModelCard, settings: Settings, parts: dict[str, list[Part]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Blocking (run it on a thread): an upload demuxed, or a URL checked and its host reached ->
    (the job's parameters, what GET /v1/jobs shows of them)."""
    require_video_extra()
    if spec.precision not in card.models:
        raise ApiError(
            422, "invalid_parameters", f"precision: {spec.precision!r} is not one of {', '.join(card.models)}"
        )
    upload = parts["file"][0] if "file" in parts else None
    if (upload is None) == (spec.url is None):
        raise ApiError(422, "invalid_parameters", "send a video as the multipart part 'file', or a 'url'")
    public: dict[str, Any] = spec.model_dump(exclude={"url"})
    params: dict[str, Any] = {
        **spec.model_dump(),
        "models_dir": str(settings.models_dir),
        "detector_path": str(settings.detector_path) if settings.detector_path else None,
        "detector_runtime": settings.detector_runtime,  # None: the card's
        "max_s": settings.video_max_s,
    }
    try:
        if upload is not None:
            if spec.duration_s is not None:
                raise ApiError(422, "invalid_parameters", "duration_s: only for a url")
            if not upload.data:
                raise ApiError(422, "invalid_video", "file: the upload is empty (0 bytes)")
            suffix, facts = check_upload(upload.data, settings.video_max_s)
            params.update(data=upload.data, suffix=suffix)
            public["upload"] = {"name": upload.filename[:100], "bytes": len(upload.data), **facts}
        else:
            assert spec.url is not None
            host, port = check_stream_url(spec.url, settings.stream_urls)
            if spec.duration_s is None or spec.duration_s > settings.video_max_s:
                raise ApiError(
                    422,
                    "invalid_parameters",
                    f"duration_s: required for a url, at most {settings.video_max_s:g}",
                )
            check_reachable(host, port)
            public["stream"] = {"host": host, "port": port, "duration_s": spec.duration_s}
    except ImportError as exc:
        raise video_unavailable(str(exc)) from exc
    return params, public


# ---------------------------------------------------------------- the job process


def video_job(params: dict[str, Any], progress: Any, out_dir: Path) -> dict[str, Any]:
    """The video kind's entry point, in the job worker process."""
    out_dir.mkdir(parents=True, exist_ok=True)
    detector = params.get("detector_path")
    models = load_models(
        Path(params["models_dir"]),
        params["precision"],
        Path(detector) if detector else env_path(ENV_DETECTOR_PATH),
        runtime=params.get("detector_runtime"),
    )
    options = VideoOptions(
        stride=params["stride"],
        min_votes=params["min_votes"],
        duration_s=params["duration_s"] if params.get("url") else params["max_s"],
        blur=params["blur"],
    )
    source_path: Path | None = None
    if params.get("url"):
        spec: str = params["url"]
    else:
        source_path = out_dir / f".input{params['suffix']}"  # a dot name: never listed as an artifact
        source_path.write_bytes(params["data"])
        spec = str(source_path)
    try:
        protocols = STREAM_PROTOCOLS if params.get("url") else None
        with open_source(spec, protocols=protocols) as source, (out_dir / FRAMES_FILE).open("w") as lines:
            writer = (
                AnnotatedWriter(out_dir / VIDEO_FILE, source.fps, source.width, source.height)
                if params["blur"]
                else None
            )
            expected = source.frame_count or (params["duration_s"] or 0) * source.fps

            def tick(frames: int, _total: int | None) -> None:
                if expected and frames % 10 == 0:
                    progress(min(0.99, frames / expected), {"frames_read": frames})

            try:
                result = analyse_video(
                    source,
                    models,
                    options,
                    on_frame=lambda line: lines.write(json.dumps(line) + "\n"),
                    writer=writer,
                    progress=tick,
                )
            finally:
                if writer is not None:
                    writer.close()
    finally:
        if source_path is not None:
            source_path.unlink(missing_ok=True)
    return {"summary": result.summary, "people": result.people}
