#!/usr/bin/env bash
# The Docker image's stack on this host, without Docker: the distribution's nginx, redis-server,
# spiped and supervisord run the same rendered configuration (docker-confs/*.conf) as the image.
#   bash docker-confs/run-local.sh                       # reads .env; nginx on 127.0.0.1:8001
#   NGINX_LISTEN=127.0.0.1:9001 REDIS_PORT=6390 bash docker-confs/run-local.sh
# Needs: apt-get install nginx redis-server spiped supervisor (bash tools/install-system-packages.sh)
# and the project's virtual environment (bash run.sh serve creates it). Stop with Ctrl-C / SIGTERM.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command -v supervisord >/dev/null || { echo "supervisord is not installed: bash tools/install-system-packages.sh" >&2; exit 1; }
export NGINX_LISTEN=${NGINX_LISTEN:-127.0.0.1:8001}
export RUN_FOLDER=${RUN_FOLDER:-${TMPDIR:-/tmp}/demo-api-$(id -u)}
exec bash "$root/docker-confs/start-stack.sh"
