"""The queue: a dramatiq RedisBroker, one actor per installed demo, and the middleware seams.

Each demo gets the actor `run_<app>` on the queue `cfg.queue_for(app)` (its own name unless
`DEMO_QUEUES` groups GPU demos on one queue). The actor's only argument is the tracking id; all
job data lives in the job store. Retries happen for infrastructure failures only (Redis lost,
disk full); a bad input ends the job FAILURE at once. Cancel goes through dramatiq-abort.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import CurrentMessage, Middleware, TimeLimitExceeded
from dramatiq_abort import Abort, Abortable, abort
from dramatiq_abort.backends import RedisBackend
from dramatiq_abort.middleware import AbortMode
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from . import keys
from .config import Config

log = logging.getLogger(__name__)

NAMESPACE = "dramatiq"
WORKERS_SEEN = "workers:seen"  # sorted set: worker id -> last heartbeat (unix time)
WORKERS_INFO = "workers:info"  # hash: worker id -> JSON (pid, host, queues, current job)
# Where dramatiq keeps a job's message (see `Platform.whereabouts`).
WAITING, HELD, DEAD, GONE = "waiting", "held", "dead", "gone"
# Failures of the machine, not of the job: worth another try once the machine is better.
INFRASTRUCTURE_ERRNOS = {errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EROFS}


def is_infrastructure_error(exc: BaseException) -> bool:
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return True
    return isinstance(exc, OSError) and exc.errno in INFRASTRUCTURE_ERRNOS


class PatientRetry(Retry):
    """Retries a Redis command until `patience_s` have passed since its first failure.

    Why: a worker in the middle of a job must wait out a Redis restart (a crash, a failover, an
    upgrade) rather than give up, since a job that raises while Redis is away cannot even be
    re-queued and would be lost. Only workers use it: the API answers 503 at once instead."""

    def __init__(self, patience_s: float):
        super().__init__(ExponentialBackoff(cap=2.0, base=0.05), retries=1_000_000)
        self.patience_s = patience_s

    def call_with_retry(self, do, fail, is_retryable=None, with_failure_count=False):
        self._backoff.reset()
        failures, deadline = 0, None
        while True:
            try:
                return do()
            except self._supported_errors as error:
                if is_retryable and not is_retryable(error):
                    raise
                failures += 1
                fail(error, failures) if with_failure_count else fail(error)
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.patience_s
                    log.warning("Redis unreachable (%s); waiting up to %.0f s for it", error, self.patience_s)
                if now >= deadline:
                    raise
                time.sleep(min(self._backoff.compute(failures), deadline - now))


def redis_client(url: str, patience_s: float = 0.0) -> redis.Redis:
    """The Redis client of a platform process; with `patience_s`, commands wait out an outage."""
    if patience_s > 0:
        return redis.Redis.from_url(url, health_check_interval=30, retry=PatientRetry(patience_s))
    return redis.Redis.from_url(url, health_check_interval=30)


def worker_command(queues: Iterable[str], python: str = sys.executable, extra: Sequence[str] = ()) -> list[str]:
    """The command line of one worker process, as every launcher builds it (`serve`, the stack,
    tests, benches): one process, one thread (a model per process), the given queues."""
    return [python, "-m", "dramatiq", "api.worker", "-p", "1", "-t", "1", "-Q", *sorted(set(queues)), *extra]


def queue_key(queue: str) -> str:
    """dramatiq's Redis list of the messages waiting on `queue`."""
    return f"{NAMESPACE}:{queue}"


def wake_key(queue: str) -> str:
    return f"{NAMESPACE}:wake:{queue}"


class _WakeableConsumer(_RedisConsumer):
    """dramatiq's Redis consumer, but an idle one waits on a wake-up list (BLPOP) instead of
    sleeping with back-off, so a job sent to an idle worker starts within a millisecond or two
    rather than after up to a second of polling. `Platform.enqueue` pushes the wake-ups."""

    def __init__(self, broker, queue_name, prefetch, timeout):
        super().__init__(broker, queue_name, prefetch, timeout)
        self.idle_timeout_s = max(timeout / 1000, 0.1)
        self.timeout = 0  # the parent's back-off sleep becomes zero

    def __next__(self):
        message = super().__next__()
        if message is None and self.outstanding_message_count < self.prefetch:
            try:
                self.broker.client.blpop([wake_key(self.queue_name)], timeout=self.idle_timeout_s)
            except redis.ConnectionError as exc:
                raise ConnectionClosed(exc) from None
        elif message is None:
            time.sleep(0.01)  # busy with prefetched work: nothing to wait for on the queue
        return message


class WakeableRedisBroker(RedisBroker):
    @property
    def consumer_class(self):
        return _WakeableConsumer


def actor_name(app: str) -> str:
    return f"run_{app}"


def should_retry(retries: int, exc: BaseException, max_retries: int) -> bool:
    """Retry infrastructure failures only; never bad input, a time limit or a cancel."""
    if isinstance(exc, (TimeLimitExceeded, Abort)):
        return False
    return is_infrastructure_error(exc) and retries < max_retries


class Platform:
    """The broker and the actors of the installed demos, built the same way in API and workers."""

    def __init__(self, cfg: Config, apps: Iterable[str], run_job: Callable[[str, str], None] | None = None,
                 redis_patience_s: float = 0.0):
        self.cfg = cfg
        self.client = redis_client(cfg.redis_url, redis_patience_s)
        self.abortable = Abortable(backend=RedisBackend(client=self.client))
        self.broker = WakeableRedisBroker(
            client=self.client,
            namespace=NAMESPACE,
            heartbeat_timeout=int(cfg.broker_heartbeat_timeout_s * 1000),
            maintenance_chance=cfg.broker_maintenance_chance,
        )
        self.job_ends = JobEnds()
        self.heartbeat = WorkerHeartbeat(self)
        for middleware in (self.abortable, CurrentMessage(), self.job_ends, self.heartbeat):
            self.broker.add_middleware(middleware)
        dramatiq.set_broker(self.broker)
        self.actors: dict[str, dramatiq.Actor] = {}
        for app in apps:
            self.actors[app] = dramatiq.Actor(
                _bind(run_job, app), broker=self.broker, actor_name=actor_name(app),
                queue_name=self.cfg.queue_for(app), priority=0,
                options={
                    "time_limit": cfg.job_time_limit_s * 1000,
                    "max_retries": cfg.infra_max_retries,
                    "min_backoff": 1000, "max_backoff": 60_000,
                    "retry_when": lambda retries, exc: should_retry(retries, exc, cfg.infra_max_retries),
                    "max_age": None,
                },
            )

    # -- API side -----------------------------------------------------------------------------
    def message_for(self, app: str, tracking_id: str) -> dramatiq.Message:
        """The message that will run this job; its id is known before it is sent."""
        return self.actors[app].message(tracking_id)

    def enqueue(self, message: dramatiq.Message) -> str:
        """Send the message, then wake an idle worker of its queue."""
        self.broker.enqueue(message)
        pipe = self.client.pipeline(transaction=False)
        pipe.lpush(wake_key(message.queue_name), 1)
        pipe.ltrim(wake_key(message.queue_name), 0, 63)
        pipe.execute()
        return message.message_id

    def cancel(self, message_id: str, running: bool) -> None:
        """A pending message is skipped when dequeued; a running one is asked to stop at its next
        image, and interrupted after CANCEL_GRACE_S if it does not."""
        abort(message_id, middleware=self.abortable,
              mode=AbortMode.ABORT if running else AbortMode.CANCEL,
              abort_timeout=int(self.cfg.cancel_grace_s * 1000) if running else 0)

    def queue_size(self, queue: str) -> int:
        return int(self.client.llen(queue_key(queue)))

    def queue_sizes(self) -> dict[str, dict[str, int]]:
        """Waiting, delayed (retry back-off) and dead-lettered messages per queue."""
        queues = sorted({self.cfg.queue_for(app) for app in self.actors})
        pipe = self.client.pipeline()
        for q in queues:
            pipe.llen(queue_key(q))
            pipe.llen(queue_key(f"{q}.DQ"))
            pipe.zcard(queue_key(f"{q}.XQ"))
        replies = pipe.execute()
        return {q: {"waiting": replies[3 * i], "delayed": replies[3 * i + 1], "dead": replies[3 * i + 2]}
                for i, q in enumerate(queues)}

    def whereabouts(self, app: str, tracking_id: str) -> str:
        """Where dramatiq has the job's message: WAITING (queued or delayed: a worker will take it),
        HELD (taken by a consumer, in its ack set), DEAD (dead-lettered) or GONE (nowhere).
        Reads every message of the queue: for the reaper's rare suspects, not for a hot path."""
        queue = self.cfg.queue_for(app)
        needle = json.dumps([tracking_id]).encode()
        names = {"": queue, "DQ": f"{queue}.DQ", "XQ": f"{queue}.XQ"}
        found = {kind: [rid for rid, body in self.client.hscan_iter(f"{NAMESPACE}:{name}.msgs") if needle in body]
                 for kind, name in names.items()}
        taken = set()
        for key in self.client.scan_iter(f"{NAMESPACE}:__acks__.*"):
            if key.decode().endswith((f".{queue}", f".{queue}.DQ")):
                taken |= self.client.smembers(key)
        live = found[""] + found["DQ"]
        if any(rid not in taken for rid in live):
            return WAITING
        if live:
            return HELD
        return DEAD if found["XQ"] else GONE

    def live_workers(self) -> list[dict]:
        """Workers whose heartbeat is recent (within three beats)."""
        oldest = time.time() - 3 * self.cfg.worker_heartbeat_s
        gone = self.client.zrangebyscore(WORKERS_SEEN, "-inf", oldest)
        if gone:
            self.client.zrem(WORKERS_SEEN, *gone)
            self.client.hdel(WORKERS_INFO, *gone)
        ids = self.client.zrange(WORKERS_SEEN, 0, -1)
        if not ids:
            return []
        infos = self.client.hmget(WORKERS_INFO, [keys.text(i) for i in ids])
        return [json.loads(info) for info in infos if info]


def _bind(run_job: Callable[[str, str], None] | None, app: str) -> Callable[[str], None]:
    def run(tracking_id: str) -> None:
        if run_job is None:  # the API process never runs jobs
            raise RuntimeError("this process only enqueues")
        run_job(app, tracking_id)

    run.__name__ = actor_name(app)
    return run


class JobEnds(Middleware):
    """Ends a job whose message dramatiq stops handling without running it to the end: dead-lettered
    (retries exhausted) → FAILURE; skipped because it was cancelled (e.g. a running job whose
    worker died before it saw the cancel) → CANCELLED. The runner supplies the two callbacks."""

    def __init__(self):
        self.on_dead_letter: Callable[[str, str, BaseException | None], None] | None = None
        self.on_skipped: Callable[[str, str], None] | None = None

    def before_nack(self, broker, message) -> None:
        if self.on_dead_letter and message.args:
            self._safely(self.on_dead_letter, message, getattr(message, "_exception", None))

    def after_skip_message(self, broker, message) -> None:
        if self.on_skipped and message.args:
            self._safely(self.on_skipped, message)

    @staticmethod
    def _safely(callback, message, *extra) -> None:
        try:
            callback(message.actor_name.removeprefix("run_"), message.args[0], *extra)
        except Exception:  # the message must still be nacked or skipped
            log.exception("could not record the end of job %s", message.args[0])


class WorkerHeartbeat(Middleware):
    """Each worker process says it is alive every WORKER_HEARTBEAT_S, with the job it runs; `/ready`
    and `/monitor` read these instead of asking the processes."""

    def __init__(self, platform: Platform):
        self.platform = platform
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.current_job: dict | None = None
        self.queues: list[str] = []
        self._stop = threading.Event()
        self.started_at = time.time()

    def before_worker_boot(self, broker, worker) -> None:
        # Hold one message at a time: a busy GPU worker must not sit on a job an idle one could run.
        worker.queue_prefetch = 1
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.queues = sorted(worker.consumer_whitelist or broker.queues)
        threading.Thread(target=self._beat_forever, name="heartbeat", daemon=True).start()

    def beat(self) -> None:
        client = self.platform.client
        info = {"id": self.worker_id, "pid": os.getpid(), "host": socket.gethostname(),
                "queues": self.queues, "started_at": self.started_at, "job": self.current_job,
                "device": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
        pipe = client.pipeline()
        pipe.hset(WORKERS_INFO, self.worker_id, json.dumps(info))
        pipe.zadd(WORKERS_SEEN, {self.worker_id: time.time()})
        pipe.execute()

    def _beat_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except redis.RedisError as exc:
                log.warning("heartbeat failed: %s", exc)
            self._stop.wait(self.platform.cfg.worker_heartbeat_s)

    def before_worker_shutdown(self, broker, worker) -> None:
        self._stop.set()
        try:
            self.platform.client.zrem(WORKERS_SEEN, self.worker_id)
            self.platform.client.hdel(WORKERS_INFO, self.worker_id)
        except redis.RedisError:
            pass
