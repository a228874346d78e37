#!/usr/bin/env bash
# Docker HEALTHCHECK: an API container is healthy when nginx answers /health (so gunicorn does too);
# a worker-only container (STACK_ROLE=worker) when supervisord has every program RUNNING.
set -euo pipefail
conf=${RUN_FOLDER:-/home/demo/run}/supervisord.conf
if grep -q '^\[program:nginx\]' "$conf" 2>/dev/null; then
    listen=${NGINX_LISTEN:-8001}
    exec curl --fail --silent --show-error --max-time 5 "http://127.0.0.1:${listen##*:}/health"
fi
# every program RUNNING (supervisorctl's own exit status lets STARTING pass)
programs=$(supervisorctl -c "$conf" status || true)
echo "$programs"
[ -n "$programs" ] && ! grep -qv ' RUNNING ' <<<"$programs"
