"""One job = one `spawn`ed process: a clean interpreter, its own process group, a lower CPU priority.

The supervising thread (service/jobqueue/job_runner.py) reads its messages from a pipe:
    ("progress", fraction, partial | None)   partial at most every PARTIAL_EVERY_S
    ("done", result)
    ("error", message, traceback)
Killing the group (cancel) also ends any pool the job started; the process exits by itself when its
supervisor dies (kill -9 included), so no orphan keeps a core busy.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from service.jobqueue.model import JobFn

PARTIAL_EVERY_S = 1.0


def kill_group(pid: int | None) -> None:
    """SIGKILL a job process and its process group (it leads one)."""
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def death_reason(code: int | None) -> str:
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


def resolve(target: str) -> JobFn:
    """ "package.module:function" -> the function (imported here, in the job process)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def job_main(
    target: str, params: dict[str, Any], out_dir: str, conn: Connection, nice: int, parent: int
) -> None:
    """Entry point of a job process."""
    _watch_parent(parent)  # first: the supervisor may have died while this process was importing
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
            conn.send(("progress", float(fraction), jsonable(send)))

    try:
        fn = resolve(target)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        result = fn(params, progress, Path(out_dir))
        with lock:
            if pending[0] is not None:
                conn.send(("progress", 1.0, jsonable(pending[0])))
            conn.send(("done", jsonable(result)))
    except BaseException as exc:  # noqa: BLE001 - report every failure, then exit
        message = f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            conn.send(("error", message[:2000], traceback.format_exc()[-8000:]))
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def _watch_parent(parent: int) -> None:
    """Exit when the supervising process dies, taking the group along."""

    def orphaned() -> bool:
        return os.getppid() != parent  # re-parented to init (or a subreaper): the supervisor is gone

    def die() -> None:
        with contextlib.suppress(OSError):
            if os.getpgid(0) == os.getpid():  # only a group this process leads
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


def jsonable(value: Any) -> Any:
    """Round-trip through JSON so the stores only ever hold plain data (NaN becomes null)."""
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
