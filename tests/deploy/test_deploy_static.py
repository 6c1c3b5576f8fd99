"""Static checks of the deployment files, no Docker engine needed: hadolint, compose config, build context."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.utils import canonicalize_name

from tests.conftest import REPO_ROOT, skip_or_fail

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if path is None:
        skip_or_fail(f"{name} not installed (pip install -e '.[dev]')")
    return str(path)


def test_hadolint_dockerfile() -> None:
    dockerfiles = ["Dockerfile", "docker/redis.Dockerfile", "docker/haproxy.Dockerfile"]
    cmd = [tool("hadolint"), "--no-color", *dockerfiles]
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_config_is_valid() -> None:
    compose = tool("docker-compose")
    for profile in ([], ["--profile", "train"], ["--profile", "scale"]):
        result = subprocess.run(
            [compose, "-f", "docker-compose.yml", *profile, "config", "-q"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr


def compose_config(*files: str, profile: str | None = None) -> dict:
    """`docker-compose config` of these files, merged in order (with `--profile` when given), as JSON."""
    args = [arg for f in files for arg in ("-f", f)] + (["--profile", profile] if profile else [])
    result = subprocess.run(
        [tool("docker-compose"), *args, "config", "--format", "json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


def test_compose_api_service_settings() -> None:

    api = compose_config("docker-compose.yml")["services"]["api"]
    assert api["build"]["target"] == "runtime"
    assert api["healthcheck"]["test"][0] == "CMD" and "/health/ready" in " ".join(api["healthcheck"]["test"])
    assert api["restart"] in ("unless-stopped", "always", "on-failure")
    assert api["deploy"]["resources"]["limits"]["memory"] and api["deploy"]["resources"]["limits"]["cpus"]
    jobs_dir = api["environment"]["MASKLITE_JOBS_DIR"]
    assert any(v["target"] == jobs_dir and v["type"] == "volume" for v in api["volumes"])
    assert api["ports"][0]["target"] == 8000


def test_compose_scale_profile() -> None:
    """Replicas and workers share the image, the jobs volume and Redis; only the balancer is published;
    Redis keeps an append-only file on its own volume; `--profile scale` leaves the plain `api` off (it
    would publish the same port), `docker compose up` starts it alone (COMPOSE_PROFILES in .env)."""
    plain = compose_config("docker-compose.yml")["services"]
    scale = compose_config("docker-compose.yml", profile="scale")["services"]
    assert set(plain) == {"api"} and set(scale) == {"replica", "worker", "redis", "lb"}
    replica, worker, redis, lb = (scale[s] for s in ("replica", "worker", "redis", "lb"))
    assert replica["image"] == worker["image"] == plain["api"]["image"]
    for service in (replica, worker):
        assert service["environment"]["MASKLITE_BROKER_URL"] == "redis://redis:6379/0"
        jobs_dir = service["environment"]["MASKLITE_JOBS_DIR"]
        assert any(v["target"] == jobs_dir and v["source"] == "jobs" for v in service["volumes"])
        assert service["read_only"] and service["cap_drop"] == ["ALL"]
        assert "ports" not in service
    assert replica["deploy"]["replicas"] == 2 and worker["deploy"]["replicas"] == 2  # the defaults
    assert worker["command"] == ["python", "-m", "service", "worker"] and worker["init"]
    assert "--check" in worker["healthcheck"]["test"]
    assert lb["ports"][0]["target"] == 8000 and "ports" not in redis
    assert any(v["target"] == "/data" and v["type"] == "volume" for v in redis["volumes"])
    conf = (REPO_ROOT / "docker" / "redis.conf").read_text()
    assert "appendonly yes" in conf and "maxmemory-policy noeviction" in conf
    assert "server-template" in (REPO_ROOT / "docker" / "haproxy.cfg").read_text()


def test_dockerfile_runtime_is_default_and_lean() -> None:
    text = (REPO_ROOT / "Dockerfile").read_text()
    stages = [line.split()[-1] for line in text.splitlines() if line.startswith("FROM ")]
    assert stages[-1] == "runtime", "the runtime stage must be last: it is the default target"
    assert "train" in stages
    runtime = text[text.rindex(" AS runtime\n") :]
    assert "tensorflow" not in runtime.lower() and "train-deps" not in runtime
    assert "matplotlib" not in (REPO_ROOT / "pyproject.toml").read_text().split("[project.optional")[0]
    assert "\nUSER 10001" in runtime and "HEALTHCHECK" in runtime and "/health/ready" in runtime


def test_build_context_is_small() -> None:
    """.dockerignore keeps .venv, work, data, .git and tests out of the context."""
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    ignore = [line for line in lines if line and line[0] != "#"]
    assert ignore[0] == "*", "allow-list: ignore everything first"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert {"masklite", "service", "models", "pyproject.toml", "docker"} <= allowed
    assert not allowed & {".venv", "work", "data", ".git", "tests"}


def test_locks_pin_every_declared_dependency() -> None:
    """requirements/*.txt pin (==) every dependency pyproject.toml declares for them; serve.txt has no
    TensorFlow; one package has one version across the locks."""
    sys.path.insert(0, str(REPO_ROOT / "docker"))
    try:
        from requirements import locked
    finally:
        sys.path.pop(0)
    from packaging.requirements import Requirement

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = {
        "serve": project["dependencies"] + extras["scale"],
        "train": project["dependencies"] + extras["train"],
        "dev": project["dependencies"] + [r for group in extras.values() for r in group],
    }
    versions: dict[str, str] = {}
    for name, declared in wanted.items():
        pins = {}
        for line in locked(REPO_ROOT / "requirements" / f"{name}.txt"):
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(req.name)] = spec.version
        for text in declared:
            req = Requirement(text)
            assert req.specifier.contains(pins[canonicalize_name(req.name)], prereleases=True), (name, text)
        for pkg, version in pins.items():
            assert versions.setdefault(pkg, version) == version, (name, pkg)
        if name == "serve":
            assert not any("tensorflow" in pkg for pkg in pins)


def test_image_builds_from_the_repository_alone() -> None:
    """No download, no assets folder, no URL or asset build-arg: the detector comes from models/."""
    text = (REPO_ROOT / "Dockerfile").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    urls = re.findall(r"https?://[^/'\"\s]+", code)
    assert set(urls) <= {"http://127.0.0.1:%s"}, urls  # the health check's loopback only
    assert "docker/assets" not in code and "YUNET_URL" not in code
    assert not (REPO_ROOT / "docker" / "assets").exists()
    assert not (REPO_ROOT / "docker" / "fetch_detector.py").exists()
    args = [line.split()[1].split("=")[0] for line in code.splitlines() if line.startswith("ARG ")]
    assert set(args) <= {"PYTHON_IMAGE", "WITH_TRAIN_DEPS"}, args
    runtime = code[code.rindex(" AS runtime\n") :]
    assert "COPY models/ models/" in runtime and "MASKLITE_DETECTOR_PATH" not in runtime
    assert "python -m service check" in runtime  # the image proves it serves, detector included


def test_compose_https_override() -> None:
    """docker/compose.https.yml: the api on HTTPS, its certificate in a volume, health checked on HTTPS."""

    api = compose_config("docker-compose.yml", "docker/compose.https.yml")["services"]["api"]
    env = api["environment"]
    assert env["MASKLITE_TLS"] == "self-signed"
    assert any(v["target"] == env["MASKLITE_TLS_DIR"] and v["type"] == "volume" for v in api["volumes"])
    assert "https://127.0.0.1:8000/health/ready" in " ".join(api["healthcheck"]["test"])
    # the image makes that folder for the service user (the container's root file system is read-only)
    assert env["MASKLITE_TLS_DIR"] in (REPO_ROOT / "Dockerfile").read_text()
