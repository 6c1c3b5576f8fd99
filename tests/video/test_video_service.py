"""POST /v1/video against a real server, through the Python client (masklite.client): uploads in every
container, a real RTSP stream on loopback, progress, cancel, artifacts, and the URL policy."""

from __future__ import annotations

import functools
import http.server
import json
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.clips import encode, score_tracks
from bench.rtsp import RtspServer
from masklite.client import Client, JobFailed, MaskliteError
from tests.conftest import REPO_ROOT, ServerFactory, ServerHandle, free_port
from tests.video.conftest import Clips

JOB_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def video_server(server_factory: ServerFactory) -> ServerHandle:
    # stream URLs on, for loopback only: the RTSP server below
    return server_factory.start({"MASKLITE_STREAM_URLS": "127.0.0.1", "MASKLITE_MAX_JOBS": "1"})


@pytest.fixture
def ml(video_server: ServerHandle) -> Iterator[Client]:
    with Client(video_server.url, timeout_s=60) as client:
        yield client


def test_upload_job_reports_people_progress_and_frames(ml: Client, clips: Clips) -> None:
    seen: list[float] = []
    job = ml.wait(
        ml.video(clips.files["mp4"]), timeout_s=JOB_TIMEOUT_S, on_progress=lambda j: seen.append(j.progress)
    )
    assert job.kind == "video" and job.state == "done" and job.progress == 1.0
    assert seen == sorted(seen), "progress never goes back"
    summary, people = job.result["summary"], job.result["people"]
    assert summary["frames_read"] == summary["frames_analysed"] == len(clips.clip.frames)
    assert summary["fps_processed"] > 0 and summary["people_total"] == len(people)
    assert set(summary["people"]) == {"with_mask", "without_mask", "unknown"}
    assert all(set(p) == {"id", "label", "votes", "first_s", "last_s"} for p in people)
    # no frame is kept without blur: only the numbers
    assert set(job.artifacts) == {"frames.jsonl"}
    lines = [json.loads(line) for line in ml.artifact(job, "frames.jsonl").decode().splitlines()]
    assert len(lines) == len(clips.clip.frames)
    score = score_tracks(clips.clip.truth, lines, people)
    assert score.found >= score.true_people - 1, score
    upload = job.raw["params"]["upload"]
    assert (upload["container"], upload["codec"], upload["frames"]) == ("mov", "h264", len(clips.clip.frames))


def test_blur_job_writes_an_h264_mp4(ml: Client, clips: Clips, tmp_path: Path) -> None:
    job = ml.wait(ml.video(clips.files["webm"], stride=2, blur=True), timeout_s=JOB_TIMEOUT_S)
    assert set(job.artifacts) == {"frames.jsonl", "annotated.mp4"}
    assert job.result["summary"]["video_codec"] == "h264"
    assert job.result["summary"]["frames_analysed"] == -(-len(clips.clip.frames) // 2)
    out = tmp_path / "annotated.mp4"
    out.write_bytes(ml.artifact(job, "annotated.mp4"))
    entries = "stream=codec_name,width,height"
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", entries, "-of", "csv=p=0", str(out)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert probe.stdout.strip() == "h264,640,480"


def test_other_containers_are_accepted(ml: Client, clips: Clips, tmp_path: Path) -> None:
    job = ml.wait(ml.video(clips.files["avi"], stride=4), timeout_s=JOB_TIMEOUT_S)
    assert job.result["summary"]["frames_read"] == len(clips.clip.frames)
    # the whole clip as a GIF is larger than the default 10 MB body limit: 1.5 s of it
    gif = encode(clips.clip.frames[:15], tmp_path / "short.gif", clips.fps)
    job = ml.wait(ml.video(gif, stride=4), timeout_s=JOB_TIMEOUT_S)
    assert job.result["summary"]["frames_read"] == 15 and job.raw["params"]["upload"]["container"] == "gif"


def test_rtsp_stream_job_reads_a_real_rtsp_server(ml: Client, clips: Clips) -> None:
    with RtspServer(clips.files["mp4"], fps=clips.fps) as rtsp:
        job = ml.wait(ml.video(url=rtsp.url, duration_s=4, stride=2), timeout_s=JOB_TIMEOUT_S)
    summary = job.result["summary"]
    # a live source: read at its own rate for the 4 s asked, a frame every 0.1 s (+ the few buffered
    # while the stream opened)
    assert 30 <= summary["frames_read"] <= 55, summary
    # a slower consumer (a niced job process on a busy machine) drops frames instead of falling behind
    assert summary["frames_analysed"] >= 3 and summary["people_total"] >= 1
    consumed = summary["frames_read"] - summary["frames_dropped"]
    assert consumed >= summary["frames_analysed"] and -(-consumed // 2) == summary["frames_analysed"]
    assert job.raw["params"]["stream"] == {"host": "127.0.0.1", "port": rtsp.port, "duration_s": 4.0}
    assert "url" not in job.raw["params"]  # the URL itself is not shown back


def test_a_running_stream_job_can_be_cancelled(ml: Client, clips: Clips) -> None:
    with RtspServer(clips.files["mp4"], fps=clips.fps) as rtsp:
        job = ml.video(url=rtsp.url, duration_s=120)
        for _ in range(120):
            if ml.job(job).state == "running":
                break
            ml.sleep(0.5)
        ml.cancel(job)
        with pytest.raises(JobFailed) as err:
            ml.wait(job, timeout_s=60)
    assert err.value.code == "job_cancelled"


def test_stream_url_policy(ml: Client, clips: Clips) -> None:
    cases = {
        "file:///etc/passwd": (422, "invalid_url"),
        "/etc/passwd": (422, "invalid_url"),
        "ftp://127.0.0.1/x": (422, "invalid_url"),
        "rtsp://example.com/stream": (403, "stream_not_allowed"),
        "http://localhost:8000/": (403, "stream_not_allowed"),  # the allow-list is of names as written
        f"rtsp://127.0.0.1:{free_port()}/refused": (422, "stream_unreachable"),
    }
    for url, (status, code) in cases.items():
        with pytest.raises(MaskliteError) as err:
            ml.video(url=url, duration_s=2)
        assert (err.value.status, err.value.code) == (status, code), url
    with pytest.raises(MaskliteError) as err:
        ml.video(url="rtsp://127.0.0.1:1/x")  # no duration
    assert err.value.status == 422


def test_stream_urls_are_off_by_default(live_server: str) -> None:
    with Client(live_server) as ml, pytest.raises(MaskliteError) as err:
        ml.video(url="rtsp://127.0.0.1/stream", duration_s=2)
    assert (err.value.status, err.value.code) == (403, "stream_urls_disabled")


PROBE_WITHOUT_EXTRA = """
import sys
sys.modules["supervision"] = None  # as on the lean serving install: no extra `video`
from fastapi.testclient import TestClient
from service.app import create_app
from service.settings import Settings
with TestClient(create_app(Settings(stream_urls=["127.0.0.1"], jobs_dir=sys.argv[1]))) as client:
    r = client.post("/v1/video", json={"url": "rtsp://127.0.0.1:1/x", "duration_s": 2})
    print(r.status_code, r.json()["error"]["code"], r.headers.get("retry-after"))
"""


def test_without_the_video_extra_the_route_says_so(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE_WITHOUT_EXTRA, str(tmp_path / "jobs")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.stdout.split() == ["503", "video_unavailable", "60"], done.stdout + done.stderr[-2000:]


@pytest.fixture
def http_files(clips: Clips, tmp_path: Path) -> Iterator[str]:
    """A plain HTTP server on loopback serving the mp4 clip, and an HLS playlist that points at a local
    file (file://): what a hostile allowed host could send."""
    (tmp_path / "clip.mp4").write_bytes(clips.files["mp4"].read_bytes())
    (tmp_path / "evil.m3u8").write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile://{clips.files['avi']}\n#EXT-X-ENDLIST\n"
    )
    handler = functools.partial(QuietHandler, directory=str(tmp_path))
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_http_stream_is_read_but_never_a_local_file_it_names(
    ml: Client, clips: Clips, http_files: str
) -> None:
    job = ml.wait(ml.video(url=f"{http_files}/clip.mp4", duration_s=30, stride=4), timeout_s=JOB_TIMEOUT_S)
    assert job.result["summary"]["frames_read"] == len(clips.clip.frames)
    with pytest.raises(JobFailed) as err:
        ml.wait(ml.video(url=f"{http_files}/evil.m3u8", duration_s=5), timeout_s=JOB_TIMEOUT_S)
    assert err.value.code == "job_failed" and "cannot connect" in err.value.message
