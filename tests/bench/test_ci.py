"""The CI benchmark client (bench/ci.py) against a real server: end to end, errors, remote targets refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import ci
from bench.loadgen import NotLoopback
from bench.server import free_port


def test_ci_client_end_to_end(live_server: str, tmp_path: Path, scene_samples: list) -> None:
    history = tmp_path / "history.jsonl"
    args = ["--url", live_server, "--runs", "5", "--pipeline-runs", "2", "--scene-limit", "2"]
    rc = ci.main([*args, "--http-runs", "5", "--history", str(history)])
    records = [json.loads(line) for line in history.read_text().splitlines()]
    assert len(records) == 1
    record = records[0]
    assert record["error"] is None, record["error"]
    # rc 1 would mean a ratio really failed on this machine: the record says which
    assert rc == (0 if record["ok"] else 1), record["ratio_failures"]
    assert record["commit"] and len(record["commit"]) == 40
    assert record["machine"]["nproc"] >= 1
    numbers = record["numbers"]
    assert numbers["int8.t1.classifier_batch1_per_face_p50_ms"] > 0
    assert numbers["int8.http_ratio_p50"] > 0


def test_ci_client_reports_errors(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    rc = ci.main(["--url", f"http://127.0.0.1:{free_port()}", "--history", str(history), "--timeout", "5"])
    assert rc == 2
    record = json.loads(history.read_text())
    assert record["ok"] is False and "ConnectError" in record["error"]


def test_ci_client_refuses_remote_service() -> None:
    with pytest.raises(NotLoopback):
        ci.main(["--url", "http://192.0.2.10:8000", "--history", ""])
