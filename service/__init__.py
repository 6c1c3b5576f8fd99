"""masklite HTTP service: FastAPI app (`python -m service`). Never imports TensorFlow.

settings.py   every MASKLITE_* setting, one object
app.py        create_app(): middleware, error handlers, routers, lifespan
runtime.py    model + detector pool: thread-local LiteRT interpreters, bounded in-flight work
errors.py     the one JSON error envelope (ApiError)
middleware.py request id, access log, body limit, HTTP metrics
metrics.py    Prometheus metrics
security.py   optional API key dependency
routers/      one module per resource
"""
