"""The reaper: finds STARTED jobs that nobody will finish, and re-queues or ends them.

dramatiq re-delivers the message of a worker that died, but some jobs fall between the cracks: a
worker that gave up on Redis mid-job (its retry could not be enqueued and its message was dropped),
a message left in the ack set of a consumer that restarted, a dead letter recorded while Redis was
away. Each leaves a job STARTED forever. The reaper runs outside the GPU workers (in the callbacks
process) and, once per REAPER_INTERVAL_S, looks at every STARTED job that no live worker reports as
its current job. A suspect that stays so for a grace period (long enough for dramatiq's own
re-delivery to act first) is re-queued with a new message (the runner then ignores the old one, and
ends the job FAILURE past JOB_MAX_DELIVERIES), or, when its message was dead-lettered, ends FAILURE;
both with a callback.
"""
from __future__ import annotations

import logging
import threading
import time

import redis
from redis.exceptions import LockError

from . import keys
from .callbacks import Outbox
from .config import Config
from .events import end
from .jobs import FAILURE, STARTED, JobStore
from .queue import DEAD, WAITING, Platform

log = logging.getLogger(__name__)

LOCK_KEY = "reaper:lock"  # one reaper pass at a time, whatever the number of callbacks processes
LOCK_TIMEOUT_S = 120


class Reaper:
    def __init__(self, platform: Platform, cfg: Config):
        self.platform = platform
        self.cfg = cfg
        self.store = JobStore(platform.client, cfg)
        self.outbox = Outbox(platform.client, cfg)
        self.suspects: dict[str, float] = {}  # tracking id -> when it was first seen unrun

    @property
    def grace_s(self) -> float:
        """dramatiq re-delivers a dead worker's message after its broker heartbeat timeout, and a
        live worker reports its job within a heartbeat or three: wait for both before acting."""
        return self.cfg.broker_heartbeat_timeout_s + 3 * self.cfg.worker_heartbeat_s

    def sweep(self, now: float | None = None) -> list[str]:
        """One pass; the tracking ids it re-queued or ended."""
        now = time.monotonic() if now is None else now
        lock = self.platform.client.lock(LOCK_KEY, timeout=LOCK_TIMEOUT_S)
        if not lock.acquire(blocking=False):
            return []
        try:
            return self._sweep(now)
        finally:
            try:
                lock.release()
            except LockError:  # held past its timeout: another pass may already run
                pass

    def _sweep(self, now: float) -> list[str]:
        running = {w["job"]["tracking_id"] for w in self.platform.live_workers() if w.get("job")}
        suspects, acted = {}, []
        for app in self.platform.actors:
            for raw in self.platform.client.zrange(self.store.index_prefix(app) + STARTED, 0, -1):
                tracking_id = keys.text(raw)
                if tracking_id in running:
                    continue
                where = self.platform.whereabouts(app, tracking_id)
                if where == WAITING:
                    continue
                first = self.suspects.get(tracking_id, now)
                if now - first < self.grace_s:
                    suspects[tracking_id] = first
                elif self._settle(app, tracking_id, where):
                    acted.append(tracking_id)
        self.suspects = suspects
        return acted

    def _settle(self, app: str, tracking_id: str, where: str) -> bool:
        job = self.store.get(app, tracking_id)
        if job is None or job.state != STARTED:
            return False
        if where == DEAD:
            return end(self.store, self.outbox, self.cfg, job, FAILURE,
                       error="infrastructure failure, retries exhausted (recorded by the reaper)")
        message = self.platform.message_for(app, tracking_id)
        self.store.update(job, message_id=message.message_id)
        self.store.log(job, f"re-queued by the reaper: no worker was running it (worker {job.worker or '?'} "
                            f"gone or no longer on it, message {where})")
        self.platform.enqueue(message)
        log.warning("job %s (%s) re-queued: no live worker ran it and dramatiq held no message to deliver",
                    tracking_id, app)
        return True

    def run(self, stop: threading.Event) -> None:
        """Sweep every REAPER_INTERVAL_S until `stop` is set; Redis trouble waits for the next pass."""
        while not stop.is_set():
            try:
                self.sweep()
            except redis.RedisError as exc:
                log.warning("reaper pass skipped: %s", exc)
            except Exception:  # a reaper that dies would leave jobs stuck unnoticed
                log.exception("reaper pass failed")
            stop.wait(self.cfg.reaper_interval_s)
