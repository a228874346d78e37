"""What the browser gets from the API through the front: the job's live state (its events, relayed
as Server-Sent Events, or polled by the job page) and the result files, streamed with the front's
token, which never reaches the browser."""
from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import PurePosixPath

import requests
from flask import Blueprint, Flask, Response, abort, current_app, jsonify, request, stream_with_context

from .api_client import ApiProblem
from .jobs import api, own_job, refresh, state_body, store

bp = Blueprint("proxy", __name__)

SAFE_RELPATH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
# Result files the browser may show inline; anything else (SVG, HTML, JSON…) is sent as a download,
# so a file a demo wrote can never run script in the front's origin.
INLINE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif")


@bp.get("/jobs/<app>/<tracking_id>/state")
def job_state(app: str, tracking_id: str):
    job = refresh(own_job(app, tracking_id))
    return jsonify(state_body(job))


@bp.get("/jobs/<app>/<tracking_id>/events")
def job_events(app: str, tracking_id: str):
    """The job's state for its page, live: each of the API's events is merged into the store (as a
    callback would be) and sent on as the page's `state` (words included), under the API's event
    id, so the browser's Last-Event-ID resumes the API's stream. Ends after the job's end; 204 when
    nothing more will come (EventSource then stops reconnecting). Each stream holds one of the
    front's threads: past FRONT_EVENTS_MAX_STREAMS per process the page is told to poll (503)."""
    job = own_job(app, tracking_id)
    slots = event_slots(current_app)
    if not slots.acquire(blocking=False):
        return Response("too many live pages; poll the state", status=503, headers={"Retry-After": "10"},
                        mimetype="text/plain")
    try:
        upstream = api().events(app, tracking_id, request.headers.get("Last-Event-ID", "").strip())
    except ApiProblem as exc:
        slots.release()
        return Response(exc.message, status=exc.status if exc.status in (404, 503) else 502, mimetype="text/plain")
    if upstream.status_code != 200:  # 204: the job ended and the browser saw its end
        upstream.close()
        slots.release()
        return Response(status=204)

    def relay() -> Iterator[bytes]:
        try:
            yield b"retry: 2000\n\n"
            for event_id, name, data in sse_messages(upstream):
                if name is None:
                    yield b": keep-alive\n\n"
                    continue
                event = json.loads(data)
                news = {"state": event.get("state"), "progress": event.get("progress"), "error": event.get("error")}
                if name == "SUCCESS":
                    news["output"] = event.get("output")
                store().update(tracking_id, news, "events")
                current = store().get(tracking_id) or job
                if current["finished"]:
                    current = refresh(current)  # once, for the per-image errors events do not carry
                body = json.dumps(state_body(current))
                yield f"id: {event_id}\nevent: state\ndata: {body}\n\n".encode()
                if current["finished"]:
                    return
        except (requests.RequestException, ValueError):
            return  # the API went away, or sent something unreadable: the page reconnects, or polls
        finally:
            upstream.close()
            slots.release()

    return Response(stream_with_context(relay()), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"})


_slots_lock = threading.Lock()


def event_slots(app: Flask) -> threading.BoundedSemaphore:
    """The app's live-stream slots (FRONT_EVENTS_MAX_STREAMS), made at the first stream."""
    with _slots_lock:
        found = app.extensions.get("front_event_slots")
        if found is None:
            found = app.extensions["front_event_slots"] = threading.BoundedSemaphore(
                max(0, app.config["FRONT"].events_max_streams))
        return found


def sse_messages(response: requests.Response) -> Iterator[tuple[str, str | None, str]]:
    """(id, event, data) for each message of an SSE body as it arrives; (\"\", None, \"\") for a comment
    line (a keep-alive, passed on so the browser's connection stays busy too)."""
    fields: dict[str, str] = {}
    for raw in response.iter_lines(chunk_size=None):
        line = raw.decode()
        if not line:
            if "data" in fields:
                yield fields.get("id", ""), fields.get("event", "message"), fields["data"]
            fields = {}
        elif line.startswith(":"):
            yield "", None, ""
        else:
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value


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
