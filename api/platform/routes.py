"""HTTP routes: the same blueprint for every installed demo, and the platform's global routes.

Paths follow discover-api's so its clients work unchanged: `POST /<app>/start`,
`GET /<app>/<id>/status`, `POST /<app>/<id>/cancel`, `GET /<app>/<id>/result[/<path>]`,
`GET /<app>/qsizes`, `GET /<app>/monitor`, `GET /<app>/models`.
"""
from __future__ import annotations

import logging
import shutil

import redis
from flask import Blueprint, Response, current_app, jsonify, request

from . import backpressure, datasets, lifecycle, metrics, openapi, retention, stream
from .clientjson import json_limit, request_json
from .demo import Demo
from .errors import ApiError, Conflict, InputError, NotFound
from .jobs import SUCCESS, Job, ended_jobs_older_than, iso
from .services import services
from .storage import (
    ZIP_NAME,
    clear_job_files,
    disk_bytes,
    is_tracking_id,
    serve_data_file,
    serve_file,
)

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
        fields, uploads = read_request()
        job, replayed = lifecycle.start_job(services(), lifecycle.StartRequest(
            demo, fields, uploads, request.host_url, request.headers.get("Idempotency-Key", "").strip()))
        return start_response(job, replayed)

    @bp.get("/<tracking_id>/status")
    def status(tracking_id: str):
        return jsonify(status_body(get_job(app, tracking_id)))

    @bp.get("/<tracking_id>/events")
    def events(tracking_id: str):
        """The job's events as Server-Sent Events, resumable with Last-Event-ID (stream.py)."""
        s = services()
        job = get_job(app, tracking_id)
        last_event_id = request.headers.get("Last-Event-ID", "").strip()
        return stream.events_response(current_app, s.cfg, s.store, job, last_event_id)

    @bp.post("/<tracking_id>/cancel")
    def cancel(tracking_id: str):
        job = get_job(app, tracking_id)
        lifecycle.cancel_job(services(), job)
        return jsonify({**status_body(job), "cancel_requested": True}), 202

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
        wait = backpressure.estimate(s.platform, s.cfg, app, sizes["waiting"])
        return jsonify(queue=queue, queues={queue: sizes["waiting"]}, **sizes, **wait.as_dict())

    @bp.get("/monitor")
    def monitor():
        return jsonify(monitor_body(app))

    @bp.post("/monitor/clear")
    def monitor_clear():
        """Delete the results (and uploads) of ended jobs older than `days_before` days (form or JSON)."""
        raw = read_request()[0].get("days_before")
        try:
            days = float(raw if raw is not None else "")
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
        retention.check_expired(services().platform.client, services().cfg, app, tracking_id)  # 410 once swept
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
    results_bytes = disk_bytes(s.platform.client, app)
    kept = retention.monitor_fields(s.platform.client, s.cfg)  # bytes per area, what the sweeper removed
    workers = [w for w in s.platform.live_workers() if not w.get("queues") or queue in w["queues"]]
    return {
        "app": app,
        "queue": queue,
        "queues": sizes,
        "qsizes": {queue: sizes[queue]["waiting"]},
        "dead_letters": sizes[queue]["dead"],
        **backpressure.estimate(s.platform, s.cfg, app, sizes[queue]["waiting"]).as_dict(),
        "workers": workers,
        "jobs": s.store.counts(app),
        "callbacks": {"pending": s.outbox.pending()},
        "total_size": results_bytes,
        "disk": {"results_bytes": results_bytes,
                 "free_bytes": disk.free if disk else None, "total_bytes": disk.total if disk else None,
                 "areas": kept["areas"], "data_bytes": kept["data_bytes"], "data_max_bytes": kept["data_max_bytes"],
                 "measured_at": kept["measured_at"]},
        "retention": kept["retention"],
    }


# -- reading requests, answering /start -----------------------------------------------------------
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


def start_response(job: Job, replayed: bool = False):
    urls = job.urls(services().cfg)
    response = jsonify(tracking_id=job.tracking_id, experiment_id=job.experiment_id, state=job.state, **urls)
    response.status_code = 202
    response.headers["Location"] = urls["status_url"]
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response
