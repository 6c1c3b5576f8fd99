"""JobRecorder: the part of the JobQueue (service/jobqueue/queue.py) that its JobRunner uses: the store, the
artifacts, and how a job's end is recorded. A class of its own because the queue owns the runner, so the
runner cannot import the queue; the queue is a JobRecorder, and the runner records through it."""

from __future__ import annotations

import contextlib
import logging
import time
from abc import ABC, abstractmethod

from service.jobqueue.artifacts import ArtifactStore
from service.jobqueue.model import StorageUnavailable
from service.jobqueue.store import JobStore

log = logging.getLogger("masklite.jobs")


class JobRecorder(ABC):
    artifacts: ArtifactStore
    input_ttl_s: int
    keep: int
    lease_s: float

    @property
    @abstractmethod
    def store(self) -> JobStore: ...

    def finish(
        self,
        job_id: str,
        state: str,
        error: str | None = None,
        result: dict | None = None,
        worker: str | None = None,
        retry: bool = False,
    ) -> bool:
        """Record the end of a job with its artifact list, then prune. `retry`: keep trying while the
        broker is away (a result must not be lost to a Redis restart)."""
        deadline = time.monotonic() + (self.lease_s if retry else 0)
        while True:
            try:
                applied = self.store.finish(
                    job_id, state, error, result, self.artifacts.list(job_id), worker=worker
                )
                break
            except StorageUnavailable as exc:
                if time.monotonic() >= deadline:
                    log.error("job %s: could not record %s: %s", job_id, state, exc)
                    return False
                time.sleep(1)
        if applied:
            log.info("job %s %s%s", job_id, state, f": {error}" if error else "")
            self._prune()
        else:
            self.finished_elsewhere(job_id)
        return applied

    def finished_elsewhere(self, job_id: str) -> None:
        """A job ended by a cancel or the reaper still lists what it wrote."""
        with contextlib.suppress(StorageUnavailable):
            self.store.set_artifacts(job_id, self.artifacts.list(job_id))
            self._prune()

    def _prune(self) -> None:
        for job_id in self.store.prune(self.keep):
            self.artifacts.delete(job_id)
