"""Bad-video corpus for POST /v1/video against a REAL server: every case gets its documented 4xx envelope,
nothing is queued, and the server stays ready with bounded memory after each one.

Generated here from one 4 s clip (bench/clips.py) and hand-made bytes; nothing is stored. The server has
small limits (1 MB, 3 s) so the size and length cases stay small too.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bench.clips import encode, ffmpeg_available, plan_shots, render_clip
from tests.conftest import ServerFactory, ServerHandle, free_port, skip_or_fail
from tests.hardening.hardening_support import assert_envelope, rss_mb, wait_healthy

RSS_GROWTH_PER_CASE_MB = 150
MAX_BYTES, MAX_S = 1_000_000, 3


@dataclass(frozen=True)
class Case:
    name: str
    send: Callable[[httpx.Client, dict[str, bytes]], httpx.Response]
    status: int
    code: str


def upload(name: str, data_key: str) -> Callable[[httpx.Client, dict[str, bytes]], httpx.Response]:
    return lambda http, data: http.post("/v1/video", files={"file": (name, data[data_key])})


def url(value: str) -> Callable[[httpx.Client, dict[str, bytes]], httpx.Response]:
    return lambda http, _: http.post("/v1/video", json={"url": value, "duration_s": 2})


def no_frames() -> bytes:
    """An MP4 with a video stream and not one frame in it."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    return buf.getvalue()


CORPUS = [
    Case("text named .mp4", upload("notes.mp4", "text"), 415, "unsupported_media_type"),
    Case("a JPEG photo", upload("photo.jpg", "jpeg"), 415, "unsupported_media_type"),
    Case("a zip archive", upload("clip.zip", "zip"), 415, "unsupported_media_type"),
    Case("empty upload", upload("empty.mp4", "empty"), 422, "invalid_video"),
    Case("mp4 cut after a third", upload("cut.mp4", "cut_mp4"), 422, "invalid_video"),
    Case("webm header only", upload("head.webm", "head_webm"), 422, "invalid_video"),
    Case("zero frames", upload("none.mp4", "no_frames"), 422, "invalid_video"),
    Case("too long", upload("long.mp4", "mp4"), 422, "video_too_long"),
    Case("too large", upload("big.avi", "big_avi"), 413, "payload_too_large"),
    Case(
        "both file and url",
        lambda h, d: h.post(
            "/v1/video",
            files={"file": ("a.mp4", d["mp4"]), "params": (None, '{"url": "rtsp://127.0.0.1/x"}')},
        ),
        422,
        "invalid_parameters",
    ),  # fmt: skip
    Case("file:// URL", url("file:///etc/passwd"), 422, "invalid_url"),
    Case("local path", url("/etc/passwd"), 422, "invalid_url"),
    Case("gopher scheme", url("gopher://127.0.0.1:70/x"), 422, "invalid_url"),
    Case("host not allowed", url("rtsp://10.1.2.3/stream"), 403, "stream_not_allowed"),
    Case("refused port", url(f"rtsp://127.0.0.1:{free_port()}/x"), 422, "stream_unreachable"),
    # TEST-NET-1 (RFC 5737): allowed by the server's list, routed nowhere
    Case("unreachable host", url("rtsp://192.0.2.1/stream"), 422, "stream_unreachable"),
    Case(
        "no duration for a url",
        lambda h, _: h.post("/v1/video", json={"url": "rtsp://127.0.0.1/x"}),
        422,
        "invalid_parameters",
    ),  # fmt: skip
]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    if not ffmpeg_available():
        skip_or_fail("ffmpeg is not on PATH")
    scenes = Path(os.environ.get("MASKLITE_SCENES_DIR") or "")
    if not (scenes / "annotations").is_dir():
        skip_or_fail(f"no annotated scenes at {scenes} (MASKLITE_SCENES_DIR)")
    folder = tmp_path_factory.mktemp("bad-video")
    clip = render_clip(plan_shots(scenes, ["scene_02", "scene_07"]), fps=10, seconds_per_shot=2)
    mp4 = encode(clip.frames, folder / "clip.mp4", 10).read_bytes()  # 4 s: longer than MAX_S
    avi = encode(clip.frames, folder / "clip.avi", 10).read_bytes()
    webm = encode(clip.frames[:5], folder / "clip.webm", 10).read_bytes()
    assert len(avi) > MAX_BYTES > len(mp4), "the MJPEG clip over the size limit, the H.264 one under it"
    jpeg = io.BytesIO()
    from PIL import Image

    Image.fromarray(clip.frames[0]).save(jpeg, "JPEG")
    return {
        "text": b"just some notes, not a video\n" * 40,
        "jpeg": jpeg.getvalue(),
        "zip": b"PK\x03\x04" + b"\x00" * 200,
        "empty": b"",
        "mp4": mp4,
        "cut_mp4": mp4[: len(mp4) // 3],
        "head_webm": webm[:300],
        "no_frames": no_frames(),
        "big_avi": avi,
    }


@pytest.fixture(scope="module")
def server(server_factory: ServerFactory) -> ServerHandle:
    return server_factory.start({
        "MASKLITE_VIDEO_MAX_BYTES": str(MAX_BYTES),
        "MASKLITE_VIDEO_MAX_S": str(MAX_S),
        "MASKLITE_STREAM_URLS": "127.0.0.1,192.0.2.1",
    })  # fmt: skip


@pytest.fixture(scope="module")
def http(server: ServerHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_bad_video(case: Case, server: ServerHandle, http: httpx.Client, data: dict[str, bytes]) -> None:
    before = rss_mb(server.proc.pid)
    assert_envelope(case.send(http, data), case.status, case.code)
    wait_healthy(server.url)
    assert rss_mb(server.proc.pid) - before < RSS_GROWTH_PER_CASE_MB
    assert http.get("/v1/jobs", params={"kind": "video"}).json()["jobs"] == []  # nothing was queued
