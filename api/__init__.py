"""GPU worker API for image-analysis demos.

`api.platform` is the job platform (config, routes, jobs, queue, inputs, callbacks, results);
`api.demos` holds one package per demo, each written against `api.sdk`. Start here:
`create_app()`, or `python -m api --help`.
"""
from __future__ import annotations

from pathlib import Path

from .platform.app import create_app

ROOT = Path(__file__).resolve().parent.parent  # the clone: .env.template, docker-confs/, ...

__all__ = ["ROOT", "create_app"]
