"""Job state: a Redis hash per job, written at every transition, mirrored to `job.json` on disk.

The job store is the platform's own record, independent of dramatiq's messages: a job is never
"PENDING forever" because a result backend expired, and an unknown id is a 404. Transitions are
checked atomically in Redis (a Lua script), so a cancel racing with a worker picking the job up
ends in exactly one state. `job.json` beside the results keeps the final state after Redis forgets.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from . import keys
from .config import Config
from .storage import APP_NAME, JOB_FILE, is_tracking_id, job_folder, write_json

log = logging.getLogger(__name__)

PENDING, STARTED, SUCCESS, FAILURE, CANCELLED = "PENDING", "STARTED", "SUCCESS", "FAILURE", "CANCELLED"
STATES = (PENDING, STARTED, SUCCESS, FAILURE, CANCELLED)
TERMINAL = frozenset({SUCCESS, FAILURE, CANCELLED})
# new state -> the states it may come from. STARTED -> STARTED is a re-delivery after a worker died.
ALLOWED_FROM = {
    STARTED: (PENDING, STARTED),
    SUCCESS: (STARTED,),
    FAILURE: (PENDING, STARTED),
    CANCELLED: (PENDING, STARTED),
}
MAX_ERRORS_KEPT = 1000
LOST = "the job store (Redis) lost this job before it ended; please start it again"

# KEYS: job hash, old-state index prefix. ARGV: new state, allowed (comma list), ttl, now, id, field/value pairs.
TRANSITION_LUA = """
local current = redis.call('HGET', KEYS[1], 'state')
if not current then return false end
local allowed = false
for state in string.gmatch(ARGV[2], '[^,]+') do
  if state == current then allowed = true end
end
if not allowed then return current end
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'state', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZREM', KEYS[2] .. current, ARGV[5])
redis.call('ZADD', KEYS[2] .. ARGV[1], ARGV[4], ARGV[5])
return 'OK'
"""


def iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds") if ts else None


@dataclass
class Job:
    tracking_id: str
    app: str
    experiment_id: str = ""
    state: str = PENDING
    created_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    done: int = 0
    total: int = 0
    error: str = ""
    notify_url: str = ""
    base_url: str = ""
    message_id: str = ""
    attempts: int = 0
    worker: str = ""
    params: dict = field(default_factory=dict)
    documents: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    output: Any = None

    # Redis keeps strings: JSON-encode the structured fields.
    JSON_FIELDS = ("params", "documents", "timings", "output")

    def as_dict(self) -> dict[str, Any]:
        """The fields, shallow (dataclasses.asdict deep-copies, which costs on the /start path)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_redis(self) -> dict[Any, str]:
        return {name: json.dumps(value) if name in self.JSON_FIELDS else str(value)
                for name, value in self.as_dict().items()}

    @classmethod
    def from_redis(cls, raw: Mapping[Any, Any]) -> Job:
        data = {k.decode(): v.decode() for k, v in raw.items()}
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            if f.name in cls.JSON_FIELDS:
                kwargs[f.name] = json.loads(value) if value else None
            elif f.type in ("int", int):
                kwargs[f.name] = int(float(value or 0))
            elif f.type in ("float", float):
                kwargs[f.name] = float(value or 0)
            else:
                kwargs[f.name] = value
        return cls(**kwargs)

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    def urls(self, cfg: Config) -> dict[str, str]:
        """Absolute URLs of the job's status and result (PUBLIC_URL, else the URL it was submitted to)."""
        base = f"{(cfg.public_url or self.base_url).rstrip('/')}/{self.app}/{self.tracking_id}"
        return {"status_url": f"{base}/status", "result_url": f"{base}/result"}

    def progress(self, now: float | None = None) -> dict:
        percent = round(100.0 * self.done / self.total, 1) if self.total else (100.0 if self.state == SUCCESS else 0.0)
        eta = None
        if self.state == STARTED and self.done and self.total > self.done:
            elapsed = (now or time.time()) - self.started_at
            eta = round(elapsed / self.done * (self.total - self.done), 1)
        return {"done": self.done, "total": self.total, "percent": percent, "eta_s": eta}


class JobStore:
    """Reads and writes jobs; the only code that touches the `job:*` keys."""

    def __init__(self, client: redis.Redis, cfg: Config):
        self.redis = client
        self.cfg = cfg
        self._transition = client.register_script(TRANSITION_LUA)

    key = staticmethod(keys.job)
    errors_key = staticmethod(keys.job_errors)
    log_key = staticmethod(keys.job_log)

    @staticmethod
    def index_prefix(app: str) -> str:
        return f"jobs:{app}:"

    def create(self, job: Job) -> None:
        job.created_at = job.created_at or time.time()
        pipe = self.redis.pipeline()
        pipe.hset(self.key(job.tracking_id), mapping=job.to_redis())
        pipe.expire(self.key(job.tracking_id), self.cfg.job_ttl_s)
        pipe.zadd(self.index_prefix(job.app) + job.state, {job.tracking_id: job.created_at})
        pipe.execute()
        self.write_snapshot(job, extras=False)

    def get(self, app: str, tracking_id: str) -> Job | None:
        """From Redis, else from `job.json` (state outlives Redis); None if this app has no such job."""
        raw = self.redis.hgetall(self.key(tracking_id))
        if raw:
            job = Job.from_redis(raw)
            return job if job.app == app else None
        path = job_folder(self.cfg, app, tracking_id) / JOB_FILE
        if path.is_file():
            data = json.loads(path.read_text())
            job = Job(**{f.name: data[f.name] for f in fields(Job) if f.name in data})
            if not job.finished:  # its message went with Redis: it will never run, say so
                job.state, job.error = FAILURE, LOST
            return job
        return None

    def transition(self, job: Job, state: str, **changes: Any) -> bool:
        """Move `job` to `state` if its current state allows it; update `job` and `job.json`.
        Returns False (and reloads `job`) when another process got there first."""
        now = time.time()
        if state in TERMINAL:
            changes.setdefault("finished_at", now)
        if state == STARTED:
            changes.setdefault("started_at", now)
        candidate = Job(**{**job.as_dict(), **changes, "state": state})
        encoded = candidate.to_redis()
        args: list[Any] = [state, ",".join(ALLOWED_FROM[state]), self.cfg.job_ttl_s, now, job.tracking_id]
        for name in changes:
            args += [name, encoded[name]]
        outcome = self._transition(keys=[self.key(job.tracking_id), self.index_prefix(job.app)], args=args)
        if outcome != b"OK":
            self.refresh(job)
            return False
        job.__dict__.update(candidate.__dict__)
        self.write_snapshot(job)
        return True

    def update(self, job: Job, **changes: Any) -> None:
        """Fields that change within a state (progress, totals, timings): Redis only."""
        job.__dict__.update(changes)
        encoded = job.to_redis()
        self.redis.hset(self.key(job.tracking_id), mapping={name: encoded[name] for name in changes})

    def refresh(self, job: Job) -> Job:
        fresh = self.get(job.app, job.tracking_id)
        if fresh:
            job.__dict__.update(fresh.__dict__)
        return job

    # -- per-image errors and the log tail --------------------------------------------------
    def clear_errors(self, job: Job) -> None:
        """Forget a previous attempt's per-image errors (a re-delivered job starts over)."""
        self.redis.delete(self.errors_key(job.tracking_id))

    def add_error(self, job: Job, error: dict) -> None:
        key = self.errors_key(job.tracking_id)
        pipe = self.redis.pipeline()
        pipe.rpush(key, json.dumps(error))
        pipe.ltrim(key, 0, MAX_ERRORS_KEPT - 1)
        pipe.expire(key, self.cfg.job_ttl_s)
        pipe.execute()

    def log(self, job: Job, message: str) -> None:
        key = self.log_key(job.tracking_id)
        line = f"{iso(time.time())} {message}"
        pipe = self.redis.pipeline()
        pipe.rpush(key, line)
        pipe.ltrim(key, -self.cfg.log_tail_lines, -1)
        pipe.expire(key, self.cfg.job_ttl_s)
        pipe.execute()

    # -- counts, snapshots ------------------------------------------------------------------
    def counts(self, app: str) -> dict[str, int]:
        """Jobs per state for `app`; forgets index entries older than the job TTL."""
        prefix, oldest = self.index_prefix(app), time.time() - self.cfg.job_ttl_s
        pipe = self.redis.pipeline()
        for state in STATES:
            pipe.zremrangebyscore(prefix + state, "-inf", oldest)
            pipe.zcard(prefix + state)
        replies = pipe.execute()
        return {state: int(replies[2 * i + 1]) for i, state in enumerate(STATES)}

    def write_snapshot(self, job: Job, extras: bool = True) -> None:
        """`job.json` beside the results, with the errors and log tail when Redis has them
        (`extras=False`: a new job has none, so do not ask)."""
        data = job.as_dict()
        try:
            if extras:
                data["errors"], data["log"], _ = self.extras(job, MAX_ERRORS_KEPT)
        except redis.RedisError:
            pass
        try:
            write_json(job_folder(self.cfg, job.app, job.tracking_id) / JOB_FILE, data)
        except OSError as exc:  # e.g. a full disk: Redis keeps the state; the next transition writes again
            log.warning("job %s: job.json not written: %s", job.tracking_id, exc)

    def extras(self, job: Job, limit: int = 100) -> tuple[list[dict], list[str], int]:
        """The job's first errors, its log tail and its error count, in one round trip; from
        `job.json` once Redis forgot a finished job (a started job always has a log line)."""
        errors_key, log_key = self.errors_key(job.tracking_id), self.log_key(job.tracking_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.lrange(errors_key, 0, limit - 1)
        pipe.lrange(log_key, 0, -1)
        pipe.llen(errors_key)
        errors, log, count = pipe.execute()
        if not log and job.finished:
            path = job_folder(self.cfg, job.app, job.tracking_id) / JOB_FILE
            data = json.loads(path.read_text()) if path.is_file() else {}
            return data.get("errors", [])[:limit], data.get("log", []), len(data.get("errors", []))
        return [json.loads(e) for e in errors], [line.decode() for line in log], int(count)


@dataclass(frozen=True)
class FinishedJob:
    """An ended job as another demo sees it (to chain on its results): read-only."""

    app: str
    tracking_id: str
    state: str
    folder: Path
    output: Any = None
    params: dict = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.state == SUCCESS


def read_finished(cfg: Config, app: str, tracking_id: str, client: redis.Redis | None = None) -> FinishedJob | None:
    """The ended job `app/tracking_id`: from the `job.json` the store wrote beside its results (it
    outlives Redis's record), or, with `client`, from Redis when the worker has ended the job there
    but not yet mirrored it to disk (a client that saw SUCCESS may chain on it at once); None when
    there is no such job, it is unreadable, or it has not ended."""
    if not APP_NAME.match(app) or not is_tracking_id(tracking_id):
        return None
    folder = job_folder(cfg, app, tracking_id)
    try:
        data = json.loads((folder / JOB_FILE).read_text())
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict) or data.get("state") not in TERMINAL:
        data = _ended_in_redis(client, app, tracking_id) if client is not None else None
        if data is None:
            return None
    return FinishedJob(app, tracking_id, data["state"], folder, data.get("output"), data.get("params") or {})


def _ended_in_redis(client: redis.Redis, app: str, tracking_id: str) -> dict | None:
    try:
        raw = client.hgetall(keys.job(tracking_id))
    except redis.RedisError:
        return None
    if not raw:
        return None
    job = Job.from_redis(raw)
    return job.as_dict() if job.app == app and job.state in TERMINAL else None


def job_path(cfg: Config, job: Job) -> Path:
    return job_folder(cfg, job.app, job.tracking_id)


def ended_jobs_older_than(cfg: Config, app: str, seconds: float) -> list[str]:
    """Tracking ids of the app's ended jobs whose job.json was last written `seconds` ago or more
    (read from disk: Redis may have forgotten them)."""
    root = cfg.results_folder / app
    if not root.is_dir():
        return []
    limit = time.time() - seconds
    found = []
    for folder in root.iterdir():
        record = folder / JOB_FILE
        if not record.is_file() or record.stat().st_mtime > limit:
            continue
        try:
            state = json.loads(record.read_text()).get("state")
        except ValueError:
            continue
        if state in TERMINAL:
            found.append(folder.name)
    return found
