"""Shared fixtures: a REAL `python -m service` process on a free port, and the scenes-sample images.

live_server       session-scoped base URL of a server with the shipped models and the YuNet detector
server_factory    start more servers with custom MASKLITE_* env (missing detector, broken models, tiny
                  limits); all are stopped at the end of the session, or earlier with `.stop()`
scene_samples     scenes-sample images with their VOC annotations (skip_or_fail when MASKLITE_SCENES_DIR is
                  unset)

The shell does not leak into the suite: at import, every MASKLITE_* variable except the asset paths and the
suite's own switches (TEST_VARIABLES) is removed from this process's environment, so an exported
MASKLITE_API_KEY or MASKLITE_MAX_INFLIGHT changes no test server and no in-process Settings(). A test sets
what it needs through `server_factory.start(env)`.

Skips: a missing asset calls `skip_or_fail` (a skip locally, a failure under CI=true). Under CI, every skip
left must match tests/skip_allowlist.txt (pattern + why); the session fails on any other (see the hooks at
the end).

Asset paths come from MASKLITE_* variables. For a variable that is unset, and only in the test suite, the
`../shared/` layout beside the checkout is the fallback (set here, at import, so subprocesses see it too):
`make test` on a fresh clone then runs what `.ci/run` runs, with no exports. The face detector needs no
fallback: it ships in models/.
"""

from __future__ import annotations

import importlib
import os
import re
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import httpx
import pytest

from bench.server import stop_process
from masklite.faces import iou  # noqa: F401 - re-exported: the tests match boxes with it
from masklite.paths import resolve_detector_path
from tests.helpers.skips import SkipLog

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 120.0
READY_LINE = re.compile(r" INFO (\d+) masklite\.runtime \[-\] ready in ")
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

# MASKLITE_* variables the suite keeps from the shell: where the assets are, and the suite's own switches.
# Everything else (API key, limits, broker, threads...) is a server setting that a test sets explicitly.
TEST_VARIABLES = frozenset(
    {
        *SHARED_FALLBACKS,
        "MASKLITE_MODELS_DIR",  # the models under test (default: models/)
        "MASKLITE_DETECTOR_PATH",  # an override of the shipped detector
        "MASKLITE_HARDENING_PROFILE",  # ci | long (make reliability)
        "MASKLITE_TEST_ARTIFACTS",  # where the browser test writes its screenshots
        "MASKLITE_CHROMIUM",  # the browser binary
    }
)


def scrub_environ(environ: MutableMapping[str, str] = os.environ) -> list[str]:
    """Drop every MASKLITE_* variable that is not in TEST_VARIABLES; returns the names dropped."""
    dropped = sorted(k for k in environ if k.startswith("MASKLITE_") and k not in TEST_VARIABLES)
    for name in dropped:
        del environ[name]
    return dropped


SCRUBBED = scrub_environ()


def skip_or_fail(reason: str) -> NoReturn:
    """A missing asset, tool or engine: skip with the reason locally; in CI (CI=true) it must be there, so
    fail. Works in a test, a fixture or at module level."""
    print(f"\nnot run: {reason}")
    if IN_CI:
        pytest.fail(f"CI must run this: {reason}")
    pytest.skip(reason, allow_module_level=True)


def import_or_skip_or_fail(module: str, reason: str) -> ModuleType:
    """`pytest.importorskip`, but a failure under CI=true (the locked dev dependencies have it all)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        skip_or_fail(f"{reason} ({exc})")


# ---------------------------------------------------------------- assets


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The shipped models (or $MASKLITE_MODELS_DIR)."""
    path = Path(os.environ.get("MASKLITE_MODELS_DIR") or REPO_ROOT / "models")
    if not (path / "model_card.json").is_file():
        skip_or_fail(f"no model_card.json in {path}: build or fetch the models first (make build-models)")
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
        skip_or_fail("MASKLITE_SCENES_DIR is unset: point it at datasets/scenes-sample")
    path = Path(value)
    if not (path / "images").is_dir() or not (path / "annotations").is_dir():
        skip_or_fail(f"MASKLITE_SCENES_DIR={path} has no images/ and annotations/")
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
        skip_or_fail(f"no annotated images in {scenes_dir}")
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

    def ready_pids(self) -> set[str]:
        """The processes that logged "ready in" (`<date> <time> INFO <pid> masklite.runtime [-] ready in`)."""
        return set(READY_LINE.findall(self.logs()))

    def wait_for_workers(self, n: int, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Until `n` worker processes say they are ready: /health/ready answers for one of them only."""
        deadline = time.monotonic() + timeout
        while len(self.ready_pids()) < n:
            if not self.alive() or time.monotonic() > deadline:
                raise AssertionError(f"{len(self.ready_pids())} of {n} workers ready:\n{self.logs()[-4000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.alive():
            stop_process(self.proc, grace_s=15)


class ServerFactory:
    def __init__(self, workdir: Path, models_dir: Path | None, detector: Path | None):
        self.workdir = workdir
        self.models_dir = models_dir
        self.detector = detector
        self.servers: list[ServerHandle] = []

    def start(self, env: dict[str, str] | None = None, wait: str | None = "/health/ready") -> ServerHandle:
        """Start a server; `env` overrides MASKLITE_* defaults. wait=None returns at once. The process
        environment it starts from holds no server setting from the shell (scrub_environ, at import)."""
        port = int((env or {}).get("MASKLITE_PORT") or free_port())  # a given port: a server back on it
        full_env = dict(os.environ)
        scrub_environ(full_env)  # again: a test may have exported one with monkeypatch
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
                workers = int(full_env["MASKLITE_WORKERS"])
                if wait == "/health/ready" and workers > 1:  # each uvicorn worker gets ready on its own
                    handle.wait_for_workers(workers)
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


# ---------------------------------------------------------------- the `slow` marker

# What `make test-fast` leaves out besides Docker and the browser: whole modules, or single tests, that run
# for several seconds each (their own servers, job processes, TensorFlow). Seconds: the module's total in a
# suite run on the shared 2-core machine (loaded, so upper bounds); a test module may also mark itself.
SLOW: dict[str, str] = {
    "tests/training/test_pipeline.py": "TensorFlow: one-epoch training, export, Keras parity (80 s)",
    "tests/training/test_micro.py": "TFLM arena measurement (45 s)",
    "tests/training/test_accuracy_gate.py": "cross-source sets through detector + model (26 s)",
    "tests/training/test_sources.py": "YuNet over every cross-source image (12-28 s)",
    "tests/bench/test_ci.py": "a benchmark job on a live server (30-50 s)",
    "tests/service/test_jobqueue.py": "job processes on SQLite and Redis, leases (210 s)",
    "tests/service/test_jobs.py": "robustness jobs on their own servers (120 s)",
    "tests/service/test_benchmark_job.py": "benchmark jobs (38 s)",
    "tests/service/test_jobkinds.py": "fresh interpreters checking imports (27 s)",
    "tests/service/test_check.py": "`python -m service check` runs (28 s)",
    "tests/service/test_service_health.py": "one server per broken models folder (26 s)",
    "tests/service/test_service_decision.py": "a server on a crafted card (14 s)",
    "tests/service/test_detector_runtime.py": "a server per detector runtime (40 s)",
    "tests/hardening/test_overload.py": "200 clients flood a server (41 s)",
    "tests/hardening/test_fuzz.py": "schemathesis against a server (29 s)",
    "tests/hardening/test_faults.py": "servers on corrupt models and a full disk (26 s)",
    "tests/robustness/test_report.py": "robustness grids on the tiny models (25 s)",
    "tests/robustness/test_cli.py": "CLI runs with a process pool (23 s)",
    "tests/test_tools.py": "tools/ scripts, one runs pytest (44 s)",
    "tests/service/test_service_metrics.py::test_metrics_are_summed_over_the_workers": "2 workers (17 s)",
    "tests/test_suite_infra.py::test_missing_scenes_fail_under_ci_and_skip_locally": "2 pytest runs (8 s)",
    "tests/test_suite_infra.py::test_an_unlisted_skip_fails_the_ci_session": "a pytest run (4 s)",
    "tests/video/test_video_service.py": "video jobs on a live server, RTSP and HTTP streams (30 s)",
    "tests/video/test_cli.py": "the CLI on encoded clips, in-process and through a server (12 s)",
    "tests/video/test_video_core.py::test_rtsp_stream_is_read_at_its_own_rate_without_growing_lag": (
        "a real RTSP stream on loopback (8 s)"
    ),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        if path in SLOW or item.nodeid.split("[", 1)[0] in SLOW:
            item.add_marker(pytest.mark.slow)


# ---------------------------------------------------------------- skips under CI

_SKIPS = SkipLog()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _SKIPS.record(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _SKIPS.record(report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI, a skip that tests/skip_allowlist.txt does not name fails the run (exit 1)."""
    if IN_CI and _SKIPS.unexpected() and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Every skipped test by name, allowed or not, and what CI makes of it."""
    for line in _SKIPS.summary(IN_CI):
        terminalreporter.write_line(line)
