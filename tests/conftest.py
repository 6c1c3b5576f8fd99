"""Shared fixtures: a REAL `python -m service` process on a free port, and the scenes-sample images.

live_server       session-scoped base URL of a server with the shipped models and the YuNet detector
server_factory    start more servers with custom MASKLITE_* env (missing detector, broken models, tiny
                  limits); all are stopped at the end of the session, or earlier with `.stop()`
scene_samples     scenes-sample images with their VOC annotations (skip when MASKLITE_SCENES_DIR is unset)

Asset paths come from MASKLITE_* variables. For a variable that is unset, and only in the test suite, the
`../shared/` layout beside the checkout is the fallback (set here, at import, so subprocesses see it too):
`make test` on a fresh clone then runs what `.ci/run` runs, with no exports. The face detector needs no
fallback: it ships in models/.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from masklite.faces import iou  # noqa: F401 - re-exported: the tests match boxes with it
from masklite.paths import resolve_detector_path

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 120.0
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# ../shared beside the checkout (see ../shared/README.md): variable -> path inside it
SHARED_DIR = REPO_ROOT.parent / "shared"
SHARED_FALLBACKS = {
    "MASKLITE_DATA_DIR": "datasets/chandrikadeb7",
    "MASKLITE_SCENES_DIR": "datasets/scenes-sample",
    "MASKLITE_BACKBONE_WEIGHTS": "weights/mobilenet_v2_1.0_224_no_top_from_tfslim.h5",
    "MASKLITE_DOCKER_ENGINE": "tools/docker-engine.sh",
    "MASKLITE_DATASETS_DIR": "datasets",
    "MASKLITE_PEER_MODEL": "weights/aizoo_face_mask_detection_260.tflite",
}


def apply_shared_fallbacks(environ: MutableMapping[str, str] = os.environ, shared: Path = SHARED_DIR) -> dict:
    """Fill each unset variable from `shared` when that path exists there; returns what was set."""
    applied = {}
    for name, rel in SHARED_FALLBACKS.items():
        if not environ.get(name) and (shared / rel).exists():
            environ[name] = applied[name] = str(shared / rel)
    return applied


SHARED_APPLIED = apply_shared_fallbacks()


def skip_or_fail(reason: str) -> None:
    """A missing tool or engine: skip with the reason locally; in CI (CI=true) it must be there, so fail."""
    print(f"\nnot run: {reason}")
    if IN_CI:
        pytest.fail(f"CI must run this: {reason}")
    pytest.skip(reason)


# ---------------------------------------------------------------- assets


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The shipped models (or $MASKLITE_MODELS_DIR)."""
    path = Path(os.environ.get("MASKLITE_MODELS_DIR") or REPO_ROOT / "models")
    if not (path / "model_card.json").is_file():
        pytest.skip(f"no model_card.json in {path}: build or fetch the models first (make build-models)")
    return path


@pytest.fixture(scope="session")
def detector_path() -> Path:
    """$MASKLITE_DETECTOR_PATH, else the YuNet file shipped in models/ (a checkout always has it)."""
    try:
        return resolve_detector_path()
    except FileNotFoundError as exc:
        pytest.fail(f"no face detector: {exc}")


@pytest.fixture(scope="session")
def scenes_dir() -> Path:
    value = os.environ.get("MASKLITE_SCENES_DIR")
    if not value:
        pytest.skip("MASKLITE_SCENES_DIR is unset: point it at datasets/scenes-sample")
    path = Path(value)
    if not (path / "images").is_dir() or not (path / "annotations").is_dir():
        pytest.skip(f"MASKLITE_SCENES_DIR={path} has no images/ and annotations/")
    return path


def flip_middle_byte(path: Path) -> None:
    """Damage a file as a bad copy would: same size, one byte different (only the sha256 notices)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@dataclass(frozen=True)
class AnnotatedFace:
    label: str
    box: tuple[int, int, int, int]  # x, y, w, h


@dataclass(frozen=True)
class SceneSample:
    name: str
    path: Path
    width: int
    height: int
    faces: tuple[AnnotatedFace, ...]

    @property
    def data(self) -> bytes:
        return self.path.read_bytes()


def parse_voc(xml_path: Path) -> tuple[str, int, int, tuple[AnnotatedFace, ...]]:
    """Pascal VOC → (filename, width, height, faces with [x, y, w, h] boxes)."""
    root = ET.parse(xml_path).getroot()
    size = root.find("size")
    assert size is not None, f"{xml_path}: no <size>"
    width, height = int(size.findtext("width", "0")), int(size.findtext("height", "0"))
    faces = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        assert bb is not None, f"{xml_path}: object without <bndbox>"
        x0, y0, x1, y1 = (round(float(bb.findtext(k, "0"))) for k in ("xmin", "ymin", "xmax", "ymax"))
        faces.append(AnnotatedFace(obj.findtext("name", ""), (x0, y0, x1 - x0, y1 - y0)))
    return root.findtext("filename", xml_path.stem + ".jpg"), width, height, tuple(faces)


@pytest.fixture(scope="session")
def scene_samples(scenes_dir: Path) -> list[SceneSample]:
    samples = []
    for xml_path in sorted((scenes_dir / "annotations").glob("*.xml")):
        filename, width, height, faces = parse_voc(xml_path)
        image = scenes_dir / "images" / filename
        if image.is_file():
            samples.append(SceneSample(xml_path.stem, image, width, height, faces))
    if not samples:
        pytest.skip(f"no annotated images in {scenes_dir}")
    return samples


# ---------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerHandle:
    """One `python -m service` subprocess."""

    url: str
    proc: subprocess.Popen
    log_path: Path
    env: dict[str, str] = field(repr=False, default_factory=dict)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def logs_with(self, *lines: str, timeout: float = 10.0) -> str:
        """The log once it holds every one of `lines` (access lines land just after the response), or
        whatever it holds at the timeout, for the caller's assertion to show."""
        deadline = time.monotonic() + timeout
        while not all(line in self.logs() for line in lines) and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.logs()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for(self, path: str = "/health/ready", timeout: float = STARTUP_TIMEOUT_S) -> httpx.Response:
        """Poll `path` until it answers 200; fail with the server log if it dies or times out."""
        deadline = time.monotonic() + timeout
        last: httpx.Response | None = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.logs()[-4000:]}")
            try:
                last = httpx.get(self.url + path, timeout=5)
                if last.status_code == 200:
                    return last
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        body = last.text if last is not None else "no answer"
        raise AssertionError(f"{path} not 200 after {timeout:.0f} s ({body}):\n{self.logs()[-4000:]}")

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


class ServerFactory:
    def __init__(self, workdir: Path, models_dir: Path | None, detector: Path | None):
        self.workdir = workdir
        self.models_dir = models_dir
        self.detector = detector
        self.servers: list[ServerHandle] = []

    def start(self, env: dict[str, str] | None = None, wait: str | None = "/health/ready") -> ServerHandle:
        """Start a server; `env` overrides MASKLITE_* defaults. wait=None returns at once."""
        port = free_port()
        full_env = dict(os.environ)
        full_env.update(
            {
                "MASKLITE_HOST": "127.0.0.1",
                "MASKLITE_PORT": str(port),
                "MASKLITE_WORKERS": "1",
                "MASKLITE_LOG_LEVEL": "info",
                "MASKLITE_JOBS_DIR": str(self.workdir / f"jobs-{port}"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if self.models_dir is not None:
            full_env["MASKLITE_MODELS_DIR"] = str(self.models_dir)
        if self.detector is not None:
            full_env["MASKLITE_DETECTOR_PATH"] = str(self.detector)
        full_env.update(env or {})
        log_path = self.workdir / f"server-{port}.log"
        with open(log_path, "wb") as log:
            cmd = [sys.executable, "-m", "service"]
            proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        handle = ServerHandle(f"http://127.0.0.1:{port}", proc, log_path, full_env)
        self.servers.append(handle)
        if wait:
            try:
                handle.wait_for(wait)
            except AssertionError:
                handle.stop()
                raise
        return handle

    def stop_all(self) -> None:
        for handle in self.servers:
            handle.stop()


@pytest.fixture(scope="session")
def server_factory(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[ServerFactory]:
    """Starts extra servers (shipped models and detector, or $MASKLITE_DETECTOR_PATH; override with env)."""
    env_detector = os.environ.get("MASKLITE_DETECTOR_PATH")
    detector = Path(env_detector) if env_detector else None
    factory = ServerFactory(tmp_path_factory.mktemp("servers"), models_dir, detector)
    yield factory
    factory.stop_all()


@pytest.fixture(scope="session")
def live_server_handle(server_factory: ServerFactory, detector_path: Path) -> ServerHandle:
    return server_factory.start({"MASKLITE_DETECTOR_PATH": str(detector_path)})


@pytest.fixture(scope="session")
def live_server(live_server_handle: ServerHandle) -> str:
    """Base URL of a ready server with the shipped models and the YuNet detector."""
    return live_server_handle.url


@pytest.fixture
def client(live_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server, timeout=60) as c:
        yield c
