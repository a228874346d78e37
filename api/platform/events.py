"""What a job announces at each step: to its client's `notify_url` through the callback outbox, and
to whoever follows it live (GET /<app>/<id>/events) through a per-job Redis stream.

Events are STARTED, PROGRESS, SUCCESS, ERROR and CANCELLED: a FAILURE state is announced as ERROR,
the name discover-demo (the reference front-end) expects; `state` carries the platform's. Every
event is recorded in the job's stream, notify_url or not, with the `event_id` and `timestamp` its
callback carries, so a client may follow both and de-duplicate by id.
"""
from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import redis

from . import keys
from .callbacks import Outbox
from .config import Config
from .jobs import CANCELLED, FAILURE, STARTED, SUCCESS, Job, JobStore

log = logging.getLogger(__name__)

EVENT_OF_STATE = {STARTED: "STARTED", SUCCESS: "SUCCESS", FAILURE: "ERROR", CANCELLED: "CANCELLED"}
TERMINAL_EVENTS = frozenset({"SUCCESS", "ERROR", "CANCELLED"})


def payload(cfg: Config, job: Job, event: str | None = None) -> dict:
    """The event for `job`'s current state (or `event`, e.g. PROGRESS), as callbacks send it, without
    its id and time (`announce` adds them)."""
    body = {
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
        body["output"] = with_results_url(cfg, job)
    return body


# aikon-api's clients read a SUCCESS's per-document results from `output.results_url`; aikon.py serves them.
DOCUMENT_RESULT_PATH = "{app}/{tracking_id}/documents/{doc_uid}"
# aikon-api's name, as a `doc_pair`, for the whole dataset's similarity scores (in its shape, aikon.py).
DATASET_PAIR = "dataset"


def with_results_url(cfg: Config, job: Job) -> Any:
    """The job's output, plus `results_url` when it has per-document results, as aikon-api's clients
    read them. Regions (a `files` object keyed by document uid, with `annotations`): `[{"doc_id",
    "result_url"}]`, each URL ending in the document's uid: aikon-demo files a result under its URL's
    last segment beside the output's `annotations` (keyed by uid), so the two land on one key instead
    of counting twice. Similarity (a `per_document` object of per-pair file URLs, with `pairs_url`):
    `[{"doc_pair": "<doc_a>-<doc_b>", "result_url"}]` for each of those files, and `{"doc_pair":
    "dataset"}` for every score in aikon-api's shape, the one entry aikon-demo fetches. Everything
    else is the output as the demo returned it (discover-demo's fields unchanged)."""
    output = job.output
    if not isinstance(output, dict):
        return output
    base = (cfg.public_url or job.base_url).rstrip("/")

    def served(doc_uid: str) -> str:
        return f"{base}/" + DOCUMENT_RESULT_PATH.format(app=job.app, tracking_id=job.tracking_id, doc_uid=doc_uid)

    files, pairs = output.get("files"), output.get("per_document")
    results: list[dict] = []
    if isinstance(files, dict):
        results = [{"doc_id": doc_uid, "result_url": served(doc_uid)}
                   for doc_uid, entry in files.items() if isinstance(entry, dict) and entry.get("annotations")]
    elif isinstance(pairs, dict) and output.get("pairs_url"):
        results = [{"doc_pair": name, "result_url": url} for name, url in sorted(pairs.items())
                   if isinstance(url, str)]
        results.append({"doc_pair": DATASET_PAIR, "result_url": served(DATASET_PAIR)})
    return {**output, "results_url": results} if results else output


def record(client: redis.Redis, cfg: Config, tracking_id: str, event: dict) -> None:
    """Append `event` to the job's stream: bounded (the oldest trimmed first) and expiring with the
    job's state, so following a job costs Redis a fixed amount per job."""
    key = keys.job_events(tracking_id)
    fields: dict[Any, Any] = {"id": event["event_id"], "event": event["event"],
                              "data": json.dumps(event, default=str)}
    pipe = client.pipeline(transaction=True)
    pipe.xadd(key, fields, maxlen=max(1, cfg.events_stream_length), approximate=True)
    pipe.expire(key, cfg.job_ttl_s)
    pipe.execute()


def announce(outbox: Outbox, cfg: Config, job: Job, event: str | None = None) -> None:
    """Record the event for `job`'s current state (or `event`) in its stream and queue its callback.
    Never raises: an event that cannot be recorded or queued must not fail the job."""
    body = payload(cfg, job, event)
    body["event_id"] = uuid.uuid4().hex
    body["timestamp"] = datetime.now(UTC).isoformat(timespec="milliseconds")
    try:
        record(outbox.redis, cfg, job.tracking_id, body)
    except redis.RedisError as exc:
        log.warning("event %s of job %s not recorded: %s", body["event"], job.tracking_id, exc)
    if not job.notify_url:
        return
    try:
        outbox.push(job.notify_url, body)
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
