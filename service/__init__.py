"""masklite HTTP service: FastAPI app (`python -m service`). Never imports TensorFlow.

settings.py   every MASKLITE_* setting, one object
app.py        create_app(): middleware, error handlers, routers, lifespan
runtime.py    model + detector pool: thread-local LiteRT interpreters, bounded in-flight work
errors.py     the one JSON error envelope (ApiError)
middleware.py request id, access log, body limit, HTTP metrics
telemetry.py  Prometheus metrics
security.py   optional API key dependency
bodies.py     request bodies: streaming multipart with per-part limits, raw images, JSON job parameters
jobkinds.py   the job kinds (robustness, benchmark), registered in one place; submitting a job
jobs.py       the job runner: one spawned process per job
routers/      one module per resource; routers never import each other
"""
