#!/usr/bin/env bash
# Render the stack's configuration from .env (docker-confs/render.py) and run supervisord in the
# foreground: the Docker image's command, and what docker-confs/run-local.sh runs on a bare host.
# STACK_PYTHON: the Python with the project's requirements (default: $VENV/bin/python as run.sh
# makes it, VENV defaulting to .venv; else python3).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
if [ -z "${STACK_PYTHON:-}" ]; then
    venv=${VENV:-.venv}
    if [ -x "$venv/bin/python" ]; then STACK_PYTHON=$(cd "$venv" && pwd)/bin/python; else STACK_PYTHON=$(command -v python3); fi
fi
export STACK_PYTHON
run_folder=$("$STACK_PYTHON" docker-confs/render.py)
# The installed demos' default models that are missing (MODELS_INSTALL_DEFAULTS; never stops the start).
"$STACK_PYTHON" -m api models pull --defaults --at-start || true
echo "stack configuration rendered in $run_folder" >&2
exec supervisord -c "$run_folder/supervisord.conf"
