"""The job machinery and /v1/robustness against REAL servers: lifecycle, cancel, queue limit (429), a killed
worker, restart, unwritable storage, API key, and malformed evaluation-set uploads (422, nothing written).

Jobs are real robustness grids on the shipped models: SMALL finishes in seconds, LONG (the full original
grid) runs for minutes and is always cancelled or killed by the test that starts it.
"""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from bench.server import spawned_children
from tests.conftest import skip_or_fail

SMALL = {"layers": [-1], "kinds": ["multiply"], "scalars": [0, 1], "max_images": 20}
LONG = {"layers": "all", "kinds": ["multiply", "add"]}
TIMEOUT_S = 300  # generous: CI machines are shared and job workers are niced
API_KEY = "test-key-123"


# ------------------------------------------------------------------ helpers


def wait_state(
    client: httpx.Client, job_id: str, states: set[str], timeout: float = TIMEOUT_S
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never reached {states}: {job}")


def worker_pids(server_pid: int) -> list[int]:
    """Job worker processes (multiprocessing spawn children) of a server process."""
    return spawned_children(server_pid)


def wait_for_worker(server_pid: int, before: set[int], timeout: float = 30) -> int:
    """The worker started after `before` was taken (an earlier one may still be exiting)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [p for p in worker_pids(server_pid) if p not in before and not gone(p, timeout=0)]
        if pids:
            return pids[0]
        time.sleep(0.1)
    raise AssertionError("no job worker process appeared")


def gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = (Path(f"/proc/{pid}") / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":  # exited, waiting to be reaped
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def cancel_active(client: httpx.Client) -> None:
    for job in client.get("/v1/jobs").json()["jobs"]:
        if job["state"] in ("queued", "running"):
            client.delete(f"/v1/jobs/{job['id']}")


def jpeg(value: int = 128, size: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (value, 255 - value, value // 2)).save(buf, "JPEG")
    return buf.getvalue()


def make_zip(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def small_evalset(models_dir: Path, per_label: int = 5) -> bytes:
    """A few real crops from the shipped evaluation set, re-zipped (a valid client upload)."""
    path = models_dir / "evalset.zip"
    if not path.is_file():
        skip_or_fail(f"no {path}")
    out: dict[str, bytes] = {}
    counts: dict[str, int] = {}
    with zipfile.ZipFile(path) as zf:
        for name in sorted(zf.namelist()):
            label = name.split("/")[0]
            if name.endswith("/") or counts.get(label, 0) >= per_label:
                continue
            counts[label] = counts.get(label, 0) + 1
            out[name] = zf.read(name)
    return make_zip(out)


def jobs_on_disk(jobs_dir: Path) -> list[str]:
    """The job folders (named by UUID) under MASKLITE_JOBS_DIR; the embedded queue's files sit beside them."""
    return sorted(p.name for p in jobs_dir.glob("*-*-*-*-*") if p.is_dir()) if jobs_dir.is_dir() else []


# ------------------------------------------------------------------ servers


@pytest.fixture(scope="module")
def jobs_server(server_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    jobs_dir = tmp_path_factory.mktemp("jobs-main")
    return server_factory.start(
        {"MASKLITE_JOBS_DIR": str(jobs_dir), "MASKLITE_MAX_JOBS": "1", "MASKLITE_JOB_QUEUE": "1"},
        wait="/health/live",
    )


@pytest.fixture
def jc(jobs_server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=jobs_server.url, timeout=60) as c:
        yield c
        cancel_active(c)


@pytest.fixture(scope="module")
def keyed_server(server_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    jobs_dir = tmp_path_factory.mktemp("jobs-keyed")
    return server_factory.start(
        {"MASKLITE_JOBS_DIR": str(jobs_dir), "MASKLITE_API_KEY": API_KEY}, wait="/health/live"
    )


@pytest.fixture
def kc(keyed_server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=keyed_server.url, timeout=60, headers={"X-API-Key": API_KEY}) as c:
        yield c
        cancel_active(c)


# ------------------------------------------------------------------ lifecycle


def test_job_lifecycle_queued_running_done(jc: httpx.Client, jobs_server: Any) -> None:
    resp = jc.post("/v1/robustness", json=SMALL)
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["state"] == "queued"
    assert resp.headers["location"] == body["status_url"] == f"/v1/jobs/{body['job_id']}"
    states, progress = [], []
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        job = jc.get(body["status_url"]).json()
        states.append(job["state"])
        progress.append(job["progress"])
        if job["state"] not in ("queued", "running"):
            break
        time.sleep(0.05)
    assert job["state"] == "done", job["error"]
    seen = list(dict.fromkeys(states))
    assert seen in (["queued", "running", "done"], ["running", "done"], ["queued", "done"], ["done"])
    assert progress == sorted(progress) and job["progress"] == 1.0
    assert job["params"]["cells"] == 2 and job["params"]["evalset"]["source"] == "evalset.zip"
    result = job["result"]
    assert result["evalset"]["images"] == 20 and len(result["cells"]) == 2
    by_value = {c["value"]: c for c in result["cells"]}
    assert by_value[1.0]["accuracy"] == result["clean"]["accuracy"] and by_value[1.0]["changed_rate"] == 0.0
    assert set(job["artifacts"]) >= {"heatmap.png", "grid.csv", "grid.json", "ranking.csv"}

    png = jc.get(f"{body['status_url']}/heatmap.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    csv = jc.get(job["artifacts"]["grid.csv"])
    assert csv.status_code == 200 and csv.text.startswith("layer,layer_name,kind,value,accuracy")
    for bad in ("job.json", "..%2F..%2Fetc%2Fpasswd", "nothing.png"):
        r = jc.get(f"{body['status_url']}/artifacts/{bad}")
        assert r.status_code == 404 and "error" in r.json()

    listed = jc.get("/v1/jobs").json()
    assert body["job_id"] in [j["id"] for j in listed["jobs"]]
    assert listed["max_running"] == 1 and listed["queue_size"] == 1
    jobs_dir = Path(jobs_server.env["MASKLITE_JOBS_DIR"])
    assert (jobs_dir / body["job_id"] / "grid.csv").is_file()  # artifacts on the jobs folder
    assert (jobs_dir / "jobs.sqlite3").is_file()  # the records in the embedded store beside them
    assert jc.get("/v1/jobs/not-a-uuid").status_code == 404
    assert jc.get("/v1/jobs/00000000-0000-4000-8000-000000000000").json()["error"]["code"] == "job_not_found"


def test_partial_results_then_cancel_kills_the_worker(jc: httpx.Client, jobs_server: Any) -> None:
    before = set(worker_pids(jobs_server.proc.pid))
    job_id = jc.post("/v1/robustness", json=LONG).json()["job_id"]
    wait_state(jc, job_id, {"running"})
    pid = wait_for_worker(jobs_server.proc.pid, before)
    deadline = time.monotonic() + TIMEOUT_S
    job = {}
    while time.monotonic() < deadline:  # partial results appear while it runs
        job = jc.get(f"/v1/jobs/{job_id}").json()
        if job["partial"] and job["partial"]["cells"]:
            break
        time.sleep(0.5)
    assert job["state"] == "running" and 0 < job["progress"] < 1
    assert job["partial"]["cells_total"] == job["params"]["cells"]

    resp = jc.delete(f"/v1/jobs/{job_id}")
    assert resp.status_code == 200 and resp.json()["state"] == "cancelled"
    assert gone(pid), "the worker process survived the cancel"
    assert jc.get(f"/v1/jobs/{job_id}").json()["state"] == "cancelled"
    again = jc.delete(f"/v1/jobs/{job_id}")
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_finished"


def test_queue_full_answers_429_with_retry_after(jc: httpx.Client) -> None:
    running = jc.post("/v1/robustness", json=LONG).json()["job_id"]
    wait_state(jc, running, {"running"})
    queued = jc.post("/v1/robustness", json=SMALL).json()["job_id"]
    resp = jc.post("/v1/robustness", json=SMALL)
    assert resp.status_code == 429
    assert int(resp.headers["retry-after"]) > 0
    assert resp.json()["error"]["code"] == "job_queue_full"
    assert jc.get(f"/v1/jobs/{queued}").json()["state"] == "queued"
    assert jc.delete(f"/v1/jobs/{queued}").json()["state"] == "cancelled"
    assert jc.delete(f"/v1/jobs/{running}").json()["state"] == "cancelled"
    # room again
    ok = jc.post("/v1/robustness", json=SMALL)
    assert ok.status_code == 202
    assert wait_state(jc, ok.json()["job_id"], {"done", "failed"})["state"] == "done"


def test_killed_worker_fails_the_job_and_the_next_job_runs(jc: httpx.Client, jobs_server: Any) -> None:
    before = set(worker_pids(jobs_server.proc.pid))
    job_id = jc.post("/v1/robustness", json=LONG).json()["job_id"]
    wait_state(jc, job_id, {"running"})
    pid = wait_for_worker(jobs_server.proc.pid, before)
    os.kill(pid, signal.SIGKILL)
    job = wait_state(jc, job_id, {"done", "failed", "cancelled"}, timeout=30)
    assert job["state"] == "failed"
    assert "SIGKILL" in job["error"]
    assert jobs_server.alive()
    assert jc.get("/health/live").status_code == 200
    nxt = jc.post("/v1/robustness", json=SMALL).json()["job_id"]
    last = wait_state(jc, nxt, {"done", "failed"})
    assert last["state"] == "done", last["error"]


def test_restart_keeps_results_and_fails_interrupted_jobs(
    server_factory: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    jobs_dir = tmp_path_factory.mktemp("jobs-restart")
    env = {"MASKLITE_JOBS_DIR": str(jobs_dir)}
    first = server_factory.start(env, wait="/health/live")
    with httpx.Client(base_url=first.url, timeout=60) as c:
        done_id = c.post("/v1/robustness", json=SMALL).json()["job_id"]
        done = wait_state(c, done_id, {"done", "failed"})
        assert done["state"] == "done"
        before = set(worker_pids(first.proc.pid))
        running_id = c.post("/v1/robustness", json=LONG).json()["job_id"]
        wait_state(c, running_id, {"running"})
        pid = wait_for_worker(first.proc.pid, before)
    first.proc.kill()  # the hardest stop: no shutdown hook runs
    first.proc.wait(timeout=10)
    assert gone(pid, timeout=10), "the worker outlived its server"

    second = server_factory.start(env, wait="/health/live")
    try:
        with httpx.Client(base_url=second.url, timeout=60) as c:
            again = c.get(f"/v1/jobs/{done_id}").json()
            assert again["state"] == "done" and again["result"] == done["result"]
            assert c.get(f"/v1/jobs/{done_id}/heatmap.png").status_code == 200
            interrupted = c.get(f"/v1/jobs/{running_id}").json()
            assert interrupted["state"] == "failed" and "interrupted by restart" in interrupted["error"]
            assert {j["id"] for j in c.get("/v1/jobs").json()["jobs"]} == {done_id, running_id}
    finally:
        second.stop()


def test_several_server_processes_share_the_jobs(
    server_factory: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """MASKLITE_WORKERS=2: one process runs the jobs, every process submits and answers for them."""
    jobs_dir = tmp_path_factory.mktemp("jobs-workers")
    server = server_factory.start({"MASKLITE_JOBS_DIR": str(jobs_dir), "MASKLITE_WORKERS": "2"})
    try:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            ids = []
            for _ in range(2):
                resp = c.post("/v1/robustness", json=SMALL)
                assert resp.status_code == 202, resp.text
                ids.append(resp.json()["job_id"])
            for job_id in ids:
                assert wait_state(c, job_id, {"done", "failed"})["state"] == "done"
            listed = c.get("/v1/jobs").json()
            assert {j["id"] for j in listed["jobs"]} == set(ids) and listed["workers"] == 1
    finally:
        server.stop()


def test_unwritable_jobs_dir_is_a_clear_503_and_predict_still_works(
    server_factory: Any, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the jobs folder should be")
    server = server_factory.start({"MASKLITE_JOBS_DIR": str(blocker / "jobs")})
    try:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            resp = c.post("/v1/robustness", json=SMALL)
            assert resp.status_code == 503, resp.text
            err = resp.json()["error"]
            assert err["code"] == "jobs_storage_unavailable" and "MASKLITE_JOBS_DIR" in err["message"]
            assert "retry-after" in resp.headers
            pred = c.post("/v1/predict?detect_faces=false", files={"file": ("x.jpg", jpeg(), "image/jpeg")})
            assert pred.status_code == 200, pred.text
            assert len(pred.json()["faces"]) == 1
    finally:
        server.stop()


# ------------------------------------------------------------------ parameters, uploads, access


def test_api_key_is_required_on_job_routes(keyed_server: Any) -> None:
    with httpx.Client(base_url=keyed_server.url, timeout=30) as c:
        assert c.post("/v1/robustness", json=SMALL).status_code == 401
        assert c.get("/v1/jobs").status_code == 401
        wrong = c.post("/v1/robustness", json=SMALL, headers={"X-API-Key": "nope"})
        assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    "params,fragment",
    [
        ({"kinds": ["shuffle"]}, "kinds.0"),
        ({"scalars": []}, "scalars"),
        ({"layers": [999]}, "out of range"),
        ({"layers": ["no_such_layer"]}, "unknown layer"),
        ({"precision": "int4"}, "precision"),
        ({"bitflip_rates": [0.9]}, "bit-flip rate"),
        ({"surprise": 1}, "surprise"),
        ({"noise_sigmas": [-1]}, "noise sigma"),
    ],
)
def test_bad_parameters_are_422(kc: httpx.Client, params: dict, fragment: str) -> None:
    resp = kc.post("/v1/robustness", json=params)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "invalid_parameters"
    assert fragment in resp.json()["error"]["message"]


def _bad_zips(labels: list[str]) -> dict[str, tuple[bytes, str]]:
    a, b = labels[0], labels[1]
    good = {f"{a}/1.jpg": jpeg(), f"{b}/1.jpg": jpeg(200)}
    return {
        "traversal": (make_zip({**good, f"{a}/../../../tmp/evil.jpg": jpeg()}), "'..'"),
        "non_image": (make_zip({**good, f"{b}/readme.txt": b"not an image at all"}), "not a usable image"),
        "bomb": (make_zip({**good, f"{a}/huge.jpg": b"\0" * 6_000_000}, zipfile.ZIP_DEFLATED), "zip bomb"),
        "wrong_labels": (make_zip({"cat/1.jpg": jpeg(), "dog/1.jpg": jpeg()}), "labels must match"),
        "not_a_zip": (b"PK\x03\x04 definitely not a zip", "not a readable zip"),
    }


@pytest.mark.parametrize("case", ["traversal", "non_image", "bomb", "wrong_labels", "not_a_zip"])
def test_malformed_evalset_upload_is_422_and_nothing_is_written(
    kc: httpx.Client, keyed_server: Any, models_dir: Path, case: str
) -> None:
    import json as _json

    labels = _json.loads((models_dir / "model_card.json").read_text())["labels"]
    data, fragment = _bad_zips(labels)[case]
    jobs_dir = Path(keyed_server.env["MASKLITE_JOBS_DIR"])
    before, listed = jobs_on_disk(jobs_dir), len(kc.get("/v1/jobs").json()["jobs"])
    resp = kc.post(
        "/v1/robustness",
        files={"params": (None, _json.dumps(SMALL)), "evalset": ("set.zip", data, "application/zip")},
    )
    assert resp.status_code == 422, resp.text
    err = resp.json()["error"]
    assert err["code"] == "invalid_evalset" and fragment in err["message"]
    assert jobs_on_disk(jobs_dir) == before
    assert len(kc.get("/v1/jobs").json()["jobs"]) == listed
    assert not Path("/tmp/evil.jpg").exists()


def test_uploaded_evalset_runs_in_memory(kc: httpx.Client, keyed_server: Any, models_dir: Path) -> None:
    import json as _json

    upload = small_evalset(models_dir, per_label=5)
    resp = kc.post(
        "/v1/robustness",
        files={"params": (None, _json.dumps({**SMALL, "max_images": None})), "evalset": ("s.zip", upload)},
    )
    assert resp.status_code == 202, resp.text
    job = wait_state(kc, resp.json()["job_id"], {"done", "failed"})
    assert job["state"] == "done", job["error"]
    assert job["params"]["evalset"]["source"] == "upload" and job["params"]["evalset"]["images"] == 10
    assert "evalset_zip" not in job["params"]
    assert job["result"]["evalset"]["images"] == 10
    # the upload is kept in the job store only until the job starts: results and plots are in the job
    # folder, the upload is nowhere
    jobs_dir = Path(keyed_server.env["MASKLITE_JOBS_DIR"])
    assert not any(p.suffix == ".zip" or p.suffix == ".jpg" for p in (jobs_dir / job["id"]).iterdir())
    with sqlite3.connect(jobs_dir / "jobs.sqlite3") as db:
        assert db.execute("select count(*) from inputs where job_id = ?", (job["id"],)).fetchone() == (0,)


def test_multipart_with_an_unknown_part_is_422(kc: httpx.Client) -> None:
    resp = kc.post("/v1/robustness", files={"images": ("a.jpg", jpeg(), "image/jpeg")})
    assert resp.status_code == 422 and "unexpected multipart part" in resp.json()["error"]["message"]
    resp = kc.post("/v1/robustness", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert resp.status_code == 422 and "JSON object" in resp.json()["error"]["message"]


def test_job_list_filters(server_factory: Any, tmp_path: Path) -> None:
    """GET /v1/jobs?kind=&state=&limit= on a server of its own (it knows every job there): each filter keeps
    exactly the matching jobs, newest first, the counts stay totals, bad values are 422 envelopes."""
    server = server_factory.start({"MASKLITE_JOBS_DIR": str(tmp_path / "jobs")}, wait="/health/live")
    with httpx.Client(base_url=server.url, timeout=60) as c:
        done = c.post("/v1/robustness", json=SMALL).json()["job_id"]
        assert wait_state(c, done, {"done", "failed"})["state"] == "done"
        cancelled = c.post("/v1/robustness", json=LONG).json()["job_id"]
        wait_state(c, cancelled, {"running"})
        assert c.delete(f"/v1/jobs/{cancelled}").json()["state"] == "cancelled"

        def ids(**params: Any) -> list[str]:
            r = c.get("/v1/jobs", params=params)
            assert r.status_code == 200, r.text
            return [j["id"] for j in r.json()["jobs"]]

        assert ids() == [cancelled, done]  # newest first
        assert ids(state="done") == [done]
        assert ids(state="cancelled") == [cancelled]
        assert ids(state="running") == [] and ids(state="queued") == []
        assert ids(kind="robustness") == [cancelled, done]
        assert ids(kind="benchmark") == []
        assert ids(kind="robustness", state="done") == [done]
        assert ids(limit=1) == [cancelled]
        body = c.get("/v1/jobs", params={"state": "done"}).json()
        assert (body["running"], body["queued"]) == (0, 0)
        for bad in ({"state": "finished"}, {"limit": 0}, {"limit": 1001}, {"kind": "k" * 33}):
            r = c.get("/v1/jobs", params=bad)
            assert r.status_code == 422, (bad, r.text)
            assert set(r.json()) == {"error"} and r.json()["error"]["code"], r.text
    server.stop()
