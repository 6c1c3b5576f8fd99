# masklite images. Works with the classic builder (no BuildKit features: no RUN --mount, no heredocs) and
# builds offline from the repository alone: the YuNet detector ships in models/, so nothing is downloaded
# but Python packages (from the package index) for the dependency stages.
#   docker build -t masklite .                        # runtime (default target): the HTTP service
#   docker build --target train -t masklite-train .   # training: python -m training build
# See docker/README.md (layer sizes, why the runtime's root is a pruned copy of the base).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ---- service dependencies: requirements/serve.txt, the lock of pyproject.toml's base dependencies + `scale`
# (the Redis client, for the scale deployment's replicas and workers; code changes don't reinstall) ----
FROM base AS deps
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# binutils (strip) lives only in this build stage
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends binutils \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY requirements/serve.txt ./
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps -r serve.txt \
 && /opt/venv/bin/pip uninstall -y -q pip setuptools \
 && sp=/opt/venv/lib/python3.11/site-packages \
 && rm -rf "$sp"/numpy/_core/tests "$sp"/numpy/*/tests "$sp"/numpy/f2py "$sp"/numpy/_core/include \
      "$sp"/cv2/data "$sp"/watchfiles "$sp"/websockets \
      "$sp"/ai_edge_litert/libLiteRtWebGpuAccelerator.so "$sp"/ai_edge_litert/tools/apply_plugin_main \
      "$sp"/ai_edge_litert/vendors \
 && find "$sp" -name '*.so' -type f | while read -r so; do \
      if readelf -S "$so" | grep -c debug_info >/dev/null && ! readelf -d "$so" | grep -cE 'RPATH|RUNPATH' >/dev/null; then \
        strip --strip-unneeded "$so"; fi; done \
 && /opt/venv/bin/python -c "import uvloop, httptools, yaml._yaml, cv2, PIL.Image, numpy, ai_edge_litert.interpreter, psutil, redis"
# Pruned: pip/setuptools, test suites, numpy's f2py and C headers, OpenCV's Haar cascades (YuNet only),
# uvicorn's reload/websocket extras (watchfiles, websockets: the service uses neither), LiteRT's GPU/NPU
# plugins (a CPU service loads none), and debug symbols of self-contained extensions (uvloop: 13 MB ->
# 1 MB). Libraries auditwheel patched (RPATH set by patchelf: numpy, Pillow, OpenCV) are left alone:
# strip breaks them. No matplotlib (extra `charts`): jobs skip their PNG charts. The runtime stage then
# runs `python -m service check` to prove the result still serves.

# ---- training dependencies (TensorFlow) ----
FROM base AS train-deps
# The classic builder builds every stage before the target, needed or not: runtime builds there pass
# --build-arg WITH_TRAIN_DEPS=0 to skip this 2 GB install. BuildKit skips unused stages by itself.
ARG WITH_TRAIN_DEPS=1
WORKDIR /build
COPY requirements/train.txt ./
RUN python -m venv /opt/venv \
 && if [ "$WITH_TRAIN_DEPS" = "1" ]; then /opt/venv/bin/pip install --no-cache-dir --no-deps -r train.txt; \
    else echo "WITH_TRAIN_DEPS=$WITH_TRAIN_DEPS: training dependencies not installed"; fi

# ---- train: python -m training build, data and weights mounted as volumes (see docker-compose.yml) ----
FROM base AS train
RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin masklite
COPY --from=train-deps /opt/venv /opt/venv
WORKDIR /app
COPY masklite/ masklite/
COPY training/ training/
# the shipped detector comes with models/ (docker-compose mounts ./models over it)
COPY models/ models/
ENV PATH=/opt/venv/bin:$PATH \
    MASKLITE_DATA_DIR=/data/chandrikadeb7 \
    MASKLITE_BACKBONE_WEIGHTS=/weights/mobilenet_v2_1.0_224_no_top_from_tfslim.h5 \
    MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
ENTRYPOINT ["python", "-m", "training"]
CMD ["build"]

# ---- the runtime's root file system: the base image less what a CPU service never uses ----
# Layers only ever add bytes, so the base's compilers' headers, docs, locales and Debian's own pip and
# setuptools (the service runs from /opt/venv) can only go by copying the pruned tree into a fresh image
# (the runtime stage below). The interpreter, the standard library the service imports, libc, OpenSSL and
# the CA certificates stay exactly as the base has them.
FROM base AS runtime-root
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN dev="$(dpkg-query -W -f '${Package}\n' | grep -E '^(lib)?python3(\.11)?-dev$|^libc6-dev$|^linux-libc-dev$|^libexpat1-dev$|^zlib1g-dev$|^python3-pip$' || true)" \
 && if [ -n "$dev" ]; then echo "$dev" | xargs apt-get purge -y -q >/dev/null; fi \
 && rm -rf /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/locale/* /usr/include/* \
      /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old /var/log/* \
      /usr/local/lib/python3.11/site-packages/* /usr/local/bin/pip* /usr/lib/python3/dist-packages/* \
      /usr/share/python-wheels /usr/lib/python3.11/test /usr/lib/python3.11/idlelib \
      /usr/lib/python3.11/ensurepip /usr/lib/python3.11/lib2to3 /usr/lib/python3.11/pydoc_data \
 && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin masklite

# ---- runtime (default: the last stage): the service, no TensorFlow, no matplotlib ----
FROM scratch AS runtime
# the whole pruned tree, on purpose (see runtime-root): one layer for what the base contributes
# hadolint ignore=DL3067
COPY --from=runtime-root / /
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
# code and models (the YuNet detector included) stay root-owned: the service user can read, not change them
COPY masklite/ masklite/
COPY robustness/ robustness/
COPY service/ service/
# the benchmark job (POST /v1/benchmark, service/jobkinds.py) runs bench/
COPY bench/ bench/
COPY models/ models/
# the base image's environment (FROM scratch starts empty), then the service's settings
ENV PATH=/opt/venv/bin:/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MASKLITE_HOST=0.0.0.0 \
    MASKLITE_PORT=8000 \
    MASKLITE_WORKERS=1 \
    MASKLITE_THREADS=2 \
    MASKLITE_MODELS_DIR=/app/models \
    MASKLITE_JOBS_DIR=/var/lib/masklite/jobs
# byte-compile the app (faster cold start), then fail the build unless the app imports and every model
# and the detector load and verify exactly as the service loads them, and the sample image gives faces
# (the jobs and TLS folders are made here: COPY --from does not keep the service user's ownership)
RUN mkdir -p /var/lib/masklite/jobs /var/lib/masklite/tls \
 && chown 10001:10001 /var/lib/masklite/jobs /var/lib/masklite/tls \
 && python -m compileall -q masklite service bench \
 && python -m service check
USER 10001:10001
EXPOSE 8000
# python's urllib: no curl in the image. urlopen raises on any non-2xx, so 503 (not ready) fails the check.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/ready' % os.environ.get('MASKLITE_PORT', '8000'), timeout=4)"]
CMD ["python", "-m", "service"]
