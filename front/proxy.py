"""What the browser gets from the API through the front: the job's live state (polled by the job
page) and the result files, streamed with the front's token, which never reaches the browser."""
from __future__ import annotations

import re
from pathlib import PurePosixPath

from flask import Blueprint, Response, abort, jsonify, stream_with_context

from .api_client import ApiProblem
from .jobs import api, own_job, refresh, state_body

bp = Blueprint("proxy", __name__)

SAFE_RELPATH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
# Result files the browser may show inline; anything else (SVG, HTML, JSON…) is sent as a download,
# so a file a demo wrote can never run script in the front's origin.
INLINE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif")


@bp.get("/jobs/<app>/<tracking_id>/state")
def job_state(app: str, tracking_id: str):
    job = refresh(own_job(app, tracking_id))
    return jsonify(state_body(job))


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
