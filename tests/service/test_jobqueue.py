"""service/jobqueue against its real backends: the embedded SQLite store and a real `redis-server` (Debian's,
started here on a free port with AOF persistence, as the scale deployment runs it). No mocks.

Each backend runs the same tests with two JobQueues in this process, as two replicas would: `api` submits,
reads and cancels (no runner), `worker` runs the jobs in spawned processes. Store-level tests cover what
the API tests cannot reach: the queue bound under races, cancel-vs-finish, claims, input TTLs, the lease
reaper.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from service.jobqueue.job_runner import HOSTNAME
from service.jobqueue.model import FINISHED, Job, QueueFull, register_job_kind
from service.jobqueue.queue import LOST, JobQueue
from service.jobqueue.store import JobStore, RedisStore, SqliteStore
from tests.conftest import REPO_ROOT, free_port, skip_or_fail

TIMEOUT_S = 60


# ------------------------------------------------------------------ job kinds (spawn imports them)


def sleepy(params: dict[str, Any], progress: Callable[[float, dict | None], None], out_dir: Path) -> dict:
    """`steps` steps of `dt` seconds with progress and partial results; echoes the size of an upload."""
    started = time.time()
    steps, dt = int(params.get("steps", 5)), float(params.get("dt", 0.05))
    for i in range(steps):
        time.sleep(dt)
        progress((i + 1) / steps, {"done_steps": i + 1})
    (out_dir / "steps.json").write_text(json.dumps({"steps": steps}))
    (out_dir / "not an artifact.exe").write_text("never listed")
    return {"steps": steps, "blob": len(params.get("blob", b"")), "start": started, "end": time.time()}


register_job_kind("test-sleep", f"{__name__}:sleepy")
register_job_kind("test-alone", f"{__name__}:sleepy", exclusive=True)


# ------------------------------------------------------------------ a real redis-server


class RedisServer:
    """Debian's redis-server on a free loopback port, AOF on (fsync always: a restart keeps every write)."""

    def __init__(self, workdir: Path):
        self.exe = shutil.which("redis-server")
        self.port = free_port()
        self.dir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        cmd = [str(self.exe), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
               "--appendonly", "yes", "--appendfsync", "always", "--save", ""]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not answer")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    if server.exe is None:
        skip_or_fail("redis-server not installed (apt-get install redis-server; .ci/run installs it)")
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str | None, Path]]:
    """(broker URL or None, jobs dir); each test gets an empty store."""
    if request.param == "sqlite":
        yield None, tmp_path / "jobs"
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    RedisStore(server.url).r.flushdb()
    yield server.url, tmp_path / "jobs"


@pytest.fixture
def store(backend: tuple[str | None, Path]) -> Iterator[JobStore]:
    url, jobs_dir = backend
    s: JobStore = RedisStore(url) if url else SqliteStore(jobs_dir / "jobs.sqlite3")
    yield s
    s.close()


def new_queue(backend: tuple[str | None, Path], run_jobs: bool, **kw: Any) -> JobQueue:
    url, jobs_dir = backend
    queue = JobQueue(jobs_dir, broker_url=url, run_jobs=run_jobs, lease_s=kw.pop("lease_s", 8), **kw)
    queue.start()
    return queue


@pytest.fixture
def pair(backend: tuple[str | None, Path]) -> Iterator[tuple[JobQueue, JobQueue]]:
    """(api, worker): two replicas of one deployment; the worker runs 2 jobs at once."""
    worker = new_queue(backend, run_jobs=True, max_running=2, queue_size=2, lease_s=4)
    api = new_queue(backend, run_jobs=False, max_running=2, queue_size=2, lease_s=4)
    yield api, worker
    for q in (api, worker):
        for job in q.list():
            if job.state not in FINISHED:
                q.cancel(job.id)
    api.close()
    worker.close()


def wait_for(queue: JobQueue, job_id: str, states: set[str], timeout: float = TIMEOUT_S) -> Job:
    deadline = time.monotonic() + timeout
    job = None
    while time.monotonic() < deadline:
        job = queue.get(job_id)
        if job is not None and job.state in states:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {states}: {job}")


def job(kind: str = "test-sleep", state: str = "queued", **kw: Any) -> Job:
    import uuid

    kw.setdefault("created", time.time())
    return Job(id=str(uuid.uuid4()), kind=kind, state=state, **kw)


# ------------------------------------------------------------------ the store


def test_store_bounds_the_active_jobs_atomically(store: JobStore) -> None:
    first, second, third = job(), job(), job()
    assert store.create(first, b"in", max_active=2, input_ttl_s=60)
    assert store.create(second, None, max_active=2, input_ttl_s=60)
    assert not store.create(third, None, max_active=2, input_ttl_s=60)  # full
    assert store.get(third.id) is None
    assert store.counts() == {"running": 0, "queued": 2}
    assert store.finish(first.id, "cancelled", error="by the test")
    assert store.create(third, None, max_active=2, input_ttl_s=60)  # room again
    assert [j.id for j in store.jobs()] == [third.id, second.id, first.id]  # newest first


def test_store_first_transition_wins(store: JobStore) -> None:
    j = job()
    store.create(j, None, 10, 60)
    assert store.claim(j.id, "w1:1:1")  # a runner took its message
    assert not store.claim(j.id, "w2:2:2")  # a duplicate message elsewhere: not its job
    assert not store.start(j.id, "w2:2:2")
    assert store.start(j.id, "w1:1:1")
    assert not store.start(j.id, "w1:1:1")  # only a queued job starts
    assert store.heartbeat(j.id, "w1:1:1", {"progress": 0.5, "partial": {"x": 1}}) == "running"
    assert store.heartbeat(j.id, "w2:2:2", {"progress": 0.9}) == "lost"  # not its job: not applied
    assert store.get(j.id).progress == 0.5
    assert store.finish(j.id, "cancelled", error="cancelled by the client")  # a replica cancels ...
    assert store.heartbeat(j.id, "w1:1:1") == "cancelled"  # ... the runner learns it with its heartbeat
    assert not store.finish(j.id, "done", result={"late": True}, worker="w1:1:1")  # and cannot overwrite
    final = store.get(j.id)
    assert final.state == "cancelled" and final.result is None and final.partial == {"x": 1}


def test_store_inputs_are_taken_once_and_expire(store: JobStore) -> None:
    kept, expiring = job(), job()
    store.create(kept, pickle.dumps({"blob": b"x" * 1000}), 10, input_ttl_s=60)
    store.create(expiring, b"soon gone", 10, input_ttl_s=1)
    assert pickle.loads(store.take_inputs(kept.id)) == {"blob": b"x" * 1000}
    assert store.take_inputs(kept.id) is None  # deleted once taken
    time.sleep(2.1)
    store.sweep()
    assert store.take_inputs(expiring.id) is None


def test_store_workers_and_prune(store: JobStore) -> None:
    store.register_worker("a:1:1", 2)
    store.register_worker("b:1:1", 1)
    assert store.workers(lease_s=5) == {"a:1:1": 2, "b:1:1": 1}
    store.unregister_worker("b:1:1")
    assert store.workers(lease_s=5) == {"a:1:1": 2}
    ids = []
    for _ in range(4):
        j = job()
        store.create(j, None, 10, 60)
        store.finish(j.id, "done", result={})
        ids.append(j.id)
        time.sleep(0.01)
    active = job()
    store.create(active, None, 10, 60)
    assert sorted(store.prune(keep=2)) == sorted(ids[:2])  # the oldest finished; never an active one
    assert {j.id for j in store.jobs()} == {*ids[2:], active.id}


# ------------------------------------------------------------------ two replicas, one queue


def test_job_runs_on_the_worker_and_every_replica_sees_it(pair: tuple[JobQueue, JobQueue]) -> None:
    api, worker = pair
    submitted = api.submit("test-sleep", {"steps": 20, "dt": 0.1, "blob": b"z" * 50_000}, {"steps": 20})
    running = wait_for(api, submitted.id, {"running"})
    assert running.worker_host == HOSTNAME and running.params == {"steps": 20}
    assert api.store.take_inputs(submitted.id) is None  # the upload left the store when the job started
    seen = wait_for(api, submitted.id, {"running"})
    deadline = time.monotonic() + TIMEOUT_S
    while not (seen.partial and seen.progress > 0) and time.monotonic() < deadline:
        seen = api.get(submitted.id)
        time.sleep(0.1)
    assert 0 < seen.progress <= 1 and seen.partial["done_steps"] >= 1  # progress from the worker
    done = wait_for(api, submitted.id, {"done", "failed"})
    assert done.state == "done", done.error
    assert done.result["blob"] == 50_000 and done.progress == 1.0
    assert done.artifacts == ["steps.json"]  # only safe names
    assert api.artifacts.path(done.id, "steps.json", done.artifacts).read_text() == '{"steps": 20}'
    assert api.artifacts.path(done.id, "../jobs.sqlite3", done.artifacts) is None
    assert worker.get(done.id).state == "done"  # the same record from the other side


def wait_for_steps(api: JobQueue, job_id: str, steps: int) -> int:
    """The job's done_steps (its partial result) once it reaches `steps`."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        done_steps = (api.get(job_id).partial or {}).get("done_steps", 0)
        if done_steps >= steps:
            return done_steps
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach {steps} steps in {TIMEOUT_S} s")


def test_cancel_through_one_replica_kills_the_job_on_the_worker(pair: tuple[JobQueue, JobQueue]) -> None:
    api, worker = pair
    # ~28 h of steps: it never ends on its own, so the exclusive job below can only run once it is killed
    long = api.submit("test-sleep", {"steps": 1_000_000, "dt": 0.1})
    wait_for(api, long.id, {"running"})
    queued = api.submit("test-alone", {"steps": 1})  # exclusive: waits for the long one to leave the host
    # events, not a clock: while the long job makes 5 more steps, the exclusive one stays queued
    steps_then = wait_for_steps(api, long.id, 1)
    wait_for_steps(api, long.id, steps_then + 5)
    assert api.get(queued.id).state == "queued"
    assert worker.cancel(long.id).state == "cancelled"  # cancelled on the "other" replica
    assert api.get(long.id).error == "cancelled by the client"
    done = wait_for(api, queued.id, {"done", "failed"})  # the host is free again: the long job was killed
    assert done.state == "done", done.error
    assert api.get(long.id).state == "cancelled"


def test_exclusive_jobs_never_overlap_with_others(pair: tuple[JobQueue, JobQueue]) -> None:
    api, _ = pair
    shared = api.submit("test-sleep", {"steps": 10, "dt": 0.1})
    alone = api.submit("test-alone", {"steps": 5, "dt": 0.1})
    results = [wait_for(api, j.id, {"done", "failed"}) for j in (shared, alone)]
    assert all(r.state == "done" for r in results), [r.error for r in results]
    a, b = (r.result for r in results)
    assert a["end"] <= b["start"] or b["end"] <= a["start"], (a, b)  # one after the other


def test_queue_bound_counts_the_live_workers_slots(pair: tuple[JobQueue, JobQueue]) -> None:
    api, _ = pair
    assert api.capacity() == 2 and api.workers() == 1
    jobs = [api.submit("test-sleep", {"steps": 600, "dt": 0.1}) for _ in range(4)]  # 2 running + 2 queued
    with pytest.raises(QueueFull):
        api.submit("test-sleep", {"steps": 1})
    api.cancel(jobs[-1].id)
    api.submit("test-sleep", {"steps": 1})  # room again


def test_reaper_fails_a_job_whose_worker_went_silent(backend: tuple[str | None, Path]) -> None:
    api = new_queue(backend, run_jobs=False, lease_s=3)
    try:
        j = job(state="queued")
        api.store.create(j, None, 10, 60)
        assert api.store.claim(j.id, "gone-host:1:1") and api.store.start(j.id, "gone-host:1:1")
        # a worker on another machine took it, then died
        time.sleep(3.5)
        api.reap()
        failed = api.get(j.id)
        assert failed.state == "failed" and failed.error.startswith(LOST.split("{")[0]), failed.error
        assert "gone-host" in failed.error
    finally:
        api.close()


def test_a_claimed_job_whose_runner_died_is_queued_again(pair: tuple[JobQueue, JobQueue]) -> None:
    """A runner took the message, then died before starting the job (waiting for the host lock): the
    reaper gives the job back to the queue and a live runner runs it. Never lost."""
    api, _ = pair
    j = job()
    api.store.create(j, pickle.dumps({"steps": 1}), 10, 60)  # as submit does, minus the message it ate
    assert api.store.claim(j.id, "gone-host:1:1")
    time.sleep(api.lease_s + 0.5)
    api.reap()
    assert wait_for(api, j.id, {"done", "failed"}).state == "done"


def test_the_store_is_the_queue(pair: tuple[JobQueue, JobQueue]) -> None:
    """Writing the record queues the job (one atomic write: no message to lose beside it), and runners take
    the oldest queued job no one holds."""
    api, _ = pair
    j = job()
    api.store.create(j, pickle.dumps({"steps": 1}), 10, 60)  # nothing else: no message, no reaper
    assert wait_for(api, j.id, {"done", "failed"}).state == "done"


def test_claim_next_takes_the_oldest_unclaimed_job(store: JobStore) -> None:
    first, second, cancelled = job(), job(), job()
    for j in (first, second, cancelled):
        store.create(j, None, 10, 60)
        time.sleep(0.01)
    store.finish(cancelled.id, "cancelled")
    assert store.claim(second.id, "w1:1:1")  # held by another runner already
    taken = store.claim_next("w2:2:2")
    assert taken is not None and taken.id == first.id and taken.worker == "w2:2:2"
    assert store.claim_next("w2:2:2") is None  # second is held, cancelled is finished
    assert store.unclaim(second.id, "w1:1:1")  # its runner let go: queued again
    assert store.claim_next("w2:2:2").id == second.id


def test_queued_jobs_survive_a_restart_running_ones_fail(backend: tuple[str | None, Path]) -> None:
    first = new_queue(backend, run_jobs=True)
    running = first.submit("test-sleep", {"steps": 600, "dt": 0.1})
    wait_for(first, running.id, {"running"})
    queued = first.submit("test-sleep", {"steps": 2})
    first.close()
    interrupted = first.store.get(running.id) if backend[0] else None
    second = new_queue(backend, run_jobs=True)
    try:
        failed = second.get(running.id)
        assert failed.state == "failed" and "interrupted by restart" in failed.error
        assert interrupted is None or interrupted.state == "failed"
        done = wait_for(second, queued.id, {"done", "failed"})
        assert done.state == "done", done.error
    finally:
        second.close()


def test_redis_restart_keeps_finished_and_queued_jobs(redis_server: RedisServer, tmp_path: Path) -> None:
    backend = (redis_server.url, tmp_path / "jobs")
    RedisStore(redis_server.url).r.flushdb()
    api = new_queue(backend, run_jobs=False)
    try:
        finished = api.submit("test-sleep", {"steps": 1})
        worker = new_queue(backend, run_jobs=True)
        wait_for(api, finished.id, {"done"})
        worker.close()  # no runner: the next one waits in the queue
        waiting = api.submit("test-sleep", {"steps": 1, "blob": b"kept"}, {"steps": 1})
        redis_server.stop()
        with pytest.raises(Exception, match="broker unreachable"):
            api.get(finished.id)
        redis_server.start()  # AOF replayed
        assert api.get(finished.id).state == "done" and api.get(finished.id).result["steps"] == 1
        worker = new_queue(backend, run_jobs=True)
        done = wait_for(api, waiting.id, {"done", "failed"})
        assert done.state == "done" and done.result["blob"] == 4
        worker.close()
    finally:
        api.close()


def test_embedded_queue_needs_no_broker_and_one_runner_per_folder(tmp_path: Path) -> None:
    """Several processes on one jobs folder (uvicorn workers): one runs jobs, all submit and read."""
    backend = (None, tmp_path / "jobs")
    a, b = new_queue(backend, run_jobs=True), new_queue(backend, run_jobs=True)
    try:
        assert (a.runner is None) != (b.runner is None)
        j = b.submit("test-sleep", {"steps": 2})
        assert wait_for(a, j.id, {"done", "failed"}).state == "done"
        assert (tmp_path / "jobs" / "jobs.sqlite3").is_file()  # records and queue in one file
        # the job's own files, in its own folder (the queue's files stay in the jobs folder's root)
        assert sorted(os.listdir(tmp_path / "jobs" / j.id)) == ["not an artifact.exe", "steps.json"]
    finally:
        a.close()
        b.close()


# ------------------------------------------------------------------ `python -m service worker --check`


def _worker_env(backend: tuple[str | None, Path], **extra: str) -> dict[str, str]:
    url, jobs_dir = backend
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASKLITE_")}
    env.update(MASKLITE_JOBS_DIR=str(jobs_dir), MASKLITE_JOB_LEASE_S="4", PYTHONUNBUFFERED="1", **extra)
    if url:
        env["MASKLITE_BROKER_URL"] = url
    return env


def _check(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "service", "worker", "--check"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_worker_check_follows_a_real_worker(backend: tuple[str | None, Path], tmp_path: Path) -> None:
    """The container health check: unhealthy with no worker, ok once `python -m service worker` runs on this
    host, unhealthy again after it stopped (it unregisters), unhealthy when the broker is unreachable."""
    env = _worker_env(backend)
    Path(env["MASKLITE_JOBS_DIR"]).mkdir(parents=True, exist_ok=True)
    none = _check(env)
    assert none.returncode == 1 and none.stdout.startswith(f"unhealthy: 0 worker(s) on {HOSTNAME}"), none
    with open(tmp_path / "worker.log", "wb") as log:  # the child keeps its own copy of the descriptor
        worker = subprocess.Popen(
            [sys.executable, "-m", "service", "worker"], cwd=REPO_ROOT, env=env, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + TIMEOUT_S
        ok = _check(env)
        while ok.returncode != 0 and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            ok = _check(env)
        assert ok.returncode == 0, (ok, (tmp_path / "worker.log").read_text()[-3000:])
        assert ok.stdout.startswith(f"ok: 1 worker(s) on {HOSTNAME}"), ok.stdout
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert worker.returncode == 0, (tmp_path / "worker.log").read_text()[-3000:]
    gone = _check(env)
    assert gone.returncode == 1 and "unhealthy: 0 worker(s)" in gone.stdout, gone


def test_worker_check_with_the_broker_down(tmp_path: Path) -> None:
    env = _worker_env((f"redis://127.0.0.1:{free_port()}/0", tmp_path / "jobs"))
    down = _check(env)
    assert down.returncode == 1 and down.stdout.startswith("unhealthy: "), down
    assert "Traceback" not in down.stderr, down.stderr
