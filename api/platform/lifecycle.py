"""A job's life as the API drives it: admitted, recorded and enqueued at /start; cancelled.

Routes only translate HTTP into these calls and their results (or `ApiError`s) back into answers;
the worker side of the life is `runner.py`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any, Protocol

import redis

from . import backpressure, keys, retention
from .config import Config
from .demo import Demo
from .errors import Conflict, InputError, QueueFull
from .events import announce
from .inputs import Document, document_from_upload, parse_documents
from .inputs.names import MAX_NAME, safe_filename, unique
from .jobs import CANCELLED, PENDING, STARTED, Job
from .netguard import AddressNotAllowed, check_url
from .queue import INFRASTRUCTURE_ERRNOS, queue_key
from .services import Services
from .upload_streams import save_upload

START_FIELDS = ("experiment_id", "notify_url", "documents", "parameters")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StartRequest:
    """What a client asked for at /start, read from its JSON or form (routes do the reading)."""

    demo: Demo
    fields: dict
    uploads: list[Upload]
    base_url: str
    idempotency_key: str = ""


class Upload(Protocol):
    """An uploaded file as werkzeug gives it (`FileStorage`): a name, a stream, a way to save."""

    name: str | None
    filename: str | None
    stream: Any

    def save(self, dst: Any) -> None: ...


def start_job(s: Services, req: StartRequest) -> tuple[Job, bool]:
    """The job a /start request made, and whether it is an earlier one replayed (same
    Idempotency-Key). Validates everything first (a 4xx leaves no trace), then saves uploads,
    records, enqueues; a failure after that removes what this request saved and frees its key."""
    demo, body, uploads = req.demo, req.fields, req.uploads
    unknown = sorted(set(body) - set(START_FIELDS))
    if unknown:
        raise InputError(unknown[0], f"unknown field; expected {', '.join(START_FIELDS)}")
    params = demo.validate(body.get("parameters"))
    documents = parse_documents(body.get("documents") or [], s.cfg)
    taken = {d.uid for d in documents}
    for extra in demo.extra_documents(params):
        documents.append(replace(extra, uid=unique(extra.uid, taken)))
    experiment_id = str(body.get("experiment_id") or "")
    if len(experiment_id) > 200:
        raise InputError("experiment_id", "at most 200 characters")
    notify_url = str(body.get("notify_url") or "")
    if notify_url:
        try:
            check_url(notify_url, allow_private=s.cfg.allow_private_urls, allowed_hosts=s.cfg.allowed_source_hosts)
        except (AddressNotAllowed, ValueError) as exc:
            raise InputError("notify_url", str(exc)) from None
    if not documents and not uploads:
        raise InputError("documents", "give at least one document, or upload files")

    tracking_id = uuid.uuid4().hex
    key = req.idempotency_key
    binding = ""
    if key:
        request_parts = [experiment_id, notify_url, body.get("documents"), params,
                         [(u.filename, content_hash(u)) for u in uploads]]
        binding = f"{tracking_id}:{hashlib.sha256(canonical_json(request_parts)).hexdigest()}"
        earlier = job_of_idempotency_key(s, demo.name, key, binding)
        if earlier is not None:
            return earlier, True
    try:
        retention.check_room(s.platform.client, s.cfg, retention.upload_bytes(uploads))  # 507 past DATA_MAX_BYTES
        documents += save_uploads(s.cfg, uploads, tracking_id, taken)
        job = Job(tracking_id=tracking_id, app=demo.name, experiment_id=experiment_id, notify_url=notify_url,
                  base_url=req.base_url, params=params, documents=[d.to_dict() for d in documents])
        create_and_enqueue(s, demo.name, job)
    except BaseException:
        shutil.rmtree(s.cfg.uploads_folder / tracking_id, ignore_errors=True)
        if binding:
            release_idempotency_key(s, demo.name, key, binding)
        raise
    return job, False


def save_uploads(cfg: Config, uploads: list[Upload], tracking_id: str, taken: set[str]) -> list[Document]:
    """Each upload saved as uploads/<tracking_id>/<index>/<safe name>; a file that cannot be saved
    is a 400 naming it, unless the disk is full or failing (the handlers make that a 503)."""
    folder = cfg.uploads_folder / tracking_id
    documents = []
    for index, upload in enumerate(uploads):
        name = safe_filename(upload.filename or "", f"upload{index}", max_bytes=MAX_NAME)  # the client's, made safe
        path = folder / f"{index:04d}" / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_upload(upload, path)
        except OSError as exc:
            if exc.errno in INFRASTRUCTURE_ERRNOS:
                raise
            raise InputError(upload.name or "files",
                             f"{upload.filename!r} could not be saved: {exc.strerror}") from None
        documents.append(document_from_upload(path, upload.filename or name, taken))
    return documents


def content_hash(upload: Upload) -> str:
    """sha256 of an uploaded file (read from its spooled copy, then rewound for saving)."""
    digest = hashlib.file_digest(upload.stream, "sha256").hexdigest()
    upload.stream.seek(0)
    return digest


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, default=str).encode()


# Admission to a queue: room is waiting messages + requests admitted and not yet enqueued (a sorted
# set of tokens by time; a token older than ADMISSION_STALE_S is from a process that died mid-way).
ADMITTING_KEY = "admitting:{queue}"
ADMISSION_STALE_S = 60
ADMIT_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
if redis.call('LLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then
    return 0
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""


def create_and_enqueue(s: Services, app: str, job: Job) -> None:
    """Record and enqueue `job` if its queue has room (429 otherwise). The room is taken atomically
    in Redis, counting requests admitted but not yet enqueued, so concurrent requests cannot
    overfill the queue."""
    queue = s.cfg.queue_for(app)
    token = job.tracking_id
    admit = s.platform.client.register_script(ADMIT_LUA)
    now = time.time()
    if not admit(keys=[queue_key(queue), ADMITTING_KEY.format(queue=queue)],
                 args=[token, now, now - ADMISSION_STALE_S, s.cfg.max_queue_length]):
        estimate = backpressure.estimate(s.platform, s.cfg, app, s.cfg.max_queue_length)
        wait = estimate.retry_after(s.cfg.retry_after_max_s)
        raise QueueFull(f"the {queue} queue is full (MAX_QUEUE_LENGTH={s.cfg.max_queue_length}); "
                        f"try again in {wait} s", retry_after=wait)
    try:
        message = s.platform.message_for(app, job.tracking_id)
        job.message_id = message.message_id
        s.store.create(job)
        s.platform.enqueue(message)
    finally:
        s.platform.client.zrem(ADMITTING_KEY.format(queue=queue), token)


# -- Idempotency-Key: idempotency:<app>:<sha256 of the key> -> "<tracking_id>:<request fingerprint>"
def idempotency_redis_key(app: str, key: str) -> str:
    return f"idempotency:{app}:{hashlib.sha256(key.encode()).hexdigest()}"


RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


def job_of_idempotency_key(s: Services, app: str, key: str, binding: str) -> Job | None:
    """The job an earlier request with this key started, or None if the key is new (it is then
    bound to `binding`, "<tracking_id>:<fingerprint>", until this request ends: released if it
    fails). The same key with a different request is a 409; so is one still in flight."""
    redis_key = idempotency_redis_key(app, key)
    bound = ""
    while not bound:  # empty: released between SET and GET (that request failed), so bind again
        if s.platform.client.set(redis_key, binding, nx=True, ex=s.cfg.job_ttl_s):
            return None
        bound = keys.text(s.platform.client.get(redis_key) or b"")
    bound_id, _, bound_fingerprint = bound.partition(":")
    if bound_fingerprint != binding.partition(":")[2]:
        raise Conflict("this Idempotency-Key was used for a different request")
    earlier = s.store.get(app, bound_id)
    if earlier is None:
        retention.check_expired(s.platform.client, s.cfg, app, bound_id)  # 410: the sweeper deleted it
        raise Conflict("a request with this Idempotency-Key is still being handled; retry")
    return earlier


def release_idempotency_key(s: Services, app: str, key: str, binding: str) -> None:
    """Free the key if this request still holds it, so that a retry of a failed request starts a job."""
    client = s.platform.client
    try:
        client.register_script(RELEASE_LUA)(keys=[idempotency_redis_key(app, key)], args=[binding])
    except redis.RedisError as exc:  # Redis is why the request failed: the key expires with its TTL
        log.error("could not release Idempotency-Key %s: %s", idempotency_redis_key(app, key), exc)


def cancel_job(s: Services, job: Job) -> None:
    """Cancel a job: a PENDING one ends CANCELLED now (its message is skipped); a STARTED one is
    asked to stop (its worker ends it CANCELLED between images). An ended one is a 409."""
    if job.finished:
        raise Conflict(f"job {job.tracking_id} already ended {job.state}")
    if job.state == PENDING and s.store.transition(job, CANCELLED, error="cancelled by the client"):
        s.platform.cancel(job.message_id, running=False)
        announce(s.outbox, s.cfg, job)
    elif job.state == STARTED:
        s.platform.cancel(job.message_id, running=True)
        s.store.log(job, "cancel requested")
