"""The one job model: a Job record, its states, the submission errors, and the job-kind registry.

A job kind is a module-level function `fn(params, progress, out_dir) -> result dict`, registered by its
dotted path: `register_job_kind(name, "package.module:function")`. The job process imports it (a fresh
`spawn`ed process), so the process that submits never imports the job's code. It calls
`progress(fraction, partial)` as it goes, writes its artifacts (PNG, CSV, JSON with safe names) into
`out_dir`, and returns the job's result. `exclusive=True` kinds (benchmarks) run alone on their host.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

JobFn = Callable[[dict[str, Any], Callable[[float, "dict | None"], None], Path], dict[str, Any]]

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
ACTIVE = (QUEUED, RUNNING)
FINISHED = (DONE, FAILED, CANCELLED)
# what a job may write and GET may serve: a plain name, never a path
ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\.(png|csv|json|jsonl|txt|md|mp4)$")
KIND_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")  # "package.module:function"


@dataclass(frozen=True)
class JobKind:
    name: str
    target: str  # "package.module:function", imported by the job process
    exclusive: bool  # True: nothing else runs on the host meanwhile (a benchmark must not measure a job)


_KINDS: dict[str, JobKind] = {}


def register_job_kind(name: str, target: str, exclusive: bool = False) -> None:
    """Make `name` submittable; `target` ("package.module:function") is resolved in the job process, so an
    import error there fails the job with its message. Every replica and worker registers the same kinds."""
    if not KIND_NAME.fullmatch(name):
        raise ValueError(f"bad job kind name {name!r}")
    if not TARGET.fullmatch(target):
        raise ValueError(f"job kind {name!r}: {target!r} is not 'package.module:function'")
    _KINDS[name] = JobKind(name, target, exclusive)


def job_kinds() -> list[str]:
    return sorted(_KINDS)


def job_kind(name: str) -> JobKind | None:
    return _KINDS.get(name)


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
    id: str  # a server-made UUID
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
    worker: str | None = None  # "host:pid:start" of the process that runs / ran it
    heartbeat: float | None = None  # last sign of life from that worker (wall clock)

    @property
    def worker_host(self) -> str | None:
        return self.worker.split(":", 1)[0] if self.worker else None

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
            "worker": self.worker_host,
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

    def record(self) -> dict[str, Any]:
        """Every field, JSON-able: what the stores keep."""
        return asdict(self)

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Job:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def _iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
