"""HTTP routes: the same blueprint for every installed demo, and the platform's global routes.

Paths follow discover-api's so its clients work unchanged: `POST /<app>/start`,
`GET /<app>/<id>/status`, `POST /<app>/<id>/cancel`, `GET /<app>/<id>/result[/<path>]`,
`GET /<app>/qsizes`, `GET /<app>/monitor`, `GET /<app>/models`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
import uuid
from dataclasses import replace
from typing import Any

import redis
from flask import Blueprint, Response, jsonify, request
from werkzeug.datastructures import FileStorage

from . import datasets, metrics, openapi
from .clientjson import json_limit, request_json
from .demo import Demo
from .errors import ApiError, Conflict, InputError, NotFound, QueueFull
from .events import announce
from .inputs import Document, document_from_upload, parse_documents
from .inputs.names import MAX_NAME, safe_filename, unique
from .jobs import CANCELLED, PENDING, STARTED, SUCCESS, Job, ended_jobs_older_than, iso
from .netguard import AddressNotAllowed, check_url
from .queue import INFRASTRUCTURE_ERRNOS, queue_key
from .services import services
from .storage import (
    DISK_KEY, ZIP_NAME, clear_job_files, is_tracking_id, serve_data_file, serve_file,
)

START_FIELDS = ("experiment_id", "notify_url", "documents", "parameters")
log = logging.getLogger(__name__)

platform_blueprint = Blueprint("platform", __name__)


# -- global routes ---------------------------------------------------------------------------------
@platform_blueprint.get("/health")
def health():
    return jsonify(status="ok")


@platform_blueprint.get("/ready")
def ready():
    """Ready when Redis answers and at least one worker sent a heartbeat recently."""
    s = services()
    try:
        s.platform.client.ping()
        workers = s.platform.live_workers()
    except redis.RedisError as exc:
        return jsonify(ready=False, redis=False, workers=0, reason=f"Redis unreachable: {exc}"), 503
    if not workers:
        return jsonify(ready=False, redis=True, workers=0, reason="no worker heartbeat"), 503
    return jsonify(ready=True, redis=True, workers=len(workers))


@platform_blueprint.get("/")
def index():
    s = services()
    return jsonify(apps=list(s.demos), docs="/docs", openapi="/openapi.json", health="/health")


@platform_blueprint.get("/openapi.json")
def openapi_json():
    return jsonify(openapi.spec(services().demos))


@platform_blueprint.get("/docs")
def docs():
    return Response(openapi.html(openapi.spec(services().demos)), mimetype="text/html")


@platform_blueprint.get("/metrics")
def metrics_route():
    s = services()
    counts = {app: s.store.counts(app) for app in s.demos}
    body = metrics.render(s.platform.client, counts, s.platform.queue_sizes(), len(s.platform.live_workers()))
    return Response(body, mimetype="text/plain; version=0.0.4")


# -- datasets: the images jobs read, for clients that cut crops themselves (discover-demo) ----------
def _base_url() -> str:
    return (services().cfg.public_url or request.host_url).rstrip("/")


@platform_blueprint.get("/datasets/<uid>")
def dataset(uid: str):
    return jsonify(datasets.dataset(services().cfg, uid, _base_url()))


@platform_blueprint.get("/datasets/document/<doc_type>/<uid>")
def dataset_document(doc_type: str, uid: str):
    return jsonify(datasets.document(services().cfg, doc_type, uid, _base_url()))


@platform_blueprint.get("/datasets/document/<doc_type>/<uid>/image/<name>")
def dataset_image(doc_type: str, uid: str, name: str):
    cfg = services().cfg
    path = datasets.image_file(cfg, doc_type, uid, name)
    return serve_data_file(cfg, path, f"{name}{datasets.suffix(path)}")


@platform_blueprint.get("/datasets/document/<doc_type>/<uid>/download")
def dataset_download(doc_type: str, uid: str):
    cfg = services().cfg
    response = serve_data_file(cfg, datasets.document_zip(cfg, doc_type, uid), f"{doc_type}_{uid}.zip")
    response.headers["Content-Disposition"] = f'attachment; filename="{doc_type}_{uid}.zip"'
    return response


# -- per-demo routes -------------------------------------------------------------------------------
def demo_blueprint(demo: Demo) -> Blueprint:
    bp = Blueprint(demo.name, __name__, url_prefix=f"/{demo.name}")
    app = demo.name

    @bp.post("/start")
    def start():
        return start_job(demo)

    @bp.get("/<tracking_id>/status")
    def status(tracking_id: str):
        return jsonify(status_body(get_job(app, tracking_id)))

    @bp.post("/<tracking_id>/cancel")
    def cancel(tracking_id: str):
        return cancel_job(get_job(app, tracking_id))

    @bp.get("/<tracking_id>/result")
    def result(tracking_id: str):
        job = get_job(app, tracking_id)
        if job.state != SUCCESS:
            raise Conflict(f"job {tracking_id} is {job.state}; its zip exists once it succeeds")
        return serve_file(services().cfg, app, tracking_id, ZIP_NAME, download_name=f"{app}_{tracking_id}.zip")

    @bp.get("/<tracking_id>/result/<path:relpath>")
    def result_file(tracking_id: str, relpath: str):
        get_job(app, tracking_id)
        return serve_file(services().cfg, app, tracking_id, relpath)

    @bp.get("/qsizes")
    def qsizes():
        s = services()
        queue = s.cfg.queue_for(app)
        sizes = s.platform.queue_sizes()[queue]
        return jsonify(queue=queue, queues={queue: sizes["waiting"]}, **sizes)

    @bp.get("/monitor")
    def monitor():
        return jsonify(monitor_body(app))

    @bp.post("/monitor/clear")
    def monitor_clear():
        """Delete the results (and uploads) of ended jobs older than `days_before` days (form or JSON)."""
        raw = read_request()[0].get("days_before")
        try:
            days = float(raw)
            if not days >= 0:
                raise ValueError
        except (TypeError, ValueError):
            raise InputError("days_before", "required: a number of days, 0 or more") from None
        s = services()
        freed, tracking_ids = 0, []
        for tid in ended_jobs_older_than(s.cfg, app, days * 86400):
            if not is_tracking_id(tid):
                continue
            try:
                freed += clear_job_files(s.cfg, app, tid, s.platform.client)
            except Conflict:  # its end is being written: the next clear takes it
                continue
            tracking_ids.append(tid)
        return jsonify(cleared=len(tracking_ids), bytes_freed=freed, days_before=days, tracking_ids=tracking_ids)

    @bp.post("/monitor/clear/<tracking_id>")
    def monitor_clear_job(tracking_id: str):
        """Delete one ended job's files (a running job's are refused: 409)."""
        s = services()
        job = get_job(app, tracking_id)
        if not job.finished:
            raise Conflict(f"job {tracking_id} is {job.state}; cancel it or wait for it to end")
        freed = clear_job_files(s.cfg, app, tracking_id, s.platform.client)
        return jsonify(cleared=1, bytes_freed=freed, tracking_ids=[tracking_id])

    @bp.get("/models")
    def models():
        found = demo.models()
        if request.args.get("details", "").lower() in ("1", "true", "yes"):
            return jsonify(found)
        return jsonify({name: info.get("updated") for name, info in found.items()})

    extra = demo.blueprint()
    if extra is not None:
        bp.register_blueprint(extra)
    return bp


def get_job(app: str, tracking_id: str) -> Job:
    if not is_tracking_id(tracking_id):
        raise NotFound(f"no job {tracking_id!r} in {app}")
    job = services().store.get(app, tracking_id)
    if job is None:
        raise NotFound(f"no job {tracking_id!r} in {app}")
    return job


def status_body(job: Job) -> dict:
    s = services()
    errors, log, error_count = s.store.extras(job)
    return {
        "tracking_id": job.tracking_id,
        "experiment_id": job.experiment_id,
        "app": job.app,
        "state": job.state,
        "progress": job.progress(),
        "error": job.error or None,
        "errors": errors,
        "error_count": error_count,
        "log": log,
        **job.urls(s.cfg),
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "timings": job.timings,
        "output": job.output,
    }


def monitor_body(app: str) -> dict:
    s = services()
    queue = s.cfg.queue_for(app)
    sizes = s.platform.queue_sizes()
    disk = shutil.disk_usage(s.cfg.data_folder) if s.cfg.data_folder.exists() else None
    results_bytes = int(s.platform.client.get(DISK_KEY.format(app=app)) or 0)
    workers = [w for w in s.platform.live_workers() if not w.get("queues") or queue in w["queues"]]
    return {
        "app": app,
        "queue": queue,
        "queues": sizes,
        "qsizes": {queue: sizes[queue]["waiting"]},
        "dead_letters": sizes[queue]["dead"],
        "workers": workers,
        "jobs": s.store.counts(app),
        "callbacks": {"pending": s.outbox.pending()},
        "total_size": results_bytes,
        "disk": {"results_bytes": results_bytes,
                 "free_bytes": disk.free if disk else None, "total_bytes": disk.total if disk else None},
    }


# -- starting and cancelling -----------------------------------------------------------------------
def read_request() -> tuple[dict, list]:
    """The request's fields and uploaded files, from a JSON object or from a (multipart) form."""
    if request.mimetype == "application/json":
        body = request_json()
        if not isinstance(body, dict):
            raise InputError("body", "not a JSON object")
        return body, []
    if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        if None in request.form or None in request.files:  # a part whose name werkzeug could not read
            raise InputError("body", "a form field without a (readable) name")
        fields = {key: request.form[key] for key in request.form}
        uploads = [f for key in request.files for f in request.files.getlist(key) if f.filename]
        return fields, uploads
    request.max_content_length = json_limit()  # a body of another type is refused unread past this
    if not request.get_data(cache=True):
        return {}, []
    raise ApiError("send JSON (application/json) or a form (multipart/form-data)", status=415,
                   code="unsupported_media_type")


def start_job(demo: Demo):
    """Validate everything first (a 4xx leaves no trace), then save uploads, record, enqueue. A
    failure after that removes what this request saved and frees its Idempotency-Key."""
    s = services()
    body, uploads = read_request()
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
    key = request.headers.get("Idempotency-Key", "").strip()
    binding = ""
    if key:
        request_parts = [experiment_id, notify_url, body.get("documents"), params,
                         [(u.filename, content_hash(u)) for u in uploads]]
        binding = f"{tracking_id}:{hashlib.sha256(canonical_json(request_parts)).hexdigest()}"
        earlier = job_of_idempotency_key(demo.name, key, binding)
        if earlier is not None:
            return start_response(earlier, replayed=True)
    try:
        documents += save_uploads(uploads, tracking_id, taken)
        job = Job(tracking_id=tracking_id, app=demo.name, experiment_id=experiment_id, notify_url=notify_url,
                  base_url=request.host_url, params=params, documents=[d.to_dict() for d in documents])
        create_and_enqueue(demo.name, job)
    except BaseException:
        shutil.rmtree(s.cfg.uploads_folder / tracking_id, ignore_errors=True)
        if binding:
            release_idempotency_key(demo.name, key, binding)
        raise
    return start_response(job)


def save_uploads(uploads: list[FileStorage], tracking_id: str, taken: set[str]) -> list[Document]:
    """Each upload saved as uploads/<tracking_id>/<index>/<safe name>; a file that cannot be saved
    is a 400 naming it, unless the disk is full or failing (the handlers make that a 503)."""
    folder = services().cfg.uploads_folder / tracking_id
    documents = []
    for index, upload in enumerate(uploads):
        name = safe_filename(upload.filename or "", f"upload{index}", max_bytes=MAX_NAME)  # the client's, made safe
        path = folder / f"{index:04d}" / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            upload.save(path)
        except OSError as exc:
            if exc.errno in INFRASTRUCTURE_ERRNOS:
                raise
            raise InputError(upload.name or "files",
                             f"{upload.filename!r} could not be saved: {exc.strerror}") from None
        documents.append(document_from_upload(path, upload.filename, taken))
    return documents


def content_hash(upload: FileStorage) -> str:
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


def create_and_enqueue(app: str, job: Job) -> None:
    """Record and enqueue `job` if its queue has room (429 otherwise). The room is taken atomically
    in Redis, counting requests admitted but not yet enqueued, so concurrent requests cannot
    overfill the queue."""
    s = services()
    queue = s.cfg.queue_for(app)
    token = job.tracking_id
    admit = s.platform.client.register_script(ADMIT_LUA)
    now = time.time()
    if not admit(keys=[queue_key(queue), ADMITTING_KEY.format(queue=queue)],
                 args=[token, now, now - ADMISSION_STALE_S, s.cfg.max_queue_length]):
        raise QueueFull(f"the {queue} queue is full (MAX_QUEUE_LENGTH={s.cfg.max_queue_length}); try again later")
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


def job_of_idempotency_key(app: str, key: str, binding: str) -> Job | None:
    """The job an earlier request with this key started, or None if the key is new (it is then
    bound to `binding`, "<tracking_id>:<fingerprint>", until this request ends: released if it
    fails). The same key with a different request is a 409; so is one still in flight."""
    s = services()
    redis_key = idempotency_redis_key(app, key)
    bound = ""
    while not bound:  # empty: released between SET and GET (that request failed), so bind again
        if s.platform.client.set(redis_key, binding, nx=True, ex=s.cfg.job_ttl_s):
            return None
        bound = (s.platform.client.get(redis_key) or b"").decode()
    bound_id, _, bound_fingerprint = bound.partition(":")
    if bound_fingerprint != binding.partition(":")[2]:
        raise Conflict("this Idempotency-Key was used for a different request")
    earlier = s.store.get(app, bound_id)
    if earlier is None:
        raise Conflict("a request with this Idempotency-Key is still being handled; retry")
    return earlier


def release_idempotency_key(app: str, key: str, binding: str) -> None:
    """Free the key if this request still holds it, so that a retry of a failed request starts a job."""
    client = services().platform.client
    try:
        client.register_script(RELEASE_LUA)(keys=[idempotency_redis_key(app, key)], args=[binding])
    except redis.RedisError as exc:  # Redis is why the request failed: the key expires with its TTL
        log.error("could not release Idempotency-Key %s: %s", idempotency_redis_key(app, key), exc)


def start_response(job: Job, replayed: bool = False):
    urls = job.urls(services().cfg)
    response = jsonify(tracking_id=job.tracking_id, experiment_id=job.experiment_id, state=job.state, **urls)
    response.status_code = 202
    response.headers["Location"] = urls["status_url"]
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def cancel_job(job: Job):
    s = services()
    if job.finished:
        raise Conflict(f"job {job.tracking_id} already ended {job.state}")
    if job.state == PENDING and s.store.transition(job, CANCELLED, error="cancelled by the client"):
        s.platform.cancel(job.message_id, running=False)
        announce(s.outbox, s.cfg, job)
    elif job.state == STARTED:
        s.platform.cancel(job.message_id, running=True)
        s.store.log(job, "cancel requested")
    body = status_body(job)
    body["cancel_requested"] = True
    return jsonify(body), 202
