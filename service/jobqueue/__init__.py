"""Background jobs (robustness grids, benchmarks) on a queue that is the job store itself: SQLite (embedded,
one machine) or Redis (replicas and workers on any number of machines). One job model, one API.

    register_job_kind("robustness", "robustness.evaluate:run_job")   fn(params, progress, out_dir) -> result
    queue = JobQueue.from_settings(settings)     one per process (queue.py); start() / close()
    job = queue.submit(kind, params, public_params)

model.py the Job record, states, errors, kinds · store.py SQLite/Redis records and queue · queue.py the API ·
job_runner.py runs jobs · process.py the job process · locks.py host/runner locks · artifacts.py files ·
worker.py `python -m service worker`.
"""
