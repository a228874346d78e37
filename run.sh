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
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    *)
        echo "usage: bash run.sh serve|test [args...]" >&2
        exit 2
        ;;
esac
