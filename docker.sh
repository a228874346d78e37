#!/usr/bin/env bash
# The demo API on a GPU server, in Docker. Settings come from .env (the environment wins).
#
#   bash docker.sh rebuild   build the image (as this user's uid) and (re)start the container
#   bash docker.sh pull      git pull + submodules; rebuild only when the image inputs changed
#                            (Dockerfile, .dockerignore, requirements), else restart on the new code
#   bash docker.sh start | stop | restart
#   bash docker.sh logs [docker logs options]     (default: -f --tail 200)
#   bash docker.sh status    container, programs, health, queue sizes
#   bash docker.sh shell     a shell in the container
#
# The container runs supervisord (docker-confs/): nginx on 8001 (published on 127.0.0.1 only,
# for the spiped tunnel), gunicorn, one dramatiq worker per GPU of DEVICE_NB, the callback sender
# and Redis, whose append-only file is in DATA_FOLDER/redis. The code is mounted read-only from
# this folder, so `pull` needs no rebuild unless the image's own inputs changed.
#
# .env settings read here: DATA_FOLDER (must exist; mounted at /data), DEVICE_NB (GPU indices,
# e.g. 0,1; empty: CPU only), STACK_ROLE (api | worker), API_BIND (127.0.0.1), API_PUBLISH_PORT
# (8001), REDIS_TUNNEL_PORT and REDIS_TUNNEL_PUBLISH_BIND (0.0.0.0): scale-out, see README),
# DEMO_UID / DEMO_GID (default: this user; as root, the owner of DATA_FOLDER), DOCKER_IMAGE (demo-api), DOCKER_CONTAINER
# (demo-api, or demo-api-worker for STACK_ROLE=worker), DOCKER_SHM_SIZE (2g),
# DOCKER_BASE_IMAGE (empty: the Dockerfile's debian:bookworm-slim; any Debian 12 image),
# DOCKER_NETWORK (empty: Docker's bridge, ports published as above; `host`: the build and the
# container use the host's network, nginx listens on API_BIND:API_PUBLISH_PORT itself and Redis on
# REDIS_PORT (6379): for engines without a bridge, as in tests/test_image.py).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ENV_FILE=${ENV_FILE:-$ROOT/.env}
INPUTS_LABEL=demo-api.inputs
STOP_TIMEOUT=120  # supervisord stops workers (WORKER_STOP_WAIT_S, 60), then the API, then Redis

die() {
    echo "docker.sh: $*" >&2
    exit 1
}

# setting KEY [DEFAULT]: the environment's KEY, else the last KEY=... line of .env, else DEFAULT.
setting() {
    local key=$1 default=${2-} line value
    if [ -n "${!key+set}" ]; then
        printf '%s' "${!key}"
        return
    fi
    value=$default
    if [ -f "$ENV_FILE" ]; then
        line=$(grep -E "^[[:space:]]*(export[[:space:]]+)?${key}[[:space:]]*=" "$ENV_FILE" | tail -n 1 || true)
        if [ -n "$line" ]; then
            value=${line#*=}
            [[ ! $value =~ ^[[:space:]]+# ]] || value=""  # KEY=  # a comment: empty, as python-dotenv reads it
            value=${value#"${value%%[![:space:]]*}"}
            case $value in
                \"*) value=${value#\"}; value=${value%%\"*} ;;
                \'*) value=${value#\'}; value=${value%%\'*} ;;
                *) value=${value%%[[:space:]]#*}; value=${value%"${value##*[![:space:]]}"} ;;
            esac
        fi
    fi
    printf '%s' "$value"
}

load_settings() {
    ROLE=$(setting STACK_ROLE api)
    case $ROLE in
        api | worker) ;;
        *) die "STACK_ROLE=$ROLE: expected api or worker" ;;
    esac
    IMAGE=$(setting DOCKER_IMAGE demo-api)
    if [ "$ROLE" = worker ]; then
        CONTAINER=$(setting DOCKER_CONTAINER demo-api-worker)
    else
        CONTAINER=$(setting DOCKER_CONTAINER demo-api)
    fi
    DATA=$(setting DATA_FOLDER ./data)
    case $DATA in
        /*) ;;
        *) DATA=$ROOT/${DATA#./} ;;
    esac
    GPUS=$(setting DEVICE_NB "")
    GPUS=${GPUS// /}
    if [ -n "$GPUS" ] && ! [[ $GPUS =~ ^[0-9]+(,[0-9]+)*$ ]]; then
        die "DEVICE_NB=$GPUS: expected GPU indices as nvidia-smi numbers them, e.g. 0 or 0,1"
    fi
    BIND=$(setting API_BIND 127.0.0.1)
    PORT=$(setting API_PUBLISH_PORT 8001)
    TUNNEL_PORT=$(setting REDIS_TUNNEL_PORT "")
    TUNNEL_BIND=$(setting REDIS_TUNNEL_PUBLISH_BIND 0.0.0.0)
    SHM=$(setting DOCKER_SHM_SIZE 2g)
    BASE_IMAGE=$(setting DOCKER_BASE_IMAGE "")
    NETWORK=$(setting DOCKER_NETWORK "")
    case $NETWORK in
        "" | host) ;;
        *) die "DOCKER_NETWORK=$NETWORK: expected host, or nothing for Docker's bridge" ;;
    esac
    REDIS_PORT=$(setting REDIS_PORT 6379)
    # The container's user is this user; run as root, it is whoever owns DATA_FOLDER.
    local uid gid
    uid=$(id -u) gid=$(id -g)
    if [ "$uid" = 0 ] && [ -d "$DATA" ]; then
        uid=$(stat -c %u "$DATA") gid=$(stat -c %g "$DATA")
    fi
    DEMO_UID=$(setting DEMO_UID "$uid")
    DEMO_GID=$(setting DEMO_GID "$gid")
}

require_docker() {
    command -v docker >/dev/null 2>&1 ||
        die "Docker is not installed (or not on PATH): see https://docs.docker.com/engine/install/"
    docker info >/dev/null 2>&1 ||
        die "the Docker engine does not answer: is it running (sudo systemctl start docker), and is $(id -un) in the docker group?"
}

require_gpu_runtime() {
    [ -n "$GPUS" ] || return 0
    if command -v nvidia-ctk >/dev/null 2>&1 || command -v nvidia-container-runtime-hook >/dev/null 2>&1; then
        return 0
    fi
    if docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q nvidia; then
        return 0
    fi
    die "DEVICE_NB=$GPUS but the NVIDIA Container Toolkit is missing: install nvidia-container-toolkit, then" \
        "sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker" \
        "(or leave DEVICE_NB empty to run on CPU)"
}

require_data() {
    [ -d "$DATA" ] || die "DATA_FOLDER $DATA does not exist: create it (mkdir -p $DATA) or set DATA_FOLDER in $ENV_FILE;" \
        "it keeps models, uploads, results and the Redis queue"
    [ -w "$DATA" ] || die "DATA_FOLDER $DATA is not writable by $(id -un); the container runs as uid $DEMO_UID"
}

# The files the image is built from; the code itself is mounted, so it needs no rebuild.
image_inputs() {
    local files=(Dockerfile .dockerignore requirements.txt)
    local extra
    for extra in "$ROOT"/api/demos/*/requirements.txt; do
        [ -f "$extra" ] && files+=("${extra#"$ROOT"/}")
    done
    (cd "$ROOT" && { sha256sum "${files[@]}"; echo "base ${BASE_IMAGE:-default}"; } | sha256sum | cut -d' ' -f1)
}

image_label() {
    docker image inspect --format "{{ index .Config.Labels \"$INPUTS_LABEL\" }}" "$IMAGE" 2>/dev/null || true
}

container_state() {
    docker container inspect --format '{{.State.Status}}' "$CONTAINER" 2>/dev/null || true
}

build() {
    require_docker
    [ "$DEMO_UID" != 0 ] || die "refusing to build an image whose user is root: run docker.sh as the user who" \
        "owns DATA_FOLDER (or chown DATA_FOLDER to that user, or set DEMO_UID/DEMO_GID in $ENV_FILE)"
    echo "building $IMAGE for uid $DEMO_UID ..." >&2
    local args=(build --build-arg "DEMO_UID=$DEMO_UID" --build-arg "DEMO_GID=$DEMO_GID")
    [ -z "$BASE_IMAGE" ] || args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
    [ -z "$NETWORK" ] || args+=(--network "$NETWORK")
    docker "${args[@]}" --label "$INPUTS_LABEL=$(image_inputs)" --tag "$IMAGE" "$ROOT"
}

start() {
    require_docker
    require_data
    require_gpu_runtime
    [ -f "$ENV_FILE" ] || die "no $ENV_FILE: cp .env.template .env and set INSTALLED_APPS, DATA_FOLDER, DEVICE_NB"
    local state
    state=$(container_state)
    if [ "$state" = running ]; then
        echo "$CONTAINER is already running (bash docker.sh restart to restart it)" >&2
        return 0
    fi
    [ -z "$state" ] || docker rm "$CONTAINER" >/dev/null
    [ -n "$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)" ] ||
        die "no image $IMAGE: bash docker.sh rebuild"
    local args=(run --detach --name "$CONTAINER" --restart unless-stopped --stop-timeout "$STOP_TIMEOUT"
        --shm-size "$SHM" --label "demo-api.role=$ROLE"
        --volume "$ROOT:/app:ro" --volume "$DATA:/data" --volume "$ENV_FILE:/etc/demo-api.env:ro"
        --env DATA_FOLDER=/data --env ENV_FILE=/etc/demo-api.env --env "STACK_ROLE=$ROLE")
    if [ -n "$GPUS" ]; then
        # By index, never a count: --gpus '"device=0,1"'. Inside, those GPUs are numbered 0..n-1.
        local count inside="" i
        count=$(($(tr -cd , <<<"$GPUS" | wc -c) + 1))
        for ((i = 0; i < count; i++)); do inside+="${inside:+,}$i"; done
        args+=(--gpus "\"device=$GPUS\"" --env "WORKER_GPUS=$inside")
    else
        echo "DEVICE_NB is empty: workers run on CPU" >&2
        args+=(--env WORKER_GPUS=cpu)
    fi
    if [ "$NETWORK" = host ]; then
        # no ports to publish: nginx, Redis and the tunnel listen on the host's addresses themselves
        args+=(--network host --env "NGINX_LISTEN=$BIND:$PORT" --env "REDIS_PORT=$REDIS_PORT"
            --env "REDIS_TUNNEL_BIND=$TUNNEL_BIND")
    elif [ "$ROLE" = api ]; then
        args+=(--publish "$BIND:$PORT:8001")
        if [ -n "$TUNNEL_PORT" ]; then
            args+=(--publish "$TUNNEL_BIND:$TUNNEL_PORT:$TUNNEL_PORT")
        fi
    fi
    docker "${args[@]}" "$IMAGE" >/dev/null
    echo "started $CONTAINER ($ROLE)${GPUS:+ on GPUs $GPUS}$([ "$ROLE" = api ] && echo ", API on http://$BIND:$PORT")" >&2
}

stop() {
    require_docker
    local state
    state=$(container_state)
    if [ -z "$state" ]; then
        echo "$CONTAINER is not there" >&2
        return 0
    fi
    # supervisord stops the workers first; a job cut short is delivered again after the restart
    [ "$state" != running ] || docker stop --time "$STOP_TIMEOUT" "$CONTAINER" >/dev/null
    docker rm "$CONTAINER" >/dev/null
    echo "stopped $CONTAINER" >&2
}

status() {
    require_docker
    docker ps --all --filter "name=^/$CONTAINER\$" --format '{{.Names}}  {{.Status}}  {{.Ports}}'
    [ "$(container_state)" = running ] || die "$CONTAINER is not running (bash docker.sh start)"
    docker exec "$CONTAINER" bash -c 'supervisorctl -c "$RUN_FOLDER/supervisord.conf" status' || true
    docker exec "$CONTAINER" python /app/docker-confs/stack_status.py
}

pull() {
    command -v git >/dev/null 2>&1 || die "git is not installed"
    git -C "$ROOT" pull --ff-only
    git -C "$ROOT" submodule update --init --recursive
    require_docker
    if [ "$(image_inputs)" != "$(image_label)" ]; then
        echo "the image inputs changed: rebuilding" >&2
        build
    else
        echo "the image inputs are unchanged: restarting on the new code" >&2
    fi
    stop
    start
}

usage() {
    sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

main() {
    local command=${1:-}
    [ $# -eq 0 ] || shift
    load_settings
    case $command in
        rebuild) build && stop && start ;;
        pull) pull ;;
        start) start ;;
        stop) stop ;;
        restart) stop && start ;;
        logs)
            require_docker
            if [ $# -eq 0 ]; then set -- --follow --tail 200; fi
            docker logs "$@" "$CONTAINER"
            ;;
        status) status ;;
        shell)
            require_docker
            docker exec --interactive --tty "$CONTAINER" bash
            ;;
        *) usage ;;
    esac
}

# Everything runs from main, parsed whole before it starts: `pull` may rewrite this file.
main "$@"
exit $?
