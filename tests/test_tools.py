"""tools/: the scripts that are run by hand (or by make) still run, and say what they promise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT


def run_tool(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}  # the tools' own pytest runs are not CI runs
    return subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_request_path_counts_the_files_of_one_predict() -> None:
    """ARCHITECTURE.md's budget: at most 8 project files run for one POST /v1/predict."""
    out = run_tool("tools/request_path.py", "models/samples/astronaut_pair.jpg")
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.split()
    count, files = int(lines[0]), lines[1:]
    assert count == len(files) and 0 < count <= 8, out.stdout
    assert all((REPO_ROOT / f).is_file() for f in files), files
    assert {f.split("/")[0] for f in files} == {"masklite", "service"}, files  # the core and the service only


def test_reliability_report_renders_what_ran(tmp_path: Path) -> None:
    """`make reliability`'s script on one cheap test of its selection: the report and the JSON rows."""
    test = "test_bad_client_request_id_is_replaced"
    out_md, out_json = tmp_path / "RELIABILITY.md", tmp_path / "rows.json"
    args = ["--profile", "ci", "--out", str(out_md), "--json", str(out_json), "--", "-k", test]
    result = run_tool("tools/reliability_report.py", *args)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    rows = json.loads(out_json.read_text())
    assert list(rows) == [f"tests/service/test_service_errors.py::{test}"], rows
    row = rows[f"tests/service/test_service_errors.py::{test}"]
    assert row["area"] == "1. Bad input" and row["outcomes"] == {"passed": 1} and row["cases"] == 1, row
    report = out_md.read_text()
    assert test in report and "1 passed" in report and "profile" in report.lower(), report[:2000]


def test_scripts_answer_help() -> None:
    """The ones that need Docker or a converter venv: their command line at least parses."""
    for script in ("tools/scale_throughput.py", "tools/reliability_report.py", "tools/request_path.py"):
        result = run_tool(script, "--help", timeout=120)
        assert result.returncode == 0 and "usage:" in result.stdout, (script, result.stderr[-2000:])
