"""The front web page: pick a demo, give images (uploads, image URLs or a IIIF manifest), follow
the job live, and see its result drawn over the images.

A separate Flask app, deployed apart from the API (it reaches the API through the spiped tunnel
and receives its callbacks); it imports nothing from `api`. `python -m front` runs it; under
gunicorn: `gunicorn -w 2 -k gthread --threads 8 -b 127.0.0.1:8000 'front:create_app()'`.
"""
from __future__ import annotations

import secrets
from datetime import UTC, datetime

from flask import Flask, Response, render_template

from . import pages, proxy, receiver, words
from .api_client import ApiClient
from .config import FrontConfig, load_config
from .store import JobStore

__all__ = ["create_app", "load_config", "FrontConfig"]

CSP = ("default-src 'self'; img-src 'self' data: http: https:; style-src 'self'; script-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


def create_app(config: FrontConfig | None = None) -> Flask:
    """The front app for `config` (default: front/.env and the environment)."""
    cfg = config or load_config()
    app = Flask(__name__, static_folder="static", template_folder="templates")
    app.config.update(FRONT=cfg, SECRET_KEY=cfg.secret_key or secrets.token_hex(32),
                      MAX_CONTENT_LENGTH=cfg.max_upload_bytes, TEMPLATES_AUTO_RELOAD=False)
    app.extensions["front_api"] = ApiClient(cfg)
    app.extensions["front_store"] = JobStore(cfg.data_folder / "front.sqlite3")

    app.register_blueprint(pages.bp)  # HTML views and forms
    app.register_blueprint(proxy.bp)  # the job's state and result files, fetched from the API
    app.register_blueprint(receiver.bp)  # POST /callback, the API's signed events
    app.add_template_filter(words.state_words, "state_words")
    app.add_template_filter(lambda t: datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds"), "isotime")
    app.add_template_filter(lambda t: datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC"),
                            "shorttime")

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    @app.errorhandler(404)
    def not_found(exc):
        return render_template("error.html", title="Not found",
                               message="There is no such page, or no such job on this front."), 404

    @app.errorhandler(413)
    def too_large(exc):
        return render_template("error.html", title="Too large",
                               message=f"The files are larger than this front accepts "
                                       f"({cfg.max_upload_bytes // (1024 * 1024)} MiB in one form)."), 413

    @app.errorhandler(502)
    def bad_gateway(exc):
        return render_template("error.html", title="The API did not answer as expected",
                               message=getattr(exc, "description", "") or "Try again in a moment."), 502

    return app
