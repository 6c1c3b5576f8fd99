"""service/jobkinds.py without a server: every kind registered in one explicit place (not on a router's
import), job functions a spawned worker can import, and the benchmark adapter's checks."""

from __future__ import annotations

import dataclasses
import io
import pickle
import subprocess
import sys

import pytest
from PIL import Image

from bench.inprocess import BenchConfig
from masklite.card import load_card
from masklite.paths import DEFAULT_MODELS_DIR
from service.bodies import Part
from service.errors import ApiError
from service.jobkinds import (
    JOB_KINDS,
    BenchmarkRequest,
    benchmark_params,
    loopback_url,
    register_job_kinds,
)
from service.settings import Settings
from tests.conftest import REPO_ROOT


def test_register_job_kinds_registers_every_kind() -> None:
    seen: dict[str, object] = {}
    register_job_kinds(lambda name, fn, exclusive: seen.__setitem__(name, (fn, exclusive)))
    assert seen == {
        "robustness": (JOB_KINDS["robustness"], False),
        "benchmark": (JOB_KINDS["benchmark"], True),
    }


@pytest.mark.parametrize("kind", sorted(JOB_KINDS))
def test_job_functions_pickle_by_reference(kind: str) -> None:
    """The job runner pickles the function into a `spawn`ed process: it must be a module-level name."""
    fn = JOB_KINDS[kind]
    assert pickle.loads(pickle.dumps(fn)) is fn


# importing every router registers nothing; creating the app registers each kind once
PROBE = """
import service.jobqueue as jobs
calls = []
jobs.register_job_kind = lambda name, fn, exclusive=False: calls.append(name)
import service.app
from service.routers import benchmark, jobs as jobs_router, predict, robustness
assert calls == [], calls
service.app.create_app()
assert sorted(calls) == ["benchmark", "robustness"], calls
print("ok")
"""


def test_routers_do_not_register_kinds_on_import() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout + result.stderr


def test_every_benchmark_request_field_maps_onto_bench_config() -> None:
    """run_benchmark_job passes the request's fields to BenchConfig by name."""
    config_fields = {f.name for f in dataclasses.fields(BenchConfig)}
    assert set(BenchmarkRequest.model_fields) - {"models", "http_runs"} <= config_fields


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("0.0.0.0", "http://127.0.0.1:8000"),
        ("127.0.0.1", "http://127.0.0.1:8000"),
        ("::1", "http://[::1]:8000"),
        ("10.1.2.3", None),
    ],
)
def test_loopback_url(host: str, url: str | None) -> None:
    assert loopback_url(host, 8000) == url


def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), "gray").save(buf, "JPEG")
    return buf.getvalue()


def test_benchmark_params_check_models_and_images() -> None:
    card, settings = load_card(DEFAULT_MODELS_DIR), Settings()

    def fails(spec: BenchmarkRequest, images: list[Part]) -> ApiError:
        with pytest.raises(ApiError) as info:
            benchmark_params(spec, card, settings, {"images": images})
        return info.value

    assert fails(BenchmarkRequest(models=["fp4"]), []).code == "invalid_parameters"
    assert fails(BenchmarkRequest(), [Part("a.jpg", b"")]).code == "invalid_image"
    assert fails(BenchmarkRequest(), [Part("a.jpg", b"not an image")]).code == "invalid_image"
    params, public = benchmark_params(BenchmarkRequest(), card, settings, {"images": [Part("", jpeg())]})
    assert params["images"][0][0] == "image0" and params["self_url"] == "http://127.0.0.1:8000"
    assert public["images"][0]["name"] == "image0" and len(public["images"][0]["sha256"]) == 64
    assert "X-API-Key" not in params["headers"]


def test_the_api_process_does_not_import_the_benchmark_code() -> None:
    """The benchmark modules (and httpx, rich) load in the job process only: ~9 MB less per API worker."""
    code = (
        "import sys, service.app; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('bench', 'httpx', 'rich')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout
