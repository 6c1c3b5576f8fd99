"""`python -m service`: run the API with uvicorn on $MASKLITE_HOST:$MASKLITE_PORT.

`python -m service check`: the first-run check (service/check.py), then exit.
`python -m service worker [--check]`: a job worker for the scale deployment (service/jobqueue/worker.py).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

import uvicorn

from service.log import configure_logging, uvicorn_log_config
from service.settings import Settings
from service.telemetry import MULTIPROC_ENV


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["check"]:
        from service.check import main as check

        sys.exit(check(args[1:]))
    if args[:1] == ["worker"]:
        from service.jobkinds import register_job_kinds
        from service.jobqueue.worker import main as worker

        register_job_kinds()  # the same kinds as the API's
        sys.exit(worker(args[1:]))
    if args:
        usage = "python -m service [check [--image PATH] | worker [--check]]"
        sys.exit(f"usage: {usage}; unknown arguments: {' '.join(args)}")
    settings = Settings()
    configure_logging(settings.log_level)
    from service.tls import banner, server_tls

    tls = server_tls(settings)  # None: plain HTTP
    print(banner(settings, tls), flush=True)
    common: dict = dict(
        host=settings.host,
        port=settings.port,
        log_config=uvicorn_log_config(settings.log_level),
        access_log=False,  # our middleware logs each request with its request id
        timeout_graceful_shutdown=10,
        server_header=False,
    )
    if tls is not None:
        common.update(ssl_certfile=str(tls.certfile), ssl_keyfile=str(tls.keyfile))
    if settings.workers == 1:
        from service.app import create_app

        uvicorn.run(create_app(settings), **common)
        return
    if not os.environ.get(MULTIPROC_ENV):
        # several processes: Prometheus values go through files that /metrics sums over the workers
        folder = tempfile.mkdtemp(prefix="masklite-prom-")
        os.environ[MULTIPROC_ENV] = folder
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    uvicorn.run("service.app:create_app", factory=True, workers=settings.workers, **common)


if __name__ == "__main__":
    main()
