"""The runtime image, built and run for real: engine up -> docker build -> compose up -> ready -> predict.

The engine comes from $MASKLITE_DOCKER_ENGINE (`up` / `env` / `down`; a private dockerd with a local
stand-in for python:3.11-slim, classic builder only). Without an engine the test is skipped with the
reason, except in CI (CI=true), where it must run. The build needs nothing but the repository (the
YuNet detector ships in models/) and the package index: no assets folder, no URL build-arg.

Asserts the runtime image is at most MAX_IMAGE_MB (`docker image inspect`); prints the build time, the
layers (`docker history`), and cold start to ready.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from masklite.card import load_card, verify_model_file
from masklite.classifier import Classifier
from masklite.faces import load_detector
from masklite.image import decode_image
from masklite.pipeline import Models, PredictOptions, predict_frame
from tests.conftest import SceneSample, free_port, iou
from tests.helpers.docker import IMAGE, Docker

pytestmark = [pytest.mark.docker, pytest.mark.timeout(2400)]

BASE_IMAGE = "python:3.11-slim"
PRECISION = "int8"
SCENES = ("scene_00", "scene_05", "scene_11", "scene_16")
READY_TIMEOUT_S = 120.0
# 506.9 MB measured (506,877,047 bytes, 2026-12-08) with the locked wheels (requirements/serve.txt), after
# #24 added the camera page's WebAssembly runtime (15 MB), the classifiers' ONNX twins and the TLS packages
# (cryptography, segno): the venv layer only changes with a re-lock; what still moves is the pruned base
# (127 MB: the python:3.11-slim stand-in and Debian's updates, a few MB) and models/ (a retrain). ~18 MB
# (3.5 %) of margin for those; a new dependency or a prune step that stopped working (numpy's tests,
# cv2/data) is more.
MAX_IMAGE_MB = 525


@pytest.fixture(scope="module")
def image(docker: Docker, models_dir: Path) -> str:
    """docker build --target runtime from the repository alone (no build-args but the classic builder's)."""
    t0 = time.perf_counter()
    build = docker.run(
        "docker",
        "build",
        "--target",
        "runtime",
        "--build-arg",
        "WITH_TRAIN_DEPS=0",
        "-t",
        IMAGE,
        ".",
        timeout=1800,
    )
    print(f"\ndocker build (runtime) in {time.perf_counter() - t0:.1f} s")
    assert "python -m service check" in build.stdout  # the runtime stage runs it (maybe from cache)
    # and the image passes it when run: models, detector, sha256s, one detection + classification
    check = docker.run("docker", "run", "--rm", IMAGE, "python", "-m", "service", "check", timeout=300)
    assert "check passed" in check.stdout, check.stdout
    for line in check.stdout.splitlines():
        if line.strip().startswith(("ok ", "sample ")):
            print("  check:", line.strip()[:110])
    size = int(docker.run("docker", "image", "inspect", "-f", "{{.Size}}", IMAGE).stdout)
    history = docker.run("docker", "history", "--format", "{{.Size}}\t{{.CreatedBy}}", IMAGE).stdout
    print("docker history (layers with bytes):")
    for row in history.splitlines():
        layer_size, created = row.split("\t", 1)
        if layer_size not in ("0B", "0"):
            print(f"  {layer_size:>8}  {created[:90]}")
    base = docker.run("docker", "image", "inspect", "-f", "{{.Size}}", BASE_IMAGE, check=False)
    listing = docker.run("docker", "image", "ls", IMAGE.split(":")[0]).stdout
    print(listing.rstrip())
    base_note = ""
    if base.returncode == 0:
        base_size = int(base.stdout)
        # the runtime starts FROM scratch with a pruned copy of the base as its first layer
        base_note = f"; the unpruned base {BASE_IMAGE} alone is {base_size / 1e6:.0f} MB"
    print(f"runtime image: {size / 1e6:.0f} MB (target <= {MAX_IMAGE_MB} MB){base_note}")
    assert size <= MAX_IMAGE_MB * 1e6, f"runtime image {size / 1e6:.0f} MB > {MAX_IMAGE_MB} MB"
    return IMAGE


@dataclass
class Deployment:
    url: str
    compose: list[str]
    cold_start_s: float


@pytest.fixture(scope="module")
def deployment(docker: Docker, image: str) -> Iterator[Deployment]:
    port = free_port()
    project = f"masklite-test-{os.getpid()}"
    docker.env.update(MASKLITE_IMAGE=image, MASKLITE_PUBLISH_PORT=str(port))
    compose = ["docker", "compose", "-p", project, "-f", "docker-compose.yml"]
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    docker.run(*compose, "up", "-d", "--no-build", timeout=300)
    try:
        ready = None
        while time.perf_counter() - t0 < READY_TIMEOUT_S:
            try:
                r = httpx.get(url + "/health/ready", timeout=5)
                if r.status_code == 200:
                    ready = time.perf_counter() - t0
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        if ready is None:
            logs = docker.run(*compose, "logs", "--no-color", check=False).stdout
            raise AssertionError(f"container not ready after {READY_TIMEOUT_S:.0f} s:\n{logs[-5000:]}")
        logs = docker.run(*compose, "logs", "--no-color", "api", check=False).stdout
        loaded = next(
            (
                ln.split("] ", 1)[-1]
                for ln in logs.splitlines()
                if "masklite.runtime" in ln and " ready in " in ln
            ),
            "",
        )
        print(
            f"\ncold start: compose up -> /health/ready 200 in {ready:.1f} s (target <= 10 s);"
            f" the service logged: {loaded[:60]}"
        )
        yield Deployment(url, compose, ready)
    finally:
        logs = docker.run(*compose, "logs", "--no-color", "--tail", "15", check=False).stdout
        print("container log tail:\n" + logs.rstrip())
        down = docker.run(*compose, "down", "-v", "--timeout", "20", check=False, timeout=300)
        print(f"compose down: exit {down.returncode}")


# ---------------------------------------------------------------- tests


def test_container_answers_like_the_local_pipeline(
    deployment: Deployment, scene_samples: list[SceneSample], models_dir: Path, detector_path: Path
) -> None:
    card = load_card(models_dir)
    classifier = Classifier(verify_model_file(card, models_dir, PRECISION))
    detector = load_detector(card.detector, models_dir, path=detector_path)
    samples = [s for s in scene_samples if s.name in SCENES]
    assert samples, f"none of {SCENES} in the scenes sample"
    with httpx.Client(base_url=deployment.url, timeout=60) as http:
        models = http.get("/v1/models").json()
        assert {m["precision"] for m in models["models"] if m["loaded"]} >= {"int8", "float32"}
        for s in samples:
            r = http.post("/v1/predict", params={"model": PRECISION}, files={"file": (s.path.name, s.data)})
            assert r.status_code == 200, r.text
            remote = r.json()
            assert remote["model"]["sha256"] == card.models[PRECISION].sha256  # the baked-in model
            local = predict_frame(decode_image(s.data), Models(card, classifier, detector), PredictOptions())
            labels = [f["label"] for f in remote["faces"]]
            print(f"{s.name}: container {labels} in {remote['timings_ms']['total']:.0f} ms")
            assert len(remote["faces"]) == len(local.faces), (s.name, remote["faces"], local.faces)
            for lf in local.faces:
                best = max(remote["faces"], key=lambda f, lf=lf: iou(tuple(f["box"]), lf.box))
                assert iou(tuple(best["box"]), lf.box) > 0.9, (s.name, best, lf)
                assert best["label"] == lf.label, (s.name, best, lf)
                assert abs(best["mask_probability"] - lf.mask_probability) < 0.02, (s.name, best, lf)
        page = http.get("/")
        assert page.status_code == 200 and "detections" in page.text


def test_container_resources(docker: Docker, deployment: Deployment) -> None:
    """Prints what the container uses after serving (for sizing the compose limits)."""
    cid = docker.run(*deployment.compose, "ps", "-q", "api").stdout.strip()
    stats = docker.run("docker", "stats", "--no-stream", "--format", "{{.MemUsage}} cpu {{.CPUPerc}}", cid)
    limits = docker.run("docker", "inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}", cid)
    memory, nano_cpus = (int(v) for v in limits.stdout.split())
    print(
        f"\ncontainer memory {stats.stdout.strip()};"
        f" limits {memory / 2**20:.0f} MiB, {nano_cpus / 1e9:g} CPUs"
    )
    assert memory > 0 and nano_cpus > 0, "compose resource limits not applied"


def test_container_runs_as_non_root_and_can_write_jobs(docker: Docker, deployment: Deployment) -> None:
    uid = docker.run(*deployment.compose, "exec", "-T", "api", "id", "-u").stdout.strip()
    print(f"\ncontainer uid: {uid}")
    assert uid != "0"
    assert docker.run("docker", "image", "inspect", "-f", "{{.Config.User}}", IMAGE).stdout.strip() not in (
        "",
        "0",
        "root",
    )
    probe = "/var/lib/masklite/jobs/.write-probe"
    docker.run(*deployment.compose, "exec", "-T", "api", "sh", "-c", f"touch {probe} && rm {probe}")
    # code and models are not writable by the service user
    denied = docker.run(*deployment.compose, "exec", "-T", "api", "touch", "/app/models/x", check=False)
    assert denied.returncode != 0


def test_container_healthcheck_turns_healthy(docker: Docker, deployment: Deployment) -> None:
    cid = docker.run(*deployment.compose, "ps", "-q", "api").stdout.strip()
    deadline = time.monotonic() + 90
    status = ""
    while time.monotonic() < deadline:
        state = json.loads(docker.run("docker", "inspect", "-f", "{{json .State}}", cid).stdout)
        status = state.get("Health", {}).get("Status", "")
        if status == "healthy":
            break
        time.sleep(1)
    print(f"\ndocker health status: {status}")
    assert status == "healthy"
