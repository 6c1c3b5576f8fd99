"""`python -m service worker`: a job worker (a JobRunner, no API) for the scale deployment.

Runs MASKLITE_MAX_JOBS jobs at once from the queue at MASKLITE_BROKER_URL (or from the embedded SQLite
queue in MASKLITE_JOBS_DIR, then instead of the API process: MASKLITE_RUN_JOBS=false there), writing
artifacts to MASKLITE_JOBS_DIR, which every API replica must mount too. SIGTERM / SIGINT: running jobs
are killed and recorded as interrupted, queued ones stay queued for the other workers.

`python -m service worker --check` exits 0 when a worker on this host renewed its registration
within MASKLITE_JOB_LEASE_S (a container health check / liveness probe).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from service.jobqueue.job_runner import HOSTNAME
from service.jobqueue.model import StorageUnavailable
from service.jobqueue.queue import JobQueue
from service.log import configure_logging
from service.settings import Settings

log = logging.getLogger("masklite.jobs")


def check(queue: JobQueue) -> int:
    try:
        live = queue.store.workers(queue.lease_s)
    except StorageUnavailable as exc:
        print(f"unhealthy: {exc}")
        return 1
    mine = [w for w in live if w.split(":", 1)[0] == HOSTNAME]
    print(f"{'ok' if mine else 'unhealthy'}: {len(mine)} worker(s) on {HOSTNAME}, {len(live)} in all")
    return 0 if mine else 1


def main(argv: list[str] | None = None) -> int:
    """The job kinds must be registered before (service/__main__.py does it)."""
    parser = argparse.ArgumentParser(
        prog="python -m service worker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--check", action="store_true", help="exit 0 when this host's worker is alive")
    args = parser.parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level)
    queue = JobQueue.from_settings(settings, run_jobs=True)
    if args.check:
        return check(queue)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    queue.start()  # retries in the background while the broker is unreachable
    log.info("job worker on %s: %s backend, %d slot(s)", HOSTNAME, queue.backend, queue.slots)
    stop.wait()
    log.info("job worker on %s: stopping", HOSTNAME)
    queue.close()
    return 0
