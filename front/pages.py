"""The front's pages: the demo list, each demo's form and the job it starts, the job page with its
result view, the history, and the images a person uploaded (drawn under the results).

The browser only ever talks to the front: forms post here, the job page polls the proxy
(proxy.py), which also passes the result files through; the API's callbacks arrive at
receiver.py. The front talks to the API with its token (api_client.py) and remembers jobs in its
own store (store.py).
"""
from __future__ import annotations

import json
import logging
import mimetypes
import re
import secrets
import shutil
from pathlib import Path, PurePosixPath

from flask import Blueprint, Response, abort, redirect, render_template, request, send_file, url_for
from werkzeug.utils import secure_filename

from .api_client import ApiProblem
from .forms import FormError, demo_form, documents_of
from .jobs import TRACKING_ID, api, cfg, own_job, refresh, state_body, store
from .proxy import INLINE_TYPES
from .results import primitive_shapes, view_for

log = logging.getLogger(__name__)
bp = Blueprint("pages", __name__)

APP_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"RIFF", b"II*\x00", b"MM\x00*", b"BM")
MAX_INLINE_IMAGES = 40  # vectorization images drawn inline; beyond, their previews and downloads only


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
    return redirect(url_for("pages.job_page", app=app, tracking_id=tracking_id), 303)


@bp.get("/jobs")
def history():
    return render_template("jobs.html", jobs=store().recent(cfg().history_size))


@bp.get("/jobs/<app>/<tracking_id>")
def job_page(app: str, tracking_id: str):
    job = own_job(app, tracking_id)
    job = refresh(job)
    return render_template("job.html", job=job, state=state_body(job), poll_s=cfg().poll_interval_s,
                           events=cfg().events_max_streams > 0,
                           view=result_view(job) if job["state"] == "SUCCESS" else None)


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
    return redirect(url_for("pages.job_page", app=job["app"], tracking_id=tracking_id), 303)


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
            models = api().models(app, details=True)  # with each model's preset and licence
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


def result_view(job: dict) -> dict:
    app, tracking_id = job["app"], job["tracking_id"]
    kept = {i["uid"]: i["kept"] for i in job.get("inputs") or [] if i.get("kept")}
    urls = {i["uid"]: i["url"] for i in job.get("inputs") or [] if i.get("url") and i.get("type") == "img"}

    def file_url(relpath: str) -> str:
        return url_for("proxy.result_file", app=app, tracking_id=tracking_id, relpath=relpath) if relpath else ""

    def input_url(uid: str) -> str:
        if uid in kept:
            return url_for("pages.input_image", app=app, tracking_id=tracking_id, uid=uid)
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
    view["zip"] = url_for("proxy.result_zip", app=app, tracking_id=tracking_id)
    return view
