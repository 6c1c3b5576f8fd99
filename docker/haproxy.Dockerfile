# The load balancer of the scale profile (docker-compose.yml): Debian's HAProxy on the local base image, since
# no image registry is reachable here. Build context: docker/.
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends haproxy \
 && rm -rf /var/lib/apt/lists/*
COPY haproxy.cfg /etc/haproxy/masklite.cfg
RUN haproxy -c -f /etc/haproxy/masklite.cfg
# the user the Debian package creates (its uid is not fixed)
# hadolint ignore=DL3066
USER haproxy
EXPOSE 8000
# through the balancer to any live replica
HEALTHCHECK --interval=10s --timeout=5s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=4)"]
CMD ["haproxy", "-db", "-f", "/etc/haproxy/masklite.cfg"]
