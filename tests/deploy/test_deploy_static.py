"""Static checks of the deployment files, no Docker engine needed: hadolint, compose config, build context."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, skip_or_fail

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if path is None:
        skip_or_fail(f"{name} not installed (pip install -e '.[dev]')")
    return str(path)


def test_hadolint_dockerfile() -> None:
    cmd = [tool("hadolint"), "--no-color", "Dockerfile"]
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_config_is_valid() -> None:
    compose = tool("docker-compose")
    for profile in ([], ["--profile", "train"]):
        result = subprocess.run(
            [compose, "-f", "docker-compose.yml", *profile, "config", "-q"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stderr


def test_compose_api_service_settings() -> None:
    import json

    result = subprocess.run(
        [tool("docker-compose"), "-f", "docker-compose.yml", "config", "--format", "json"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True,
    )
    api = json.loads(result.stdout)["services"]["api"]
    assert api["build"]["target"] == "runtime"
    assert api["healthcheck"]["test"][0] == "CMD" and "/health/ready" in " ".join(api["healthcheck"]["test"])
    assert api["restart"] in ("unless-stopped", "always", "on-failure")
    assert api["deploy"]["resources"]["limits"]["memory"] and api["deploy"]["resources"]["limits"]["cpus"]
    jobs_dir = api["environment"]["MASKLITE_JOBS_DIR"]
    assert any(v["target"] == jobs_dir and v["type"] == "volume" for v in api["volumes"])
    assert api["ports"][0]["target"] == 8000


def test_dockerfile_runtime_is_default_and_lean() -> None:
    text = (REPO_ROOT / "Dockerfile").read_text()
    stages = [line.split()[-1] for line in text.splitlines() if line.startswith("FROM ")]
    assert stages[-1] == "runtime", "the runtime stage must be last: it is the default target"
    assert "train" in stages
    runtime = text[text.rindex("FROM base AS runtime") :]
    assert "tensorflow" not in runtime.lower() and "train-deps" not in runtime
    assert "\nUSER 10001" in runtime and "HEALTHCHECK" in runtime and "/health/ready" in runtime


def test_build_context_is_small() -> None:
    """.dockerignore keeps .venv, work, data, .git and tests out of the context."""
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    ignore = [line for line in lines if line and line[0] != "#"]
    assert ignore[0] == "*", "allow-list: ignore everything first"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert {"masklite", "service", "models", "pyproject.toml", "docker"} <= allowed
    assert not allowed & {".venv", "work", "data", ".git", "tests"}


def test_requirements_from_pyproject() -> None:
    sys.path.insert(0, str(REPO_ROOT / "docker"))
    try:
        from requirements import requirement_name, requirements
    finally:
        sys.path.pop(0)
    runtime = {requirement_name(r) for r in requirements(REPO_ROOT / "pyproject.toml", [])}
    assert {"fastapi", "uvicorn", "ai-edge-litert", "opencv-python-headless", "numpy"} <= runtime
    assert not any("tensorflow" in n for n in runtime)
    train = {requirement_name(r) for r in requirements(REPO_ROOT / "pyproject.toml", ["train"])}
    assert "tensorflow-cpu" in train


def test_detector_fetch_prefers_the_build_context(tmp_path: Path) -> None:
    """The air-gapped path: a local copy is used and checked; a wrong file fails the build."""
    detector = os.environ.get("MASKLITE_DETECTOR_PATH")
    if not detector:
        pytest.skip("MASKLITE_DETECTOR_PATH is unset")
    assets = tmp_path / "assets"
    assets.mkdir()
    local = assets / "face_detection_yunet_2023mar.onnx"
    shutil.copy(detector, local)

    def fetch(dest: str) -> subprocess.CompletedProcess:
        # the URL is unreachable on purpose: only the local copy can succeed
        cmd = [sys.executable, str(REPO_ROOT / "docker" / "fetch_detector.py"), "--assets", str(assets),
               "--dest", str(tmp_path / dest), "--url", "http://127.0.0.1:9/none", "--timeout", "5"]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    ok = fetch("out.onnx")
    assert ok.returncode == 0, ok.stderr
    assert "build context" in ok.stdout
    assert (tmp_path / "out.onnx").read_bytes() == Path(detector).read_bytes()

    local.write_bytes(b"not a model")
    bad = fetch("bad.onnx")
    assert bad.returncode != 0 and "sha256" in bad.stderr
    assert not (tmp_path / "bad.onnx").exists()

    local.unlink()
    offline = fetch("none.onnx")
    assert offline.returncode != 0 and "docker/assets/" in offline.stderr  # says how to build offline
