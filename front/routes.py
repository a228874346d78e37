"""The front's pages and its callback endpoint (one blueprint).

The browser only ever talks to the front: forms post here, the job page polls here, result files
come through here. The front talks to the API with its token (api_client.py) and remembers jobs in
its own store (store.py), updated by the API's signed callbacks and, when none came lately, by
asking the API's status route.
"""
from __future__ import annotations

import json
import logging
import mimetypes
import re
import secrets
import shutil
import time
from pathlib import Path, PurePosixPath

from flask import (Blueprint, Response, abort, current_app, jsonify, redirect, render_template, request,
                   send_file, stream_with_context, url_for)
from werkzeug.utils import secure_filename

from . import words
from .api_client import ApiClient, ApiProblem
from .callbacks import verify
from .config import FrontConfig
from .forms import FormError, demo_form, documents_of
from .results import primitive_shapes, view_for
from .store import JobStore

log = logging.getLogger(__name__)
bp = Blueprint("front", __name__)

TRACKING_ID = re.compile(r"^[0-9a-f]{32}$")
APP_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
SAFE_RELPATH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"RIFF", b"II*\x00", b"MM\x00*", b"BM")
MAX_INLINE_IMAGES = 40  # vectorization images drawn inline; beyond, their previews and downloads only
# Result files the browser may show inline; anything else (SVG, HTML, JSON…) is sent as a download,
# so a file a demo wrote can never run script in the front's origin.
INLINE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif")


def cfg() -> FrontConfig:
    return current_app.config["FRONT"]


def api() -> ApiClient:
    return current_app.extensions["front_api"]


def store() -> JobStore:
    return current_app.extensions["front_store"]


# -- pages -------------------------------------------------------------------------------------------------
@bp.get("/")
def index():
    demos, problem = [], ""
    try:
        spec = api().openapi()
        demos = [demo_form(spec, app) for app in api().apps()]
    except ApiProblem as exc:
        problem = exc.message
    return render_template("index.html", demos=demos, problem=problem, jobs=store().recent(5))


@bp.get("/demos/<app>")
def demo_page(app: str):
    form, models, problem = load_form(app)
    status = 200 if form is not None else (404 if problem.startswith("No demo") else 502)
    return render_template("demo.html", form=form, models=models, problem=problem, values={}, field_error=""), status


@bp.post("/demos/<app>")
def start(app: str):
    form, models, problem = load_form(app)
    if form is None:
        return render_template("demo.html", form=None, models={}, problem=problem, values={}, field_error=""), 502
    values = request.form.to_dict()
    try:
        parameters = form.parse(request.form)
        documents = documents_of(values.get("image_urls", ""), values.get("manifest_url", ""))
        uploads = [f for f in request.files.getlist("files") if f and f.filename]
        if not documents and not uploads:
            raise FormError("files", "choose at least one image, or give an image URL or a IIIF manifest URL")
        staged = stage_uploads(uploads, {d["uid"] for d in documents})
    except FormError as exc:
        return render_template("demo.html", form=form, models=models, values=values, field_error=exc.field,
                               problem=f"Please check “{exc.field}”: {exc.message}"), 400
    notify_url, note = cfg().callback_url, ""
    try:
        try:
            started = send_start(app, staged, documents, parameters, notify_url)
        except ApiProblem as exc:
            if exc.field != "notify_url":
                raise
            # e.g. an API on loopback without ALLOW_PRIVATE_URLS: the job still runs, followed by polling
            log.warning("the API refused our callback URL %s: %s", notify_url, exc.message)
            note = f"The API refused to call this front back ({exc.message}); the page asks the API instead."
            notify_url = ""
            started = send_start(app, staged, documents, parameters, notify_url)
    except ApiProblem as exc:
        shutil.rmtree(staged["folder"], ignore_errors=True)
        field_name = exc.field.removeprefix("parameters.") if exc.field else ""
        message = (f"The API refused the job: {exc.message}" if exc.status < 500 else exc.message)
        return render_template("demo.html", form=form, models=models, values=values, field_error=field_name,
                               problem=message), (exc.status if 400 <= exc.status < 500 else 502)
    tracking_id = str(started.get("tracking_id", ""))
    if not TRACKING_ID.match(tracking_id):
        abort(502, "the API answered without a tracking id")
    keep_uploads(staged, tracking_id)
    inputs = [{"uid": i["uid"], "name": i["original"], "kept": i["kept"]} for i in staged["files"]]
    inputs += [{"uid": d["uid"], "name": d["src"], "url": d["src"], "type": d["type"]} for d in documents]
    store().create(tracking_id, app, state=str(started.get("state") or "PENDING"), inputs=inputs,
                   parameters=parameters, notify=bool(notify_url), note=note)
    return redirect(url_for("front.job_page", app=app, tracking_id=tracking_id), 303)


@bp.get("/jobs")
def history():
    return render_template("jobs.html", jobs=store().recent(cfg().history_size))


@bp.get("/jobs/<app>/<tracking_id>")
def job_page(app: str, tracking_id: str):
    job = own_job(app, tracking_id)
    job = refresh(job)
    return render_template("job.html", job=job, state=state_body(job), poll_s=cfg().poll_interval_s,
                           view=result_view(job) if job["state"] == "SUCCESS" else None)


@bp.get("/jobs/<app>/<tracking_id>/state")
def job_state(app: str, tracking_id: str):
    job = refresh(own_job(app, tracking_id))
    return jsonify(state_body(job))


@bp.get("/jobs/<app>/<tracking_id>/view")
def job_view(app: str, tracking_id: str):
    """The result view as an HTML fragment, fetched by the job page once the job succeeded."""
    job = own_job(app, tracking_id)
    if job["state"] != "SUCCESS":
        return Response("", 204)
    return render_template("result.html", job=job, view=result_view(job))


@bp.post("/jobs/<app>/<tracking_id>/cancel")
def cancel(app: str, tracking_id: str):
    job = own_job(app, tracking_id)
    try:
        status = api().cancel(app, tracking_id)
        store().update(tracking_id, status, "api")
    except ApiProblem as exc:
        if exc.status != 409:  # already ended: the page shows how
            abort(502, exc.message)
    return redirect(url_for("front.job_page", app=job["app"], tracking_id=tracking_id), 303)


@bp.get("/jobs/<app>/<tracking_id>/files/<path:relpath>")
def result_file(app: str, tracking_id: str, relpath: str):
    own_job(app, tracking_id)
    if not SAFE_RELPATH.match(relpath) or ".." in PurePosixPath(relpath).parts:
        abort(404)
    return proxy(app, tracking_id, relpath, download_name=PurePosixPath(relpath).name)


@bp.get("/jobs/<app>/<tracking_id>/zip")
def result_zip(app: str, tracking_id: str):
    own_job(app, tracking_id)
    return proxy(app, tracking_id, "", download_name=f"{app}_{tracking_id}.zip")


@bp.get("/jobs/<app>/<tracking_id>/input/<uid>")
def input_image(app: str, tracking_id: str, uid: str):
    job = own_job(app, tracking_id)
    kept = next((i.get("kept") for i in job["inputs"] or [] if i.get("uid") == uid), None)
    if not kept:
        abort(404)
    path = uploads_folder() / tracking_id / kept
    if not path.is_file():
        abort(404)
    mimetype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if mimetype not in INLINE_TYPES:
        return send_file(path, mimetype="application/octet-stream", as_attachment=True)
    return send_file(path, mimetype=mimetype, max_age=3600)


# -- callbacks ------------------------------------------------------------------------------------------
@bp.post("/callback")
def callback():
    """The API's events: signature and age checked, replays refused, then merged into the job.
    Without CALLBACK_SECRET nothing could tell a forged event from a real one, so none is taken
    (and the front asks for none: it polls the API instead)."""
    body = request.get_data(cache=False)
    secret = cfg().callback_secret
    if not secret:
        return jsonify(error={"code": "callbacks_off",
                              "message": "this front takes no callbacks: CALLBACK_SECRET is not set"}), 403
    verdict = verify(secret, body, request.headers, max_age_s=cfg().callback_max_age_s)
    if not verdict:
        log.warning("callback refused: %s", verdict.reason)
        return jsonify(error={"code": "bad_signature", "message": verdict.reason}), 401
    if not store().remember_signature(verdict.signature, cfg().callback_max_age_s):
        log.warning("callback refused: replay of a message already received")
        return jsonify(error={"code": "replay", "message": "this signed message was already received"}), 409
    try:
        event = json.loads(body)
    except ValueError:
        return jsonify(error={"code": "invalid", "message": "body is not JSON"}), 400
    if not isinstance(event, dict) or not TRACKING_ID.match(str(event.get("tracking_id", ""))):
        return jsonify(error={"code": "invalid", "message": "no tracking_id"}), 400
    event_id = str(event.get("event_id") or "")
    if event_id and not store().remember_event(event_id):
        return jsonify(status="duplicate")  # the sender's retry of an event we applied: acknowledged once more
    news = {"state": event.get("state"), "progress": event.get("progress"), "error": event.get("error")}
    if event.get("event") == "SUCCESS":
        news["output"] = event.get("output")
    applied = store().update(str(event["tracking_id"]), news, "callback")
    return jsonify(status="applied" if applied else "ignored")


# -- helpers ---------------------------------------------------------------------------------------------
def send_start(app: str, staged: dict, documents: list[dict], parameters: dict, notify_url: str) -> dict:
    handles = [(item["name"], open(item["path"], "rb"), item["content_type"]) for item in staged["files"]]
    try:
        return api().start(app, files=handles, documents=documents, parameters=parameters, notify_url=notify_url)
    finally:
        for _, handle, _ in handles:
            handle.close()


def load_form(app: str):
    """(form, models, problem): the demo's form from the API's spec, its models, or why not."""
    if not APP_NAME.match(app):
        abort(404)
    try:
        apps = api().apps()
        if app not in apps:
            return None, {}, f"No demo called “{app}” is installed on the API (installed: {', '.join(apps) or 'none'})."
        form = demo_form(api().openapi(), app)
    except ApiProblem as exc:
        return None, {}, exc.message
    models = {}
    if any(p.name == "model" for p in form.params):
        try:
            models = api().models(app)
        except ApiProblem:
            models = {}
    return form, models, ""


def uploads_folder() -> Path:
    return cfg().data_folder / "uploads"


def stage_uploads(uploads, taken: set[str]) -> dict:
    """Save the form's files under names the API keeps as document uids (`<uid><suffix>`, uids
    unique and already safe), so results can be matched back to the image the person gave."""
    folder = uploads_folder() / f"staging-{secrets.token_hex(8)}"
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for upload in uploads:
        original = upload.filename or "upload"
        clean = secure_filename(original) or "upload"
        stem, suffix = PurePosixPath(clean).stem, PurePosixPath(clean).suffix.lower()[:10]
        uid = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", re.sub(r"[^A-Za-z0-9._-]+", "_", stem))[:60] or "upload"
        base, n = uid, 1
        while uid in taken:
            n += 1
            uid = f"{base}-{n}"
        taken.add(uid)
        path = folder / f"{uid}{suffix}"
        upload.save(path)
        with open(path, "rb") as handle:
            head = handle.read(16)
        files.append({"uid": uid, "original": original, "name": path.name, "path": str(path),
                      "content_type": upload.mimetype or "application/octet-stream",
                      "kept": path.name if head.startswith(IMAGE_MAGIC) else ""})
    return {"folder": str(folder), "files": files}


def keep_uploads(staged: dict, tracking_id: str) -> None:
    """Images stay (drawn under the results); zips and PDFs are the API's to read, not ours to keep."""
    target = uploads_folder() / tracking_id
    target.mkdir(parents=True, exist_ok=True)
    for item in staged["files"]:
        if item["kept"]:
            Path(item["path"]).replace(target / item["kept"])
    shutil.rmtree(staged["folder"], ignore_errors=True)


def own_job(app: str, tracking_id: str) -> dict:
    """A job this front started; the front is no proxy to other people's jobs."""
    if not TRACKING_ID.match(tracking_id):
        abort(404)
    job = store().get(tracking_id)
    if job is None or job["app"] != app:
        abort(404)
    return job


def refresh(job: dict) -> dict:
    """Ask the API when callbacks are not enough: a running job with no news for a while (or no
    callbacks configured), and once after the end, for the per-image errors callbacks do not carry."""
    stale = time.time() - job["updated_at"] > (cfg().status_refresh_s if job["notify"] else 0)
    needed = (not job["finished"] and stale) or (job["finished"] and job["last_source"] != "api")
    if not needed:
        return job
    try:
        status = api().status(job["app"], job["tracking_id"])
    except ApiProblem as exc:
        job = dict(job)
        job["api_problem"] = exc.message
        return job
    news = {k: status.get(k) for k in ("state", "progress", "error", "errors", "output")}
    store().update(job["tracking_id"], news, "api")
    return store().get(job["tracking_id"]) or job


def state_body(job: dict) -> dict:
    state = job["state"]
    progress = job.get("progress") or {}
    body = {
        "tracking_id": job["tracking_id"], "app": job["app"], "state": state,
        "state_words": words.state_words(state), "finished": job["finished"],
        "progress": progress, "percent": 100.0 if state == "SUCCESS" else words.percent(progress),
        "progress_words": words.progress_words(state, progress),
        "errors": [words.image_error_words(e) for e in job.get("errors") or [] if isinstance(e, dict)],
        "failure": words.failure_words(job.get("error") or "") if state == "FAILURE" else "",
        "callbacks": job["callbacks"], "source": job["last_source"],
        "problem": job.get("api_problem", ""), "note": job.get("note", ""),
    }
    return body


def result_view(job: dict) -> dict:
    app, tracking_id = job["app"], job["tracking_id"]
    kept = {i["uid"]: i["kept"] for i in job.get("inputs") or [] if i.get("kept")}
    urls = {i["uid"]: i["url"] for i in job.get("inputs") or [] if i.get("url") and i.get("type") == "img"}

    def file_url(relpath: str) -> str:
        return url_for("front.result_file", app=app, tracking_id=tracking_id, relpath=relpath) if relpath else ""

    def input_url(uid: str) -> str:
        if uid in kept:
            return url_for("front.input_image", app=app, tracking_id=tracking_id, uid=uid)
        return urls.get(uid, "")

    view = view_for(app, job, file_url, input_url)
    if view["kind"] == "vectorization":
        for image in view["images"][:MAX_INLINE_IMAGES]:
            try:
                with api().result(app, tracking_id, image["json_rel"]) as response:
                    image["primitives"] = primitive_shapes(json.loads(response.content))
            except (ApiProblem, ValueError, KeyError, TypeError) as exc:
                image["problem"] = f"its primitives could not be read ({exc})"
        view["inline"] = min(len(view["images"]), MAX_INLINE_IMAGES)
    view["zip"] = url_for("front.result_zip", app=app, tracking_id=tracking_id)
    return view


def proxy(app: str, tracking_id: str, relpath: str, download_name: str) -> Response:
    """Stream one result file from the API. Images are shown inline; everything else downloads."""
    try:
        upstream = api().result(app, tracking_id, relpath)
    except ApiProblem as exc:
        return Response(exc.message, status=exc.status if exc.status in (404, 409) else 502, mimetype="text/plain")
    mimetype = (upstream.headers.get("Content-Type") or "application/octet-stream").split(";")[0].strip()
    inline = mimetype in INLINE_TYPES and not relpath == ""
    headers = {"X-Content-Type-Options": "nosniff",
               "Content-Disposition": f"{'inline' if inline else 'attachment'}; filename=\"{download_name}\""}
    if upstream.headers.get("Content-Length"):
        headers["Content-Length"] = upstream.headers["Content-Length"]
    if not inline:
        mimetype = "application/zip" if relpath == "" else "application/octet-stream"
        headers["Content-Security-Policy"] = "sandbox"

    def chunks():
        try:
            yield from upstream.iter_content(64 * 1024)
        finally:
            upstream.close()

    return Response(stream_with_context(chunks()), mimetype=mimetype, headers=headers)
