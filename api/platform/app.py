"""The Flask app factory: config, demos, services, auth, error handlers, routes."""
from __future__ import annotations

import hmac
import logging

from flask import Flask, request
from flask.json.provider import DefaultJSONProvider

from . import aikon
from .callbacks import Outbox
from .config import Config, ConfigError, load_config
from .errors import Unauthorized, register_error_handlers
from .jobs import JobStore
from .queue import Platform
from .registry import load_demos
from .routes import demo_blueprint, platform_blueprint
from .services import Services
from .upload_streams import UploadRequest

PUBLIC_ENDPOINTS = {"platform.health"}


def create_app(cfg: Config | None = None) -> Flask:
    cfg = cfg or load_config()
    if not cfg.redis_url:
        raise ConfigError("REDIS_URL is empty: set it, or start everything with `python -m api serve`, "
                          "which runs an embedded Redis")
    demos = load_demos(cfg.installed_apps, cfg)
    platform = Platform(cfg, demos)
    app = Flask(__name__)
    app.request_class = UploadRequest
    app.config["MAX_CONTENT_LENGTH"] = cfg.max_upload_bytes
    app.url_map.merge_slashes = False  # "//" in a result path is refused, not redirected
    if isinstance(app.json, DefaultJSONProvider):
        app.json.sort_keys = False
    app.extensions["api"] = Services(cfg, demos, platform, JobStore(platform.client, cfg),
                                     Outbox(platform.client, cfg))
    register_error_handlers(app)

    @app.before_request
    def _require_token():
        if cfg.api_token and request.endpoint not in PUBLIC_ENDPOINTS:
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), cfg.api_token.encode()):
                raise Unauthorized("missing or wrong token: send `Authorization: Bearer <API_TOKEN>`")

    app.register_blueprint(platform_blueprint)
    for demo in demos.values():
        app.register_blueprint(demo_blueprint(demo))
    aikon.install(app, demos)  # aikon-api's routes and shapes (aikon-demo), after the demos' own
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return app
