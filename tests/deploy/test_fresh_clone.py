"""Out of the box: a fresh clone, `make serve`, ready with the shipped detector, boxes on a real scene.

Clones this repository's committed HEAD into a temp dir (no .venv, no ../shared beside it, no MASKLITE_*
asset variables), runs `make serve` on a free loopback port and waits for /health/ready: the venv is
created and filled there with the serving dependencies only. pip's cache (~/.cache/pip or
$PIP_CACHE_DIR) is shared, so CI does not download everything twice. Then a scenes-sample photo must
come back as several faces, the venv must hold no TensorFlow, and a second `make serve` must install
nothing. The measured times and the venv size are printed (and quoted in README.md).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO_ROOT, SceneSample, ServerHandle, free_port, skip_or_fail

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

INSTALL_TIMEOUT_S = 1200.0  # first run: a venv and ~250 MB of wheels (opencv, litert, numpy, ...)


def _du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def make_serve(clone: Path, env: dict[str, str], url: str, log: Path) -> ServerHandle:
    """`make serve` in its own process group (make and its `python -m service` child stop together)."""
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            ["make", "serve"], cwd=clone, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    return ServerHandle(url, proc, log, env)


def stop_group(handle: ServerHandle) -> None:
    if handle.alive():
        os.killpg(handle.proc.pid, signal.SIGTERM)
        try:
            handle.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(handle.proc.pid, signal.SIGKILL)
            handle.proc.wait(timeout=10)


def timed_ready(handle: ServerHandle, timeout: float) -> float:
    t0 = time.monotonic()
    handle.wait_for("/health/ready", timeout=timeout)
    return time.monotonic() - t0


def test_fresh_clone_make_serve_detects_faces(tmp_path: Path, scene_samples: list[SceneSample]) -> None:
    for tool in ("git", "make", "python3"):
        if shutil.which(tool) is None:
            skip_or_fail(f"{tool} is not installed")
    clone = tmp_path / "masklite"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], check=True, timeout=300)
    assert not (clone / ".venv").exists()
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MASKLITE_") and k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    }
    # the venv is made from the system python3, not from this test's venv
    bin_dirs = {
        str(Path(os.environ.get("VIRTUAL_ENV", "/nonexistent")) / "bin"),
        str(REPO_ROOT / ".venv" / "bin"),
    }
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p not in bin_dirs)
    env.update(MASKLITE_HOST="127.0.0.1", MASKLITE_PORT=str(port), MASKLITE_JOBS_DIR=str(tmp_path / "jobs"))
    url = f"http://127.0.0.1:{port}"
    scene = max(scene_samples, key=lambda s: len(s.faces))

    first = make_serve(clone, env, url, tmp_path / "first.log")
    try:
        first_s = timed_ready(first, INSTALL_TIMEOUT_S)
        ready = httpx.get(url + "/health/ready").json()
        assert ready["detector"]["available"] is True and ready["detector"]["sha256_ok"] is True, ready
        r = httpx.post(url + "/v1/predict", files={"file": (scene.path.name, scene.data)}, timeout=120)
        assert r.status_code == 200, r.text
        faces = r.json()["faces"]
        assert len(faces) > 1, f"{scene.name}: {len(scene.faces)} annotated faces, got {faces}"
        assert [0, 0, scene.width, scene.height] not in [f["box"] for f in faces]
        assert all(f["detector_score"] is not None for f in faces)
    finally:
        stop_group(first)
    assert "installing the serving dependencies" in first.logs()

    venv = clone / ".venv"
    probe = (
        "import importlib.util as u; print([m for m in ('tensorflow', 'keras', 'pytest') if u.find_spec(m)])"
    )
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert found.returncode == 0 and found.stdout.strip() == "[]", found.stdout + found.stderr
    venv_mb = _du_mb(venv)

    second = make_serve(clone, env, url, tmp_path / "second.log")
    try:
        second_s = timed_ready(second, 300)
    finally:
        stop_group(second)
    assert "installing" not in second.logs(), second.logs()
    print(
        f"\nfresh clone -> ready: {first_s:.0f} s; serving venv {venv_mb:.0f} MB (no TensorFlow); "
        f"second make serve -> ready: {second_s:.1f} s; {len(faces)} faces on {scene.name}"
    )
