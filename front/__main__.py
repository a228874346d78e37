"""`python -m front [--host H] [--port N]`: the front on Werkzeug's threaded server (for a
single user or development; use gunicorn for more, see front/__init__.py)."""
from __future__ import annotations

import argparse

from . import create_app, load_config


def main(argv: list[str] | None = None) -> None:
    cfg = load_config()
    parser = argparse.ArgumentParser(prog="python -m front", description="The demo front web page.")
    parser.add_argument("--host", default=cfg.host)
    parser.add_argument("--port", type=int, default=cfg.port)
    args = parser.parse_args(argv)
    app = create_app(cfg)
    print(f"front on http://{args.host}:{args.port}/ — API {cfg.api_url}, "
          f"callbacks {cfg.callback_url or 'off (FRONT_PUBLIC_URL unset): polling the API'}", flush=True)
    app.run(host=args.host, port=args.port, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
