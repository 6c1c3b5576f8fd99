"""The CI benchmark client (bench/ci.py) against a real server: end to end, errors, remote targets refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import ci
from bench.loadgen import NotLoopback
from bench.server import free_port


def test_ci_client_end_to_end(
    live_server: str, tmp_path: Path, scene_samples: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real benchmark job, then the ratio verdict on its numbers decides the exit code. Whether the ratios
    hold on this (shared, loaded) machine is not what is tested here: their arithmetic is pinned on synthetic
    records in test_runner.py. So the verdict is always judged (no noise skip) and one failure is added to
    the real ones: the run must exit 1 and record exactly those failures."""
    real: list[str] = []
    forced = "forced: a failed ratio must fail the CI run"
    ratio_failures = ci.ci_ratio_failures

    def judged(result: dict) -> list[str]:
        real.extend(ratio_failures(result))
        return [*real, forced]

    monkeypatch.setattr(ci, "ci_noise_reason", lambda result: None)
    monkeypatch.setattr(ci, "ci_ratio_failures", judged)
    history = tmp_path / "history.jsonl"
    args = ["--url", live_server, "--runs", "5", "--pipeline-runs", "2", "--scene-limit", "2"]
    quiet = ["--quiet-wait", "0", "--quiet-load", "1000"]  # no wait for a quiet machine
    rc = ci.main([*args, *quiet, "--http-runs", "5", "--history", str(history)])
    records = [json.loads(line) for line in history.read_text().splitlines()]
    assert len(records) == 1
    record = records[0]
    assert record["error"] is None, record["error"]
    assert rc == 1
    assert record["ratio_failures"] == [*real, forced] and record["ok"] is False
    assert record["ratio_verdict_skipped"] is None
    assert record["commit"] and len(record["commit"]) == 40
    assert record["machine"]["nproc"] >= 1
    numbers = record["numbers"]
    assert numbers["int8.t1.classifier_batch1_per_face_p50_ms"] > 0
    assert numbers["int8.http_ratio_p50"] > 0


def test_ci_client_reports_errors(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens; and no wait for a quiet machine (180 s)
    rc = ci.main(["--url", url, "--history", str(history), "--timeout", "5", "--quiet-wait", "0"])
    assert rc == 2
    record = json.loads(history.read_text())
    assert record["ok"] is False and "ConnectError" in record["error"]


def test_ci_client_refuses_remote_service() -> None:
    with pytest.raises(NotLoopback):
        ci.main(["--url", "http://192.0.2.10:8000", "--history", ""])
