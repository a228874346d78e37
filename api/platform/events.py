"""What a job announces to its client's `notify_url` at each step, through the callback outbox.

Callback events are STARTED, PROGRESS, SUCCESS, ERROR and CANCELLED: a FAILURE state is announced
as ERROR, the name discover-demo (the reference front-end) expects; `state` carries the platform's.
"""
from __future__ import annotations

import logging

import redis

from .callbacks import Outbox
from .config import Config
from .jobs import CANCELLED, FAILURE, STARTED, SUCCESS, Job, JobStore

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


def end(store: JobStore, outbox: Outbox, cfg: Config, job: Job, state: str, **changes) -> bool:
    """End `job` in `state` (logged, recorded, announced); False when it had already ended
    (another process got there first), in which case nothing is announced."""
    error = changes.get("error")
    store.log(job, state.lower() + (f": {error}" if error else ""))
    if not store.transition(job, state, **changes):
        log.info("job %s: %s not recorded, it is already %s", job.tracking_id, state, job.state)
        return False
    announce(outbox, cfg, job)
    return True
