"""What request handlers share: the config, the demos and the clients, one set per app."""
from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from .callbacks import Outbox
from .config import Config
from .demo import Demo
from .jobs import JobStore
from .queue import Platform


@dataclass
class Services:
    cfg: Config
    demos: dict[str, Demo]
    platform: Platform
    store: JobStore
    outbox: Outbox


def services() -> Services:
    """The current app's services (`create_app` puts them in `app.extensions["api"]`)."""
    return current_app.extensions["api"]
