"""GPU worker API for image-analysis demos.

`api.platform` is the job platform (config, routes, jobs, queue, inputs, callbacks, results);
`api.demos` holds one package per demo. Start here: `create_app()`, or `python -m api --help`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from flask import Flask

    from .platform.config import Config


def create_app(cfg: "Config | None" = None) -> "Flask":
    """The Flask app with every demo of `INSTALLED_APPS` mounted (gunicorn: `api:create_app()`)."""
    from .platform.app import create_app as _create_app

    return _create_app(cfg)
