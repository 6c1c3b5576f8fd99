# masklite images. Works with the classic builder too (no BuildKit features: no RUN --mount, no heredocs).
#   docker build -t masklite .                        # runtime (default target): the HTTP service
#   docker build --target train -t masklite-train .   # training: python -m training build
# The YuNet detector comes from docker/assets/ when present (air-gapped builds), else from YUNET_URL;
# both are checked against the sha256 pinned in masklite/paths.py. See docker/README.md.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ---- service dependencies: pyproject.toml's base dependencies, no extras (code changes don't reinstall) ----
FROM base AS deps
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# binutils (strip) lives only in this build stage
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends binutils \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY pyproject.toml docker/requirements.py ./
RUN python requirements.py pyproject.toml > requirements.txt \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir -r requirements.txt \
 && /opt/venv/bin/pip uninstall -y -q pip setuptools \
 && sp=/opt/venv/lib/python3.11/site-packages \
 && rm -rf "$sp"/numpy/_core/tests "$sp"/numpy/*/tests "$sp"/matplotlib/tests "$sp"/mpl_toolkits/*/tests \
      "$sp"/ai_edge_litert/libLiteRtWebGpuAccelerator.so "$sp"/ai_edge_litert/tools/apply_plugin_main \
      "$sp"/ai_edge_litert/vendors \
 && find "$sp" -name '*.so' -type f | while read -r so; do \
      if readelf -S "$so" | grep -c debug_info >/dev/null && ! readelf -d "$so" | grep -cE 'RPATH|RUNPATH' >/dev/null; then \
        strip --strip-unneeded "$so"; fi; done \
 && /opt/venv/bin/python -c "import uvloop, yaml._yaml, kiwisolver, matplotlib.pyplot, cv2, PIL.Image"
# Pruned: pip/setuptools, test suites, LiteRT's GPU/NPU plugins (a CPU service loads none of them), and
# debug symbols of self-contained extensions (uvloop: 13 MB -> 1 MB). Libraries auditwheel patched
# (RPATH set by patchelf: numpy, Pillow, OpenCV) are left alone: strip breaks them. The runtime stage
# then loads the app and every shipped model to prove the result still works.

# ---- training dependencies (TensorFlow) ----
FROM base AS train-deps
# The classic builder builds every stage before the target, needed or not: runtime builds there pass
# --build-arg WITH_TRAIN_DEPS=0 to skip this 2 GB install. BuildKit skips unused stages by itself.
ARG WITH_TRAIN_DEPS=1
WORKDIR /build
COPY pyproject.toml docker/requirements.py ./
RUN python requirements.py pyproject.toml --extra train > requirements-train.txt \
 && python -m venv /opt/venv \
 && if [ "$WITH_TRAIN_DEPS" = "1" ]; then /opt/venv/bin/pip install --no-cache-dir -r requirements-train.txt; \
    else echo "WITH_TRAIN_DEPS=$WITH_TRAIN_DEPS: training dependencies not installed"; fi

# ---- the face detector, sha256-checked ----
FROM base AS detector
ARG YUNET_URL=""
WORKDIR /build
COPY masklite/__init__.py masklite/paths.py masklite/
COPY docker/fetch_detector.py docker/
COPY docker/assets/ docker/assets/
RUN python docker/fetch_detector.py --assets docker/assets --dest /detector/face_detection_yunet_2023mar.onnx \
      --url "${YUNET_URL}"

# ---- train: python -m training build, data and weights mounted as volumes (see docker-compose.yml) ----
FROM base AS train
RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin masklite
COPY --from=train-deps /opt/venv /opt/venv
WORKDIR /app
COPY masklite/ masklite/
COPY training/ training/
COPY --from=detector /detector/ /opt/masklite/detector/
ENV PATH=/opt/venv/bin:$PATH \
    MASKLITE_DATA_DIR=/data/chandrikadeb7 \
    MASKLITE_BACKBONE_WEIGHTS=/weights/mobilenet_v2_1.0_224_no_top_from_tfslim.h5 \
    MASKLITE_DETECTOR_PATH=/opt/masklite/detector/face_detection_yunet_2023mar.onnx \
    MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
ENTRYPOINT ["python", "-m", "training"]
CMD ["build"]

# ---- runtime (default: the last stage): the service, no TensorFlow ----
FROM base AS runtime
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin masklite \
 && mkdir -p /var/lib/masklite/jobs \
 && chown masklite:masklite /var/lib/masklite/jobs
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
# code and models stay root-owned: the service user can read them, not change them
COPY masklite/ masklite/
COPY service/ service/
COPY models/ models/
COPY --from=detector /detector/ /opt/masklite/detector/
ENV PATH=/opt/venv/bin:$PATH \
    MASKLITE_HOST=0.0.0.0 \
    MASKLITE_PORT=8000 \
    MASKLITE_WORKERS=1 \
    MASKLITE_THREADS=2 \
    MASKLITE_MODELS_DIR=/app/models \
    MASKLITE_DETECTOR_PATH=/opt/masklite/detector/face_detection_yunet_2023mar.onnx \
    MASKLITE_JOBS_DIR=/var/lib/masklite/jobs \
    MPLCONFIGDIR=/tmp/matplotlib
COPY docker/check_image.py docker/
# byte-compile the app (faster cold start), then fail the build if the app, a model or the detector
# does not load exactly as the service loads them
RUN python -m compileall -q masklite service \
 && python docker/check_image.py
USER 10001:10001
EXPOSE 8000
# python's urllib: no curl in the image. urlopen raises on any non-2xx, so 503 (not ready) fails the check.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/ready' % os.environ.get('MASKLITE_PORT', '8000'), timeout=4)"]
CMD ["python", "-m", "service"]
