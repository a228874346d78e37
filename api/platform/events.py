"""What a job announces to its client's `notify_url` at each step, through the callback outbox.

Callback events are STARTED, PROGRESS, SUCCESS, ERROR and CANCELLED: a FAILURE state is announced
as ERROR, the name discover-demo (the reference front-end) expects; `state` carries the platform's.
"""
from __future__ import annotations

import logging

import redis

from .callbacks import Outbox
from .config import Config
from .jobs import CANCELLED, FAILURE, STARTED, SUCCESS, Job

log = logging.getLogger(__name__)

EVENT_OF_STATE = {STARTED: "STARTED", SUCCESS: "SUCCESS", FAILURE: "ERROR", CANCELLED: "CANCELLED"}


def announce(outbox: Outbox, cfg: Config, job: Job, event: str | None = None) -> None:
    """Queue the callback for `job`'s current state (or `event`, e.g. PROGRESS). Never raises:
    a callback that cannot be queued must not fail the job."""
    if not job.notify_url:
        return
    payload = {
        "event": event or EVENT_OF_STATE[job.state],
        "state": job.state,
        "app": job.app,
        "tracking_id": job.tracking_id,
        "experiment_id": job.experiment_id,
        "progress": job.progress(),
        "result_url": job.urls(cfg)["result_url"] if job.state == SUCCESS else None,
        "error": job.error or None,
    }
    if job.state == SUCCESS:
        payload["output"] = job.output
    try:
        outbox.push(job.notify_url, payload)
    except redis.RedisError as exc:
        log.warning("callback for job %s not queued: %s", job.tracking_id, exc)
