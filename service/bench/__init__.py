"""Old names of the benchmark commands, kept for one release: the benchmarks moved to the top-level `bench/`.

    python -m service.bench            -> python -m bench
    python -m service.bench.ci         -> python -m bench.ci
    python -m service.bench.stages     -> python -m bench.stage_timing
    python -m service.bench.detectors  -> python -m bench.detectors
    python -m service.bench.phone      -> python -m bench.phone
    python -m service.bench.loadgen    -> python -m bench.loadgen
    python -m service.jobs_latency     -> python -m bench.jobs_latency

Each alias runs the new module as `__main__` by name (runpy), so the service never imports `bench` for them.
"""

from __future__ import annotations

import runpy
import sys


def forward(module: str) -> None:
    """Run `module` as `python -m module` would, with this command's arguments; say where it moved."""
    note = f"note: this command is now `python -m {module}`; the old name goes after one release"
    print(note, file=sys.stderr)
    runpy.run_module(module, run_name="__main__", alter_sys=True)
