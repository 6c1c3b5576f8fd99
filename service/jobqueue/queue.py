"""JobQueue: the one job API every replica uses (submit, get, list, cancel, artifacts).

    MASKLITE_BROKER_URL unset   embedded: SqliteStore in MASKLITE_JOBS_DIR, jobs run in this process's job
                                runner (make serve, plain `docker compose up`)
    MASKLITE_BROKER_URL=redis:// RedisStore: API replicas submit and read, `python -m service worker`
                                processes run the jobs, on any machine
The store (service/jobqueue/store.py) holds what clients see and is the queue itself. Every process also
reaps: running jobs whose worker stopped renewing its lease fail with the reason, and queued jobs a dead
runner had claimed go back to the queue.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from service.jobqueue.artifacts import ArtifactStore
from service.jobqueue.job_runner import INTERRUPTED, JobRunner, worker_process_gone
from service.jobqueue.locks import RunnerLock
from service.jobqueue.model import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    Job,
    QueueFull,
    StorageUnavailable,
    UnknownKind,
    job_kind,
)
from service.jobqueue.recorder import JobRecorder
from service.jobqueue.store import JobStore, open_store

log = logging.getLogger("masklite.jobs")

LOST = "the worker {who} stopped renewing its lease for {secs:.0f} s (killed, or cut off from the broker)"
RETRY_AFTER_S = 10


class JobQueue(JobRecorder):
    def __init__(
        self,
        jobs_dir: Path,
        broker_url: str | None = None,
        run_jobs: bool | None = None,
        max_running: int = 1,
        queue_size: int = 4,
        keep: int = 200,
        nice: int = 10,
        lease_s: float = 20.0,
        input_ttl_s: int = 86_400,
        lock_dir: Path | None = None,
    ):
        self.jobs_dir = Path(jobs_dir)
        self.broker_url = broker_url or None
        # without a broker this process runs the jobs; with one, the workers do (unless told otherwise)
        self.run_jobs = (self.broker_url is None) if run_jobs is None else run_jobs
        self.slots = max(1, max_running)
        self.queue_size = max(0, queue_size)
        self.keep = keep
        self.nice = nice
        self.lease_s = lease_s
        self.input_ttl_s = input_ttl_s
        self.lock_dir = Path(lock_dir) if lock_dir else self.jobs_dir / ".locks"
        self.retry_after_s = RETRY_AFTER_S
        self.artifacts = ArtifactStore(self.jobs_dir)
        self.backend = "redis" if self.broker_url else "sqlite"
        self.runner: JobRunner | None = None
        self._store: JobStore | None = None
        self._runner_lock = None if self.broker_url else RunnerLock(self.jobs_dir / ".runner.lock")
        self._open_lock = threading.Lock()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    @classmethod
    def from_settings(cls, settings: Any, run_jobs: bool | None = None) -> JobQueue:
        return cls(
            settings.jobs_dir,
            broker_url=settings.broker_url,
            run_jobs=settings.run_jobs if run_jobs is None else run_jobs,
            max_running=settings.max_jobs,
            queue_size=settings.job_queue,
            keep=settings.jobs_keep,
            nice=settings.job_nice,
            lease_s=settings.job_lease_s,
            input_ttl_s=settings.job_input_ttl_s,
            lock_dir=settings.job_lock_dir,
        )

    def start(self) -> None:
        try:
            self._maintain_once()  # first: jobs a dead predecessor on this host left running
        except StorageUnavailable as exc:
            log.error("jobs: %s: job submission fails until it is fixed", exc)
        self._thread = threading.Thread(target=self._maintain, name="job-maintenance", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closing.set()
        if self.runner is not None:
            self.runner.stop()
            self.runner = None
        if self._runner_lock is not None:
            self._runner_lock.release()
        if self._thread is not None:
            self._thread.join(10)
        if self._store is not None:
            self._store.close()

    @property
    def store(self) -> JobStore:
        """The store, opened on first use and retried on each use, so a folder or broker fixed later is
        picked up."""
        with self._open_lock:
            if self._store is None:
                try:
                    store = open_store(self.broker_url, self.jobs_dir)
                    if self.broker_url:
                        store.ping()  # type: ignore[attr-defined]
                except StorageUnavailable as exc:
                    raise StorageUnavailable(self._hint(str(exc))) from exc
                self._store = store
                log.info("jobs: %s backend (%s)", self.backend, self.broker_url or self.jobs_dir)
            return self._store

    def _hint(self, error: str) -> str:
        if self.broker_url:
            return f"job broker unreachable ({error}); check MASKLITE_BROKER_URL"
        return f"job results cannot be stored ({error}); check MASKLITE_JOBS_DIR"

    # ------------------------------------------------------------ the API used by the routers

    def submit(self, kind: str, params: dict[str, Any], public_params: dict[str, Any] | None = None) -> Job:
        """Queue a job. `params` go to the job (uploads allowed; kept in the store, with a TTL, only until
        the job starts); `public_params` are what GET shows (defaults to `params`, then JSON-able)."""
        if job_kind(kind) is None:
            raise UnknownKind(f"unknown job kind {kind!r}")
        if self._closing.is_set():
            raise StorageUnavailable("the server is shutting down")
        store = self.store
        job = Job(
            id=str(uuid.uuid4()),
            kind=kind,
            state=QUEUED,
            created=time.time(),
            params=public_params if public_params is not None else params,
        )
        limit = self.capacity() + self.queue_size
        # one write: the record, its inputs and its place in the queue
        if not store.create(job, pickle.dumps(params, protocol=5), limit, self.input_ttl_s):
            counts = store.counts()
            raise QueueFull(
                f"{counts['running']} job(s) running and {counts['queued']} queued (the limit); retry later"
            )
        log.info("job %s (%s) queued", job.id, kind)
        return job

    def get(self, job_id: str) -> Job | None:
        try:
            uuid.UUID(job_id)
        except ValueError:
            return None
        return self.store.get(job_id)

    def list(self) -> list[Job]:
        return self.store.jobs()

    def counts(self) -> dict[str, int]:
        return self.store.counts()

    def capacity(self) -> int:
        """Jobs that can run at once: the slots of the live workers."""
        return sum(self.store.workers(self.lease_s).values())

    def workers(self) -> int:
        return len(self.store.workers(self.lease_s))

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued or running job, through any replica: the runner that has it kills its process
        within a second (it reads the state back with every heartbeat). Finished jobs are left."""
        if self.store.finish(job_id, CANCELLED, error="cancelled by the client"):
            self.finished_elsewhere(job_id)
            log.info("job %s cancelled", job_id)
        return self.store.get(job_id)

    # ------------------------------------------------------------ finishing, reaping

    def reap(self) -> None:
        """Jobs whose runner is gone (on this host: at once; anywhere: after the lease): running ones fail
        with the reason, claimed-but-not-started ones go back to the queue."""
        now = time.time()
        for job in self.store.active():
            silent = job.heartbeat is not None and now - job.heartbeat > self.lease_s
            if job.state == QUEUED and job.worker and (worker_process_gone(job.worker) or silent):
                if self.store.unclaim(job.id, job.worker):
                    log.warning("job %s queued again: runner %s died before starting it", job.id, job.worker)
            elif job.state == RUNNING and worker_process_gone(job.worker):
                who = f"the process running it ({job.worker_host})"
                self.finish(job.id, FAILED, error=INTERRUPTED.format(who=who), worker=job.worker)
            elif job.state == RUNNING and silent:
                error = LOST.format(who=job.worker_host, secs=now - job.heartbeat)
                self.finish(job.id, FAILED, error=error, worker=job.worker)

    # ------------------------------------------------------------ maintenance

    def _maintain_once(self) -> None:
        store = self.store
        wanted = self.run_jobs and self.runner is None and not self._closing.is_set()
        if wanted and (self._runner_lock is None or self._runner_lock.acquire()):
            self.reap()  # before running anything: a predecessor's jobs are not ours to keep
            runner = JobRunner(self, self.slots, self.nice, self.lock_dir)
            store.register_worker(runner.worker_id, self.slots, self.lease_s)  # counted before it runs
            self.runner = runner
            runner.start()
        elif self.runner is not None:
            store.register_worker(self.runner.worker_id, self.slots, self.lease_s)
        self.reap()
        store.sweep()

    def _maintain(self) -> None:
        every = min(5.0, self.lease_s / 4)
        failing = False
        while not self._closing.wait(every):
            try:
                self._maintain_once()
                if failing:
                    log.info("jobs: the %s store answers again", self.backend)
                failing = False
            except StorageUnavailable as exc:
                if not failing:
                    log.warning("jobs: %s", exc)
                failing = True
            except Exception:  # noqa: BLE001 - never let the maintenance thread die
                log.exception("jobs: maintenance failed")
