"""A JobRunner runs queued jobs on this host: one thread per slot takes the oldest queued job from the store
(an atomic claim) and supervises its process. Per job, that thread:
  1. takes the host lock (shared; exclusive for benchmarks), waiting while the job stays queued;
  2. takes the job's inputs out of the store and marks it running (unless it was cancelled meanwhile);
  3. spawns the job process (service/jobqueue/process.py) and relays its progress and partial results;
  4. every HEARTBEAT_S renews the job's lease in the store and reads its state back: a cancel made through
     any replica kills the process group within a second;
  5. records the result, or the reason it failed (the process's exit code or signal).
A runner that dies stops renewing its leases: every replica's reaper fails such jobs (job_lease_s), and a
runner restarted on the same host fails its predecessor's jobs at once ("interrupted by restart").
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import socket
import threading
import time
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import psutil

from service.jobqueue.locks import HostJobLock
from service.jobqueue.model import DONE, FAILED, QUEUED, RUNNING, Job, JobKind, StorageUnavailable, job_kind
from service.jobqueue.process import death_reason, job_main, kill_group
from service.jobqueue.recorder import JobRecorder

log = logging.getLogger("masklite.jobs")

HOSTNAME = socket.gethostname()  # in worker ids: which machine runs a job
HEARTBEAT_S = 0.5  # lease renewal, progress write and cancel check, per running job
POLL_S = 0.5  # an idle slot looks for a queued job this often
RETRY_S = 5.0  # ... and this often while the store is unreachable (a broker restart)
EXIT_GRACE_S = 30.0  # a job process that lingers this long after its result is killed
INTERRUPTED = "interrupted by restart: {who} stopped while this job was running"


def _started(pid: int) -> str:
    """The process's start time (centiseconds since the epoch): with the pid, it names one process."""
    try:
        return str(round(psutil.Process(pid).create_time() * 100))
    except psutil.Error:
        return "?"


def make_worker_id() -> str:
    pid = os.getpid()
    return f"{HOSTNAME}:{pid}:{_started(pid)}"


def worker_process_gone(worker: str | None) -> bool:
    """True only when `worker` ran on this host and that process no longer exists."""
    try:
        host, pid, start = (worker or "").split(":")
        return host == HOSTNAME and _started(int(pid)) != start
    except ValueError:
        return False


class JobRunner:
    def __init__(self, queue: JobRecorder, slots: int, nice: int, lock_dir: Path):
        self.queue = queue
        self.slots = slots
        self.nice = nice
        self.host_lock = HostJobLock(lock_dir)
        self.worker_id = make_worker_id()
        self._stop = threading.Event()
        self._ctx = multiprocessing.get_context("spawn")
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._slot, name=f"job-slot-{i}", daemon=True) for i in range(self.slots)
        ]
        for thread in self._threads:
            thread.start()
        log.info("job runner %s: %d slot(s), host lock %s", self.worker_id, self.slots, self.host_lock.main)

    def stop(self) -> None:
        """Kill running jobs (recorded as interrupted); queued ones stay queued for the next runner."""
        self._stop.set()
        for thread in self._threads:
            thread.join(20)
        with contextlib.suppress(StorageUnavailable):
            self.queue.store.unregister_worker(self.worker_id)

    def _slot(self) -> None:
        """One slot: take the oldest queued job, run it, again, until stopped. Never dies."""
        failing = False
        while not self._stop.is_set():
            try:
                job = self.queue.store.claim_next(self.worker_id)
            except StorageUnavailable as exc:
                if not failing:
                    log.warning("job runner %s: %s", self.worker_id, exc)
                failing = True
                self._stop.wait(RETRY_S)
                continue
            failing = False
            if job is None:
                self._stop.wait(POLL_S)
                continue
            try:
                self.execute(job)
            except Exception as exc:  # noqa: BLE001 - the job fails, the slot lives on
                log.exception("job %s: the runner failed", job.id)
                self.queue.finish(job.id, FAILED, error=f"the job runner failed: {exc}", retry=True)

    # ------------------------------------------------------------ one job

    def execute(self, job: Job) -> None:
        """A job this runner claimed: wait for the host lock, then run it."""
        store = self.queue.store
        kind = job_kind(job.kind)
        if kind is None:
            self.queue.finish(job.id, FAILED, error=f"this worker has no job kind {job.kind!r}")
            return
        last = [time.monotonic(), QUEUED]

        def give_up() -> bool:
            """While waiting for the host lock: renew the claim, stop on cancel or shutdown."""
            if self._stop.is_set():
                return True
            if time.monotonic() - last[0] >= HEARTBEAT_S:
                last[0] = time.monotonic()
                with contextlib.suppress(StorageUnavailable):
                    last[1] = store.heartbeat(job.id, self.worker_id, state=QUEUED) or "gone"
            return last[1] != QUEUED

        try:
            with self.host_lock.hold(kind.exclusive, give_up) as held:
                if held:
                    self._run(job, kind)
                elif self._stop.is_set():
                    store.unclaim(job.id, self.worker_id)  # still queued: back for the next runner
        except OSError as exc:
            self.queue.finish(job.id, FAILED, error=f"cannot take the host lock {self.host_lock.main}: {exc}")

    def _run(self, job: Job, kind: JobKind) -> None:
        store = self.queue.store
        inputs = store.take_inputs(job.id)
        if inputs is None:
            ttl = self.queue.input_ttl_s
            self.queue.finish(job.id, FAILED, error=f"its inputs expired ({ttl} s) before a worker was free")
            return
        if not store.start(job.id, self.worker_id):
            return  # cancelled between the lock and here
        params: dict[str, Any] = pickle.loads(inputs)  # noqa: S301 - written by our own API, in our store
        parent, child = self._ctx.Pipe(duplex=False)
        out_dir = self.queue.artifacts.job_dir(job.id)
        process = self._ctx.Process(
            target=job_main,
            args=(kind.target, params, str(out_dir), child, self.nice, os.getpid()),
            name=f"masklite-job-{kind.name}",
        )
        try:
            process.start()
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory or pids: fail this job, keep serving
            parent.close()
            self.queue.finish(job.id, FAILED, error=f"could not start a worker process: {exc}")
            return
        finally:
            child.close()
        del params, inputs
        log.info("job %s (%s) running in pid %s on %s", job.id, job.kind, process.pid, self.worker_id)
        try:
            self._supervise(job.id, process, parent)
        finally:
            parent.close()
            if process.is_alive():
                kill_group(process.pid)
            process.join(timeout=5)

    def _supervise(self, job_id: str, process: Any, conn: Connection) -> None:
        store = self.queue.store
        pending: dict[str, Any] = {}  # progress not yet written
        outcome: tuple[str, str | None, dict | None] | None = None
        last_beat = time.monotonic()
        while outcome is None:
            with contextlib.suppress(OSError, ValueError):
                wait([conn, process.sentinel], timeout=0.25)
            outcome = self._drain(conn, pending)
            if outcome is not None:
                break
            if not process.is_alive():
                outcome = self._drain(conn, pending)  # a result may have landed just before the exit
                if outcome is None:
                    process.join(timeout=1)
                    outcome = (FAILED, death_reason(process.exitcode), None)
                break
            if self._stop.is_set():
                kill_group(process.pid)
                outcome = (FAILED, INTERRUPTED.format(who=f"the job runner ({HOSTNAME})"), None)
                break
            if time.monotonic() - last_beat >= HEARTBEAT_S:
                last_beat = time.monotonic()
                try:
                    state = store.heartbeat(job_id, self.worker_id, pending)
                    pending = {}
                except StorageUnavailable as exc:
                    log.warning("job %s: heartbeat not recorded: %s", job_id, exc)
                    continue
                if state != RUNNING:  # cancelled from some replica, or reaped: stop the work now
                    kill_group(process.pid)
                    log.info("job %s is %s: its process %s was killed", job_id, state, process.pid)
                    self.queue.finished_elsewhere(job_id)
                    return
        state, error, result = outcome
        if pending:
            with contextlib.suppress(StorageUnavailable):
                store.heartbeat(job_id, self.worker_id, pending)
        self.queue.finish(job_id, state, error=error, result=result, worker=self.worker_id, retry=True)
        if process.is_alive():  # tearing down after its result (pools, threads): give it a moment
            process.join(EXIT_GRACE_S)

    @staticmethod
    def _drain(conn: Connection, pending: dict[str, Any]) -> tuple[str, str | None, dict | None] | None:
        """Read every waiting message; the outcome once the job has reported one."""
        while True:
            try:
                if not conn.poll():
                    return None
                msg = conn.recv()
            except (EOFError, OSError):
                return None
            if msg[0] == "progress":
                pending["progress"] = float(min(max(msg[1], 0.0), 1.0))
                if msg[2] is not None:
                    pending["partial"] = msg[2]
            elif msg[0] == "done":
                return DONE, None, msg[1]
            elif msg[0] == "error":
                log.warning("job failed: %s\n%s", msg[1], msg[2])
                return FAILED, msg[1], None
