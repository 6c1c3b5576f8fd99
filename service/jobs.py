"""Background jobs (robustness grids, benchmarks) run in their own processes, outside the request path.

    register_job_kind("robustness", fn)     fn(params, progress, out_dir) -> result dict
    manager = JobManager(jobs_dir, ...)     one per app, started and closed by the jobs router's lifespan
    job = manager.submit(kind, params, public_params)

`fn` must be a module-level function (it is pickled by reference into a fresh `spawn` process). It calls
`progress(fraction, partial)` as it goes; `partial` (a JSON-able dict, or None) becomes visible in
GET /v1/jobs/{id}. Whatever it writes into `out_dir` (PNG, CSV, JSON with safe names) is listed as the
job's artifacts when it finishes; its return value is the job's result.

Scheduling: at most `max_running` jobs at once (default 1, so a benchmark never measures a robustness job),
at most `queue_size` waiting; beyond that `submit` raises QueueFull (the router answers 429 +
Retry-After). A worker runs in its own process group with a lower CPU priority (nice), so /v1/predict
keeps its cores; cancel kills the whole group. A worker that dies (OOM killer, kill -9) fails its job with
the reason and the next job starts. Every state change is written to <jobs_dir>/<uuid>/job.json (atomic
rename); after a restart finished jobs are listed again and jobs that were queued or running become
failed "interrupted by restart". Job ids are server-made UUIDs; no client string is ever a path.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import multiprocessing
import os
import re
import shutil
import signal
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

log = logging.getLogger("masklite.jobs")

JobFn = Callable[[dict[str, Any], Callable[[float, "dict | None"], None], Path], dict[str, Any]]
_KINDS: dict[str, JobFn] = {}

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
ACTIVE = (QUEUED, RUNNING)
FINISHED = (DONE, FAILED, CANCELLED)
JOB_FILE = "job.json"
ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\.(png|csv|json|txt|md)$")
INTERRUPTED = "interrupted by restart: the server stopped while this job was {state}"
PARTIAL_EVERY_S = 1.0  # a worker sends its partial result at most this often; fractions always
PERSIST_EVERY_S = 2.0  # job.json is rewritten at most this often while a job runs
FOREIGN_OWNER = "another server process owns this jobs folder (jobs need MASKLITE_WORKERS=1)"
EXIT_GRACE_S = 30.0  # a worker that lingers this long after its result is killed


def register_job_kind(name: str, fn: JobFn) -> None:
    """Make `name` submittable. `fn` must be importable by module and name (spawn pickles it by reference)."""
    if not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", name):
        raise ValueError(f"bad job kind name {name!r}")
    _KINDS[name] = fn


def job_kinds() -> list[str]:
    return sorted(_KINDS)


class JobError(Exception):
    """Base for submission problems the router turns into an HTTP error."""


class QueueFull(JobError):
    pass


class StorageUnavailable(JobError):
    pass


class UnknownKind(JobError):
    pass


@dataclass
class Job:
    id: str
    kind: str
    state: str
    created: float
    params: dict[str, Any] = field(default_factory=dict)  # what the client asked, JSON-able, no uploads
    progress: float = 0.0
    partial: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    started: float | None = None
    finished: float | None = None
    artifacts: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "progress": round(self.progress, 4),
            "created": _iso(self.created),
            "started": _iso(self.started),
            "finished": _iso(self.finished),
            "error": self.error,
        }
        if self.started:
            out["elapsed_s"] = round((self.finished or time.time()) - self.started, 2)
        return out

    def detail(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "params": self.params,
            "artifacts": list(self.artifacts),
            "partial": self.partial if self.state in ACTIVE or self.result is None else None,
            "result": self.result,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "created": self.created,
            "params": self.params,
            "progress": self.progress,
            "partial": self.partial,
            "result": self.result,
            "error": self.error,
            "started": self.started,
            "finished": self.finished,
            "artifacts": self.artifacts,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__ if k in data})  # type: ignore[arg-type]


def _iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass
class _Running:
    process: Any  # multiprocessing.Process (spawn)
    conn: Connection
    cancelled: bool = False


class JobManager:
    """Owns the queue, the worker processes and the job records. Thread-safe; no asyncio needed."""

    def __init__(
        self,
        jobs_dir: Path,
        max_running: int = 1,
        queue_size: int = 4,
        keep: int = 200,
        nice: int = 10,
        retry_after_s: int = 10,
    ):
        self.jobs_dir = Path(jobs_dir)
        self.max_running = max(1, max_running)
        self.queue_size = max(0, queue_size)
        self.keep = keep
        self.nice = nice
        self.retry_after_s = retry_after_s
        self.storage_error: str | None = None
        self._jobs: dict[str, Job] = {}
        self._inputs: dict[str, dict[str, Any]] = {}  # params for the worker (may hold uploads), in memory
        self._queue: list[str] = []
        self._running: dict[str, _Running] = {}
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = False
        self._last_persist: dict[str, float] = {}
        self._exiting: list[tuple[Any, float]] = []
        self._owner = False
        self._foreign_owner = False
        self._owner_fd: int | None = None
        self._ctx = multiprocessing.get_context("spawn")
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._load()
        self._thread = threading.Thread(target=self._loop, name="job-manager", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop every worker; running and queued jobs are recorded as interrupted."""
        with self._lock:
            self._stopping = True
            active = list(self._running) + list(self._queue)
            for job_id in list(self._running):
                self._kill(job_id)
            for process, _ in self._exiting:
                _kill_group(process.pid)
            for job_id in active:
                job = self._jobs[job_id]
                self._finish(job, FAILED, error=INTERRUPTED.format(state=job.state))
            self._queue.clear()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._owner_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._owner_fd)  # releases the lock
            self._owner_fd = None

    def _load(self) -> None:
        """Read earlier jobs; the ones that never finished are failed: their worker died with the server."""
        try:
            self.jobs_dir.mkdir(parents=True, exist_ok=True)
            self._check_writable()
            self._take_ownership()
        except OSError as exc:
            self.storage_error = f"{type(exc).__name__}: {exc.strerror or exc}"
            log.error("jobs directory %s is not usable (%s): job submission is disabled", self.jobs_dir, exc)
        if not self.jobs_dir.is_dir():
            return
        for path in sorted(self.jobs_dir.glob(f"*/{JOB_FILE}")):
            try:
                job = Job.from_json(json.loads(path.read_text()))
                uuid.UUID(job.id)
                if path.parent.name != job.id:
                    raise ValueError("folder name does not match the job id")
            except (OSError, ValueError, TypeError) as exc:
                log.warning("skipping unreadable job record %s: %s", path, exc)
                continue
            if job.state in ACTIVE and self._owner:
                job.error = INTERRUPTED.format(state=job.state)
                job.state, job.finished = FAILED, job.finished or time.time()
                self._persist(job, force=True)
            self._jobs[job.id] = job
        if self._jobs:
            log.info("jobs: %d earlier job(s) listed from %s", len(self._jobs), self.jobs_dir)

    def _take_ownership(self) -> None:
        """One server process per jobs folder: with several uvicorn workers only the first runs jobs (the
        others answer 503 on submission) and nobody marks a sibling's running jobs as interrupted."""
        fd = os.open(self.jobs_dir / ".owner.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            self._foreign_owner = True
            self.storage_error = FOREIGN_OWNER
            log.error("jobs: %s: %s", self.jobs_dir, FOREIGN_OWNER)
            return
        self._owner_fd = fd  # held (and the lock with it) until this process exits
        self._owner = True

    def _check_writable(self) -> None:
        probe = self.jobs_dir / f".probe-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()

    # ------------------------------------------------------------ API used by the routers

    def submit(self, kind: str, params: dict[str, Any], public_params: dict[str, Any] | None = None) -> Job:
        """Queue a job. `params` go to the worker (uploads allowed, never written to disk); `public_params`
        are what GET shows and job.json stores (defaults to `params`, which must then be JSON-able)."""
        if kind not in _KINDS:
            raise UnknownKind(f"unknown job kind {kind!r}")
        with self._lock:
            if self._stopping:
                raise StorageUnavailable("the server is shutting down")
            if self._foreign_owner:
                raise StorageUnavailable(FOREIGN_OWNER)
            if len(self._queue) >= self.queue_size and len(self._running) >= self.max_running:
                raise QueueFull(
                    f"{len(self._running)} job(s) running and {len(self._queue)} queued (the limit); "
                    f"retry later"
                )
            job = Job(
                id=str(uuid.uuid4()),
                kind=kind,
                state=QUEUED,
                created=time.time(),
                params=public_params if public_params is not None else params,
            )
            try:
                self.jobs_dir.mkdir(parents=True, exist_ok=True)
                if not self._owner:  # the folder was unusable at start and may be fixed now
                    self._take_ownership()
                    if self._foreign_owner:
                        raise StorageUnavailable(FOREIGN_OWNER)
                (self.jobs_dir / job.id).mkdir()
                self._write(job)
            except OSError as exc:
                shutil.rmtree(self.jobs_dir / job.id, ignore_errors=True)
                self.storage_error = f"{type(exc).__name__}: {exc.strerror or exc}"
                log.error("cannot store job results under %s: %s", self.jobs_dir, exc)
                raise StorageUnavailable(
                    f"job results cannot be stored ({self.storage_error}); check MASKLITE_JOBS_DIR"
                ) from exc
            self.storage_error = None
            self._jobs[job.id] = job
            self._inputs[job.id] = params
            self._queue.append(job.id)
            self._prune()
        self._wake.set()
        log.info("job %s (%s) queued", job.id, kind)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def list(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created, reverse=True)

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued or running job (its worker process group is killed). Finished jobs are left."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.state in FINISHED:
                return job
            if job.id in self._queue:
                self._queue.remove(job.id)
            elif job.id in self._running:
                self._kill(job.id)
            self._finish(job, CANCELLED, error="cancelled by the client")
        self._wake.set()
        return job

    def artifact_path(self, job_id: str, name: str) -> Path | None:
        """The file for an artifact the job itself listed; anything else is None."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or name not in job.artifacts or not ARTIFACT_NAME.match(name):
                return None
        path = self.jobs_dir / job.id / name
        return path if path.is_file() else None

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"running": len(self._running), "queued": len(self._queue)}

    # ------------------------------------------------------------ scheduling

    def _reap(self) -> None:
        """Join finished workers; kill one that lingers after reporting its result."""
        still = []
        for process, deadline in self._exiting:
            if not process.is_alive():
                process.join(timeout=0)
            elif time.monotonic() > deadline:
                _kill_group(process.pid)
                still.append((process, deadline + EXIT_GRACE_S))
            else:
                still.append((process, deadline))
        self._exiting = still

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
                self._reap()
                while self._queue and len(self._running) < self.max_running:
                    self._start(self._queue.pop(0))
                waitables: list[Any] = []
                owners: dict[Any, str] = {}
                for job_id, run in self._running.items():
                    for w in (run.conn, run.process.sentinel):
                        waitables.append(w)
                        owners[w] = job_id
            self._wake.clear()
            if not waitables:
                self._wake.wait(0.5)
                continue
            try:
                ready = wait(waitables, timeout=0.5)
            except (OSError, ValueError):  # a connection closed by cancel() meanwhile
                continue
            for job_id in dict.fromkeys(owners[w] for w in ready):
                self._service(job_id)

    def _start(self, job_id: str) -> None:
        job = self._jobs[job_id]
        params = self._inputs.pop(job_id, {})
        parent, child = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=_worker_main,
            args=(_KINDS[job.kind], params, str(self.jobs_dir / job.id), child, self.nice, os.getpid()),
            name=f"masklite-job-{job.kind}",
        )
        try:
            process.start()
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory or pids: fail this job, keep serving
            child.close()
            parent.close()
            self._finish(job, FAILED, error=f"could not start a worker process: {exc}")
            return
        child.close()
        self._running[job_id] = _Running(process, parent)
        job.state, job.started = RUNNING, time.time()
        self._persist(job, force=True)
        log.info("job %s (%s) running in worker pid %s", job.id, job.kind, process.pid)

    def _service(self, job_id: str) -> None:
        """Drain a worker's messages; handle its exit."""
        with self._lock:
            run = self._running.get(job_id)
            job = self._jobs.get(job_id)
            if run is None or job is None:
                return
            while True:
                try:
                    if not run.conn.poll():
                        break
                    msg = run.conn.recv()
                except (EOFError, OSError):
                    break
                self._handle(job, msg)
            if job.state in FINISHED or not run.process.is_alive():
                run.process.join(timeout=1)
                if job.state not in FINISHED:
                    self._finish(job, FAILED, error=_death_reason(run.process.exitcode))
                if run.process.is_alive():  # still tearing down after its result: reap it later
                    self._exiting.append((run.process, time.monotonic() + EXIT_GRACE_S))
                run.conn.close()
                self._running.pop(job_id, None)
                self._wake.set()

    def _handle(self, job: Job, msg: tuple) -> None:
        kind = msg[0]
        if kind == "progress":
            job.progress = float(min(max(msg[1], 0.0), 1.0))
            if msg[2] is not None:
                job.partial = msg[2]
            self._persist(job)
        elif kind == "done":
            job.result = msg[1]
            self._finish(job, DONE)
        elif kind == "error":
            self._finish(job, FAILED, error=msg[1])
            log.warning("job %s failed: %s\n%s", job.id, msg[1], msg[2])

    def _finish(self, job: Job, state: str, error: str | None = None) -> None:
        if job.state in FINISHED:
            return
        job.state, job.finished = state, time.time()
        if error:
            job.error = error
        if state == DONE:
            job.progress = 1.0
        job.artifacts = self._list_artifacts(job.id)
        self._inputs.pop(job.id, None)
        self._persist(job, force=True)
        log.info("job %s (%s) %s%s", job.id, job.kind, state, f": {error}" if error else "")

    def _kill(self, job_id: str) -> None:
        run = self._running.get(job_id)
        if run is None:
            return
        run.cancelled = True
        _kill_group(run.process.pid)
        run.process.join(timeout=5)
        run.conn.close()
        self._running.pop(job_id, None)

    def _list_artifacts(self, job_id: str) -> list[str]:
        folder = self.jobs_dir / job_id
        try:
            return sorted(
                p.name
                for p in folder.iterdir()
                if p.name != JOB_FILE and ARTIFACT_NAME.match(p.name) and p.is_file() and not p.is_symlink()
            )
        except OSError:
            return []

    def _prune(self) -> None:
        finished = sorted((j for j in self._jobs.values() if j.state in FINISHED), key=lambda j: j.created)
        for job in finished[: max(0, len(finished) - self.keep)]:
            self._jobs.pop(job.id, None)
            shutil.rmtree(self.jobs_dir / job.id, ignore_errors=True)

    # ------------------------------------------------------------ persistence

    def _persist(self, job: Job, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_persist.get(job.id, 0.0) < PERSIST_EVERY_S:
            return
        self._last_persist[job.id] = now
        try:
            self._write(job)
        except OSError as exc:  # a full disk must not take the job (or the server) down
            log.error("cannot write %s for job %s: %s", JOB_FILE, job.id, exc)

    def _write(self, job: Job) -> None:
        path = self.jobs_dir / job.id / JOB_FILE
        tmp = path.with_name(JOB_FILE + ".tmp")
        tmp.write_text(json.dumps(job.to_json(), allow_nan=False, default=str))
        tmp.replace(path)


def _kill_group(pid: int | None) -> None:
    """SIGKILL a worker and its process group (it leads one: this also ends any pool it started)."""
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def _death_reason(code: int | None) -> str:
    if code is None:
        return "the worker process did not exit cleanly"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"the worker process was killed by {name}{hint} before finishing"
    return f"the worker process exited with code {code} before finishing"


# ------------------------------------------------------------------ the worker process


def _worker_main(
    fn: JobFn, params: dict[str, Any], out_dir: str, conn: Connection, nice: int, server_pid: int
) -> None:
    """Entry point of a job process (spawned: a clean interpreter, no server state)."""
    _watch_parent(server_pid)  # first: the server may have died while this process was importing
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)  # own process group: cancel kills the job and every process it started
    if nice:
        with contextlib.suppress(OSError):
            os.nice(nice)
    # run at most as many threads as we were given: BLAS/OpenCV would otherwise grab every core
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    lock = threading.Lock()
    last_partial = [0.0]
    pending: list[dict | None] = [None]

    def progress(fraction: float, partial: dict | None = None) -> None:
        now = time.monotonic()
        with lock:
            if partial is not None:
                pending[0] = partial
            send = None
            if pending[0] is not None and (now - last_partial[0] >= PARTIAL_EVERY_S or fraction >= 1.0):
                send, pending[0], last_partial[0] = pending[0], None, now
            conn.send(("progress", float(fraction), _jsonable(send)))

    try:
        result = fn(params, progress, Path(out_dir))
        with lock:
            if pending[0] is not None:
                conn.send(("progress", 1.0, _jsonable(pending[0])))
            conn.send(("done", _jsonable(result)))
    except BaseException as exc:  # noqa: BLE001 - report every failure, then exit
        message = f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            conn.send(("error", message[:2000], traceback.format_exc()[-8000:]))
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def _watch_parent(server_pid: int) -> None:
    """Exit when the server process dies (kill -9 included), so no orphan keeps a core busy."""

    def orphaned() -> bool:
        return os.getppid() != server_pid  # re-parented to init (or a subreaper): the server is gone

    def die() -> None:
        with contextlib.suppress(OSError):
            if os.getpgid(0) == os.getpid():  # only a group this worker leads
                os.killpg(0, signal.SIGKILL)
        os._exit(1)

    if orphaned():
        die()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if orphaned():
                die()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _jsonable(value: Any) -> Any:
    """Round-trip through JSON so the parent only ever stores plain data (NaN becomes null)."""
    if value is None:
        return None
    return json.loads(json.dumps(value, default=_default), parse_constant=lambda _: None)


def _default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
