"""`python -m robustness run | layers | report`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from masklite.evalset import EvalSet
from robustness.cli import main

REPO_ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )


# ------------------------------------------------------------------ the tiny models (fast, in process)


def test_layers(tiny_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["layers", "--models-dir", str(tiny_dir), "--precision", "int8"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].split()[:3] == ["0", "CONV_2D", "top_minus_bottom"] and "1 scale(s)" in lines[0]
    assert lines[1].split()[:3] == ["1", "FULLY_CONNECTED", "head"]


def test_run_writes_the_grid(
    tiny_dir: Path, tiny_evalset_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--models-dir", str(tiny_dir), "--evalset", str(tiny_evalset_path), "--precision",
            "float32", "--kinds", "add,noise", "--scalars", "0,1", "--noise-sigmas", "0.5", "--workers", "1",
            "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "float32: clean accuracy 1.0000 on 24 images; 6 cells in" in out
    assert "original conclusions: first layer most sensitive to addition: True" in out
    assert f"to {tmp_path}" in out
    assert len((tmp_path / "grid.csv").read_text().splitlines()) == 1 + 2 * 3


@pytest.mark.parametrize(
    "args,message",
    [
        (["--layers", "no_such_layer"], "unknown layer 'no_such_layer'"),
        (["--precision", "micro"], "unknown precision 'micro'"),
        (["--evalset", "/nonexistent/evalset.zip"], "no evaluation set at /nonexistent/evalset.zip"),
    ],
)
def test_user_errors_exit_2(
    tiny_dir: Path, tiny_evalset_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "run",
        "--models-dir",
        str(tiny_dir),
        "--evalset",
        str(tiny_evalset_path),
        "--workers",
        "1",
        *args,
    ]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_runs_as_a_module(tiny_dir: Path) -> None:
    proc = _run("robustness", "layers", "--models-dir", str(tiny_dir))
    assert proc.returncode == 0, proc.stderr
    assert "top_minus_bottom" in proc.stdout


# ------------------------------------------------------------------ the shipped models (slow)


def test_cli_run_with_a_process_pool(models_dir: Path, evalset: EvalSet, tmp_path: Path) -> None:
    args = ["run", "--models-dir", str(models_dir), "--layers", "0,-1", "--kinds", "multiply", "--scalars",
            "0,1", "--max-images", "20", "--workers", "2", "--out", str(tmp_path)]  # fmt: skip
    proc = _run("robustness", *args, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 cells in" in proc.stdout and "CPU time" in proc.stdout
    assert (tmp_path / "heatmap.png").is_file() and (tmp_path / "grid.csv").is_file()


def test_cli_rejects_unknown_layers(models_dir: Path) -> None:
    proc = _run("robustness", "run", "--models-dir", str(models_dir), "--layers", "no_such_layer",
                "--max-images", "4", "--workers", "1")  # fmt: skip
    assert proc.returncode == 2 and "unknown layer 'no_such_layer'" in proc.stderr
