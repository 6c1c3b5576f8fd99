"""`python -m service check`: passes on the shipped models and detector, fails clearly on a damaged file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT, flip_middle_byte


def run_check(**env: str) -> subprocess.CompletedProcess:
    # the shipped detector, as a user's first run has it, unless `env` names another
    full = {k: v for k, v in os.environ.items() if k != "MASKLITE_DETECTOR_PATH"}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "service", "check"],
        cwd=REPO_ROOT, env=full, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def damaged_copy(models_dir: Path, tmp_path: Path, file_of: str) -> Path:
    """A copy of models/ with one byte flipped in the card's `file_of` file ("int8" or "detector")."""
    copy = tmp_path / "models"
    shutil.copytree(models_dir, copy)
    card = json.loads((copy / "model_card.json").read_text())
    name = card["detector"]["file"] if file_of == "detector" else card["models"][file_of]["file"]
    flip_middle_byte(copy / name)
    return copy


def test_check_passes_on_the_shipped_models(models_dir: Path) -> None:
    result = run_check(MASKLITE_MODELS_DIR=str(models_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "check passed" in out and "FAIL" not in out
    card = json.loads((models_dir / "model_card.json").read_text())
    for precision in card["models"]:
        assert f"ok    model {precision}" in out and f"ok    classify {precision}" in out
    assert "matches the card" in out.split("detector", 1)[1]
    # the bundled sample: two faces, one bare, one with a drawn mask, both labelled right
    assert "2 faces in" in out, out
    classify = [line for line in out.splitlines() if "classify int8" in line][0]
    assert "without_mask" in classify and "with_mask (" in classify, classify
    assert " ms" in out.split("ok    detect", 1)[1].splitlines()[0]  # each stage says how long it took


def test_check_fails_clearly_on_a_damaged_model(models_dir: Path, tmp_path: Path) -> None:
    result = run_check(MASKLITE_MODELS_DIR=str(damaged_copy(models_dir, tmp_path, "int8")))
    assert result.returncode == 1, result.stdout + result.stderr
    fail = [line for line in result.stdout.splitlines() if "FAIL" in line]
    assert fail and "model int8" in fail[0] and "sha256" in fail[0], result.stdout
    assert "check FAILED" in result.stdout and "check passed" not in result.stdout


def test_check_fails_clearly_on_a_damaged_detector(models_dir: Path, tmp_path: Path) -> None:
    result = run_check(MASKLITE_MODELS_DIR=str(damaged_copy(models_dir, tmp_path, "detector")))
    assert result.returncode == 1, result.stdout + result.stderr
    fail = [line for line in result.stdout.splitlines() if "FAIL" in line]
    assert fail and "detector" in fail[0] and "sha256" in fail[0], result.stdout


def test_check_fails_on_a_missing_detector_override(tmp_path: Path) -> None:
    result = run_check(MASKLITE_DETECTOR_PATH=str(tmp_path / "absent.onnx"))
    assert result.returncode == 1
    assert "absent.onnx" in result.stdout and "FAIL" in result.stdout
