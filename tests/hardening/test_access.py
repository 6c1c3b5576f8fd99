"""Access control and data handling on a REAL server with MASKLITE_API_KEY and a CORS allow-list set, and
TMPDIR pointed at an empty folder.

* every job/benchmark route: 401 (+ WWW-Authenticate) without the key, 403 with a wrong one, through with
  the right one (X-API-Key or Bearer); predict, models, health, metrics stay open (PROTECT_PREDICT unset;
  keyed predict: tests/service/test_service_errors.py::test_api_key_and_cors_when_configured)
* CORS: only listed origins get Access-Control-Allow-Origin; no allow-list, no CORS headers at all
* uploads never touch the disk: multi-MB uploads to predict, snapshot, robustness and benchmark, streamed
  slowly while the server's open files (/proc/<pid>/fd) are watched for anything in TMPDIR or deleted
  (anonymous temp files), and TMPDIR stays empty
* client-supplied paths: traversal in static names, job ids, artifact names, model names and upload file
  names all end as 404/422 or are ignored, nothing is read or written outside
* request ids: the client's X-Request-ID is on the server's log line for that request, errors included

The container's non-root user:
tests/deploy/test_docker.py::test_container_runs_as_non_root_and_can_write_jobs.
"""

from __future__ import annotations

import base64
import io
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.conftest import ServerFactory, ServerHandle
from tests.hardening.hardening_support import JOB_ID, JOB_ROUTES, assert_envelope

API_KEY = "access-key-7f3a"
ORIGIN = "https://app.example"


def jpeg(size: int = 96) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (90, 140, 200)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def tmpdir_empty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-tmpdir")


@pytest.fixture(scope="module")
def keyed(
    server_factory: ServerFactory, tmp_path_factory: pytest.TempPathFactory, tmpdir_empty: Path
) -> Iterator[ServerHandle]:
    handle = server_factory.start(
        {
            "MASKLITE_API_KEY": API_KEY,
            "MASKLITE_CORS_ORIGINS": f"{ORIGIN},https://other.example",
            "MASKLITE_JOBS_DIR": str(tmp_path_factory.mktemp("access-jobs")),
            "MASKLITE_JOB_NICE": "19",
            "TMPDIR": str(tmpdir_empty),
        }
    )
    yield handle
    handle.stop()


@pytest.fixture
def anon(keyed: ServerHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=keyed.url, timeout=60) as c:
        yield c


# ---------------------------------------------------------------- API key

KEYED_ROUTES = JOB_ROUTES
# a body the route rejects as invalid (422) once authorised, so no job is started by these checks
INVALID_BODY = {"/v1/robustness": {"surprise": 1}, "/v1/benchmark": {"runs": -1}, "/v1/video": {"stride": 0}}


def test_keyed_routes_match_the_schema(anon: httpx.Client) -> None:
    spec = anon.get("/openapi.json").json()
    keyed = {
        (method.upper(), path)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if op.get("security")
    }
    documented = {(m, p.replace(JOB_ID, "{job_id}").replace("grid.csv", "{name}")) for m, p in KEYED_ROUTES}
    assert keyed == documented
    for path in ("/v1/predict", "/v1/predict/snapshot"):
        assert "security" not in spec["paths"][path]["post"]


@pytest.mark.parametrize(("method", "path"), KEYED_ROUTES)
def test_api_key_required(
    anon: httpx.Client, keyed: ServerHandle, method: str, path: str, record_property: Callable
) -> None:
    body = INVALID_BODY.get(path)
    kw = {"json": body} if body is not None else {}
    r = anon.request(method, path, **kw)
    assert_envelope(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"
    for headers in ({"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}, {"X-API-Key": API_KEY + "x"}):
        assert_envelope(anon.request(method, path, headers=headers, **kw), 403, "forbidden")
    assert anon.request(method, path, headers={"X-API-Key": ""}, **kw).status_code == 401
    # a wrong or foreign credential is refused even beside the right one
    wrong = ({"Authorization": "Basic " + API_KEY}, {"X-API-Key": API_KEY, "Authorization": "Bearer nope"},
             {"X-API-Key": "", "Authorization": f"Bearer {API_KEY}"})  # fmt: skip
    for headers in wrong:
        assert_envelope(anon.request(method, path, headers=headers, **kw), 403, "forbidden")
    for headers in ({"X-API-Key": API_KEY}, {"Authorization": f"Bearer {API_KEY}"}):
        ok = anon.request(method, path, headers=headers, **kw)
        assert ok.status_code not in (401, 403), ok.text
        assert ok.status_code in (200, 404, 422), ok.text  # 404: no such job, 422: the invalid body
    record_property("cases", 10)
    assert API_KEY not in keyed.logs()


def test_open_routes_stay_open(anon: httpx.Client) -> None:
    assert anon.post("/v1/predict", files={"file": ("x.jpg", jpeg())}).status_code == 200
    snap = anon.post("/v1/predict/snapshot", json={"image": base64.b64encode(jpeg()).decode()})
    assert snap.status_code == 200
    for path in ("/v1/models", "/health/live", "/health/ready", "/metrics", "/openapi.json", "/"):
        assert anon.get(path).status_code == 200, path


# ---------------------------------------------------------------- CORS


def test_cors_allow_list(anon: httpx.Client, live_server: str) -> None:
    pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key"}
    ok = anon.options("/v1/robustness", headers={"Origin": ORIGIN, **pre})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ORIGIN
    simple = anon.get("/v1/models", headers={"Origin": ORIGIN})
    assert simple.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
    for origin in ("https://evil.example", "null", "https://app.example.evil.example", "http://app.example"):
        bad = anon.get("/v1/models", headers={"Origin": origin})
        assert "access-control-allow-origin" not in bad.headers, origin
        pf = anon.options("/v1/predict", headers={"Origin": origin, **pre})
        assert "access-control-allow-origin" not in pf.headers, origin
    # no allow-list configured (the default): no CORS headers for anyone
    plain = httpx.get(live_server + "/v1/models", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in plain.headers


# ---------------------------------------------------------------- uploads stay in memory


def open_files(pid: int) -> list[str]:
    out = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            out.append(os.readlink(fd))
        except OSError:
            continue
    return out


def slow_body(
    data: bytes, pid: int, watch: Path, seen: list[str], chunk: int = 256 * 1024
) -> Iterator[bytes]:
    """Stream `data` in chunks with pauses; meanwhile record any server fd on TMPDIR or on a deleted file."""
    for i in range(0, len(data), chunk):
        yield data[i : i + chunk]
        time.sleep(0.02)
        for target in open_files(pid):
            if target.startswith(str(watch)) or target.endswith("(deleted)"):
                seen.append(target)


def multipart(parts: list[tuple[str, str | None, bytes, str | None]], boundary: str = "b0undary") -> bytes:
    out = b""
    for name, filename, data, ctype in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n".encode()
        out += f"Content-Type: {ctype}\r\n".encode() if ctype else b""
        out += b"\r\n" + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def test_uploads_never_written_to_disk(
    anon: httpx.Client, keyed: ServerHandle, tmpdir_empty: Path, record_property: Callable
) -> None:
    """Starlette would spool a multipart file over 1 MB to a temp file; ours must not (nor anything else)."""
    pid = keyed.proc.pid
    mp = "multipart/form-data; boundary=b0undary"
    padded = jpeg() + os.urandom(5_000_000)  # a valid JPEG followed by 5 MB the decoder ignores
    key = {"X-API-Key": API_KEY}
    uploads = [
        (
            "predict multipart",
            "/v1/predict",
            multipart([("file", "big.jpg", padded, "image/jpeg")]),
            mp,
            {},
            200,
        ),
        ("predict raw", "/v1/predict", padded, "image/jpeg", {}, 200),
        (
            "snapshot base64",
            "/v1/predict/snapshot",
            b'{"image": "' + base64.b64encode(padded[:4_000_000]) + b'"}',
            "application/json",
            {},
            200,
        ),
        (
            "robustness evalset",
            "/v1/robustness",
            multipart(
                [
                    ("params", None, b"{}", None),
                    ("evalset", "e.zip", os.urandom(3_000_000), "application/zip"),
                ]
            ),
            mp,
            key,
            422,
        ),
        (
            "benchmark images",
            "/v1/benchmark",
            multipart([("images", "a.jpg", os.urandom(2_000_000), "image/jpeg")] * 2),
            mp,
            key,
            422,
        ),
    ]
    seen: list[str] = []
    statuses = []
    for name, path, body, ctype, headers, want in uploads:
        r = anon.post(
            path,
            content=slow_body(body, pid, tmpdir_empty, seen),
            headers={"Content-Type": ctype, **headers},
        )
        statuses.append(f"{name}: {r.status_code}")
        assert r.status_code == want, (name, r.text[:300])
    assert not seen, f"the server opened files while receiving uploads: {sorted(set(seen))}"
    left = [str(p) for p in tmpdir_empty.rglob("*")]
    assert not left, f"files appeared in the server's TMPDIR: {left}"
    record_property("cases", len(uploads))
    record_property("detail", "; ".join(statuses))


# ---------------------------------------------------------------- client-supplied paths


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/static/..%2F..%2Fpyproject.toml", 404),
        ("GET", "/static/.hidden", 404),
        ("GET", "/static/%2Fetc%2Fpasswd", 404),
        ("GET", "/v1/jobs/..%2F..%2Fetc%2Fpasswd", 404),
        ("GET", "/v1/jobs/%2Fetc%2Fpasswd/artifacts/x.csv", 404),
        ("GET", f"/v1/jobs/{JOB_ID}/artifacts/..%2F..%2F..%2Fpyproject.toml", 404),
        ("GET", f"/v1/jobs/{JOB_ID}/artifacts/job.json", 404),
        ("POST", "/v1/predict?model=..%2F..%2Fmodels%2Fmasklite_int8", 422),
        ("POST", "/v1/predict?model=%2Fetc%2Fpasswd", 422),
    ],
)
def test_client_paths_never_reach_the_disk(anon: httpx.Client, method: str, path: str, status: int) -> None:
    kw = {"files": {"file": ("x.jpg", jpeg())}} if method == "POST" else {}
    r = anon.request(method, path, headers={"X-API-Key": API_KEY}, **kw)
    assert_envelope(r, status, None)
    assert "root:" not in r.text and "[project]" not in r.text


def test_upload_file_name_is_never_used(anon: httpx.Client, tmp_path: Path) -> None:
    target = tmp_path / "owned.jpg"
    name = "../" * 12 + str(target).lstrip("/")
    r = anon.post("/v1/predict", files={"file": (name, jpeg(), "image/jpeg")})
    assert r.status_code == 200 and not target.exists()


# ---------------------------------------------------------------- request ids


def test_request_ids_on_log_lines(anon: httpx.Client, keyed: ServerHandle) -> None:
    rid_ok, rid_401, rid_422 = "hardening-ok-1", "hardening-401-1", "hardening-422-1"
    anon.post("/v1/predict", files={"file": ("x.jpg", jpeg())}, headers={"X-Request-ID": rid_ok})
    anon.get("/v1/jobs", headers={"X-Request-ID": rid_401})
    files = {"file": ("x.jpg", jpeg())}
    anon.post("/v1/predict", params={"model": "nope"}, files=files, headers={"X-Request-ID": rid_422})
    wanted = (
        f"[{rid_ok}] POST /v1/predict 200",
        f"[{rid_401}] GET /v1/jobs 401",
        f"[{rid_422}] POST /v1/predict 422",
    )
    logs = keyed.logs_with(*wanted)
    assert f"[{rid_ok}] POST /v1/predict 200" in logs
    assert f"[{rid_401}] GET /v1/jobs 401" in logs
    assert f"[{rid_422}] POST /v1/predict 422" in logs
