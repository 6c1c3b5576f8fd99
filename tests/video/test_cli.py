"""The `masklite` command: predict, video and serve, in-process and with --server, as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx

from tests.conftest import REPO_ROOT, SceneSample, free_port
from tests.video.conftest import Clips

CLI = [sys.executable, "-m", "masklite.cli"]


def masklite(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def test_the_console_script_is_declared() -> None:
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"masklite": "masklite.cli:main"}


def test_predict_folder_and_files_in_process_and_through_a_server(
    scene_samples: list[SceneSample], tmp_path: Path, live_server: str
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for sample in scene_samples[:3]:
        (folder / sample.path.name).write_bytes(sample.data)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    for extra in ([], ["--server", live_server]):
        done = masklite("predict", str(folder), str(tmp_path / "broken.jpg"), *extra)
        assert done.returncode == 1, done.stderr  # one image failed
        lines = [json.loads(line) for line in done.stdout.splitlines()]
        assert [Path(line["path"]).name for line in lines] == [
            *sorted(s.path.name for s in scene_samples[:3]),
            "broken.jpg",
        ]
        assert "error" in lines[-1]
        for line, sample in zip(lines, sorted(scene_samples[:3], key=lambda s: s.path.name), strict=False):
            assert (line["image"]["width"], line["image"]["height"]) == (sample.width, sample.height)
            assert sum(line["summary"].values()) == len(line["faces"]) >= 1
            assert set(line["summary"]) <= {"with_mask", "without_mask", "unknown"}
            assert all(len(face["landmarks"]) == 5 for face in line["faces"])
    assert "img/s" in done.stderr or "it/s" in done.stderr or "%" in done.stderr  # tqdm on a folder


def test_video_in_process_writes_summary_lines_and_an_annotated_video(clips: Clips, tmp_path: Path) -> None:
    out, jsonl = tmp_path / "annotated.mp4", tmp_path / "frames.jsonl"
    done = masklite(
        "video", str(clips.files["mp4"]), "--out", str(out), "--jsonl", str(jsonl), "--stride", "2", "--blur"
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    n = len(clips.clip.frames)
    assert result["summary"]["frames_read"] == n and result["summary"]["frames_analysed"] == -(-n // 2)
    assert len(jsonl.read_text().splitlines()) == -(-n // 2)
    assert out.stat().st_size > 10_000 and result["summary"]["video_codec"] == "h264"
    assert "frame" in done.stderr  # the progress bar


def test_video_through_a_server(clips: Clips, tmp_path: Path, live_server: str) -> None:
    jsonl = tmp_path / "frames.jsonl"
    done = masklite("video", str(clips.files["webm"]), "--server", live_server, "--jsonl", str(jsonl), "-q")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["summary"]["frames_read"] == len(clips.clip.frames) == len(jsonl.read_text().splitlines())
    refused = masklite(
        "video", str(clips.files["webm"]), "--server", live_server, "--out", str(tmp_path / "x.mp4")
    )
    assert refused.returncode != 0 and "--blur" in refused.stderr


def test_serve_binds_loopback_by_default(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MASKLITE_HOST"}
    env["MASKLITE_JOBS_DIR"] = str(tmp_path / "jobs")
    log = tmp_path / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [*CLI, "serve", "--port", str(port)], cwd=REPO_ROOT, env=env, stdout=fh, stderr=fh
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        else:
            raise AssertionError(log.read_text()[-2000:])
        assert f"127.0.0.1:{port}" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
