"""The dramatiq entry point: `dramatiq api.worker -p 1 -t 1 -Q <queue>`.

Importing this module builds the broker and one actor per installed demo, bound to the job runner.
Models and CUDA are touched only when a job runs, inside this worker process.
"""
from __future__ import annotations

import logging

from .platform.config import ConfigError, load_config
from .platform.registry import load_demos
from .platform.runner import JobRunner

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

config = load_config()
if not config.redis_url:
    raise ConfigError("REDIS_URL is empty: a worker needs the API's Redis (`python -m api serve` sets it)")
runner = JobRunner(config, load_demos(config.installed_apps, config))
broker = runner.platform.broker
