"""When to come back: the Retry-After of a 429 (queue full) and the estimated wait of /qsizes and /monitor.

A client told only "queue full" retries at once, in a loop, or gives up; told "come back in 40 s"
it waits the right time. The estimate reads what the queue's workers did lately: the mean
duration (start to end) of the last jobs they finished within the hour, found through the job
store's end index and the jobs' own hashes (so nothing else has to record anything), divided by
the live workers serving the queue. One job then ends every `seconds_per_job`, so a full queue has
room again after about that long, and the jobs waiting now are taken after `waiting` times that.
No live worker on the queue: nothing drains, the answer is the cap (RETRY_AFTER_MAX_S); no job
finished lately: a short guess. The answers the API gives without Redis (503) are in errors.py.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

from . import keys
from .config import Config
from .jobs import FAILURE, SUCCESS, JobStore
from .queue import Platform

RECENT_S = 3600.0  # jobs that ended within the last hour...
RECENT_JOBS = 20  # ...at most this many of the latest
UNKNOWN_RETRY_S = 5  # workers live but no job ended lately: a short guess


@dataclass(frozen=True)
class Estimate:
    waiting: int
    workers: int
    seconds_per_job: float | None  # one job ends this often on this queue (None: none ended lately)

    @property
    def wait_s(self) -> float | None:
        """Seconds until the jobs waiting now have all been taken by a worker (None: unknown, or
        no worker to take them)."""
        if not self.workers:
            return None
        if not self.waiting:
            return 0.0
        return None if self.seconds_per_job is None else round(self.waiting * self.seconds_per_job, 1)

    def retry_after(self, cap: int) -> int:
        """Whole seconds until a full queue likely has room again (one more job ended), within [1, cap]."""
        if not self.workers:
            return max(1, cap)
        guess = UNKNOWN_RETRY_S if self.seconds_per_job is None else math.ceil(self.seconds_per_job)
        return max(1, min(cap, guess))

    def as_dict(self) -> dict:
        per_job = None if self.seconds_per_job is None else round(self.seconds_per_job, 2)
        return {"estimated_wait_s": self.wait_s, "seconds_per_job": per_job}


def estimate(platform: Platform, cfg: Config, app: str, waiting: int, now: float | None = None) -> Estimate:
    """The estimate for `app`'s queue (shared with the demos that `DEMO_QUEUES` puts on it), with
    `waiting` messages in it. A handful of Redis reads, two round trips plus the live workers."""
    now = time.time() if now is None else now
    queue = cfg.queue_for(app)
    apps = sorted({a for a in platform.actors if cfg.queue_for(a) == queue} | {app})
    client = platform.client
    pipe = client.pipeline(transaction=False)
    for name in apps:
        for state in (SUCCESS, FAILURE):
            pipe.zrevrangebyscore(JobStore.index_prefix(name) + state, now, now - RECENT_S,
                                  start=0, num=RECENT_JOBS, withscores=True)
    ends = sorted((score, keys.text(tid)) for reply in pipe.execute() for tid, score in reply)[-RECENT_JOBS:]
    durations = []
    if ends:
        pipe = client.pipeline(transaction=False)
        for _, tracking_id in ends:
            pipe.hmget(keys.job(tracking_id), ["started_at", "finished_at"])
        for started, finished in pipe.execute():
            try:
                duration = float(finished) - float(started)
            except (TypeError, ValueError):  # expired, or ended without starting (refused at once)
                continue
            if float(started) > 0 and duration >= 0:
                durations.append(duration)
    workers = sum(1 for w in platform.live_workers() if not w.get("queues") or queue in w["queues"])
    per_job = sum(durations) / len(durations) / max(workers, 1) if durations else None
    return Estimate(waiting=waiting, workers=workers, seconds_per_job=per_job)
