"""`bash docker.sh status`, inside the container: health, and per demo its queue sizes and live
workers, asked of nginx the way a client would (so a broken nginx or gunicorn shows here).

Usage: python docker-confs/stack_status.py   (exit 1 when the API does not answer)
"""
from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

# Run as a script (python docker-confs/stack_status.py): the repository root is not on the path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.platform.config import load_config


def get(base: str, path: str, token: str) -> dict:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def main() -> int:
    if os.environ.get("STACK_ROLE", "api") == "worker":
        print("worker host: no API here; its workers report to the API host (/<app>/monitor there)")
        return 0
    cfg = load_config()
    port = (os.environ.get("NGINX_LISTEN", "") or "8001").rsplit(":", 1)[-1]
    base = f"http://127.0.0.1:{port}"
    try:
        print(f"health: {get(base, '/health', '')['status']}")
        apps = get(base, "/", cfg.api_token)["apps"]
    except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
        print(f"the API does not answer at {base}: {exc}")
        return 1
    for app in apps:
        sizes = get(base, f"/{app}/qsizes", cfg.api_token)
        monitor = get(base, f"/{app}/monitor", cfg.api_token)
        workers = monitor.get("workers", [])
        where = ", ".join(f"{w.get('host', '?')}/gpu {w['device']}" if w.get("device") else f"{w.get('host', '?')}/cpu"
                          for w in workers)
        print(f"{app}: waiting {sizes['waiting']}, delayed {sizes['delayed']}, dead {sizes['dead']}; "
              f"live workers {len(workers)} ({where}); jobs {monitor.get('jobs', {})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
