"""The job kinds this service runs, by name: one place, read by the API (create_app) and the job worker.

Each kind is a dotted path "module:function" to `fn(params, progress, out_dir) -> result`; the job process
imports it (service/jobqueue/process.py), so the API process never imports the job code (`bench` with httpx
and rich, the robustness grid). Each kind's request checks live in its adapter: service/robustness_job.py,
service/benchmark_job.py. A new kind adds one line here, an adapter and a router.
"""

from __future__ import annotations

from collections.abc import Callable

from service.jobqueue.model import register_job_kind

JOB_KINDS: dict[str, str] = {
    "robustness": "robustness.evaluate:run_job",
    "benchmark": "bench.jobs:run_benchmark_job",
    "video": "service.videojob:video_job",
}
# kinds that run alone on their host (service/jobqueue/locks.py): a benchmark must not measure another job
EXCLUSIVE_KINDS = frozenset({"benchmark"})


def register_job_kinds(register: Callable[[str, str, bool], None] = register_job_kind) -> None:
    """Make every kind submittable: create_app and the job worker call this, importing a router registers
    nothing."""
    for name, target in JOB_KINDS.items():
        register(name, target, name in EXCLUSIVE_KINDS)
