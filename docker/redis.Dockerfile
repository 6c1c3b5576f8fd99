# Redis for the scale profile (docker-compose.yml): Debian's redis-server on the local base image, since no
# image registry is reachable here. Build context: docker/.
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown redis:redis /data
COPY redis.conf /etc/redis/masklite.conf
# the user the Debian package creates (its uid is not fixed)
# hadolint ignore=DL3066
USER redis
WORKDIR /data
EXPOSE 6379
HEALTHCHECK --interval=5s --timeout=3s --retries=3 CMD ["redis-cli", "ping"]
CMD ["redis-server", "/etc/redis/masklite.conf"]
