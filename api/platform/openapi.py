"""The OpenAPI description of the API, built from the installed demos, and a docs page for people.

The docs page is plain server-rendered HTML (no script, no CDN), so it works offline and behind
the spiped tunnel.
"""
from __future__ import annotations

import html as html_lib

from .demo import Demo
from .inputs import DOCUMENT_TYPES
from .jobs import STATES

ERROR = {"$ref": "#/components/schemas/Error"}
JOB_PATH_ID = {"name": "tracking_id", "in": "path", "required": True, "schema": {"type": "string",
                                                                                 "pattern": "^[0-9a-f]{32}$"}}


RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again (429: about how often a job of "
                                               "the queue ends lately; at most RETRY_AFTER_MAX_S)",
                                "schema": {"type": "integer", "minimum": 1}}}
# What /qsizes and /monitor add about the wait (api/platform/backpressure.py).
WAIT_PROPERTIES = {
    "estimated_wait_s": {"type": ["number", "null"], "description": "Seconds until the jobs waiting now are taken "
                         "by a worker; null: no live worker on the queue, or no job ended within the hour"},
    "seconds_per_job": {"type": ["number", "null"], "description": "One job of the queue ends this often lately "
                        "(mean duration of its last jobs / live workers); null: none ended within the hour"}}

# What /monitor says about DATA_FOLDER and the retention sweeper (api/platform/retention.py).
_BYTES_OR_NULL = {"type": ["integer", "null"]}
MONITOR_RETENTION_PROPERTIES = {
    "disk": {"type": "object", "properties": {
        "results_bytes": {"type": "integer", "description": "this demo's results, counted as jobs end"},
        "free_bytes": _BYTES_OR_NULL, "total_bytes": _BYTES_OR_NULL,
        "areas": {"type": "object", "description": "bytes per area of DATA_FOLDER as du -sb counts them, "
                  "measured by the last sweep (null before the first)", "properties": {
                      area: _BYTES_OR_NULL for area in ("results", "uploads", "cache", "datasets", "models",
                                                        "other")}},
        "data_bytes": {**_BYTES_OR_NULL, "description": "DATA_FOLDER now: the last sweep's measure plus the "
                       "results counted since (what DATA_MAX_BYTES is checked against)"},
        "data_max_bytes": {"type": "integer", "description": "DATA_MAX_BYTES (0: no limit)"},
        "measured_at": {"type": ["string", "null"], "format": "date-time"}}},
    "retention": {"type": "object", "properties": {
        "result_ttl_days": {"type": "number"}, "upload_ttl_days": {"type": "number"},
        "cache_max_bytes": {"type": "integer"}, "sweep_interval_s": {"type": "number"},
        "removed_total": {"type": "object", "description": "what every sweep removed, summed",
                          "properties": {name: {"type": "integer"} for kind in ("jobs", "uploads", "cache")
                                         for name in (kind, f"{kind}_bytes")}},
        "last_sweeps": {"type": "array", "description": "the last sweeps, newest first", "items": {
            "type": "object", "properties": {
                "at": {"type": "string", "format": "date-time"}, "duration_s": {"type": "number"},
                **{name: {"type": "integer"} for kind in ("jobs", "uploads", "cache")
                   for name in (kind, f"{kind}_bytes")},
                "kept_in_use": {"type": "integer", "description": "expired or evictable, kept for a "
                                "pending or running job"},
                "cache_over_bytes": {"type": "integer"}, "failures": {"type": "integer"}}}}}},
}


EVENTS_DESCRIPTION = (
    "Every event of the job, in order, with the payload its callback carries (whether or not it has a "
    "notify_url), then the stream closes after the terminal event. Kept per job in Redis (EVENTS_STREAM_LENGTH "
    "events, for as long as the job's state): a request after the end replays them; once they expired, one "
    "synthetic terminal event built from the job's state (id `end-<tracking_id>`). 503 (code busy, with "
    "Retry-After) when this API process already holds EVENTS_MAX_STREAMS streams: poll the status instead.")


# One message of the stream, as an SSE parser reads it (OpenAPI 3.2 calls this the itemSchema; before
# 3.2, tools such as schemathesis read `schema` of text/event-stream so).
SSE_EVENT = {"type": "object", "required": ["id", "event", "data"], "properties": {
    "id": {"type": "string", "description": "the event's event_id (`end-<tracking_id>` for a synthetic end)"},
    "event": {"enum": ["STARTED", "PROGRESS", "SUCCESS", "ERROR", "CANCELLED"]},
    "data": {"type": "string", "contentMediaType": "application/json",
             "description": "the JSON payload the event's callback carries"},
    "retry": {"type": "integer"}}}


def _errors(*codes: int) -> dict:
    return {str(code): {"description": text, "content": {"application/json": {"schema": ERROR}},
                        **({"headers": RETRY_AFTER} if code in (429, 503) else {})}
            for code, text in ((400, "Invalid input, naming the field"), (401, "Missing or wrong token"),
                               (404, "Unknown job"), (409, "Not possible in the job's state"),
                               (410, "The job expired: the retention sweeper deleted it RESULT_TTL_DAYS after "
                                     "its end (code expired, expired_at says when)"),
                               (413, "Upload too large"), (415, "Not JSON nor a form"), (429, "Queue full"),
                               (503, "Redis unreachable or storage refusing writes"),
                               (507, "DATA_FOLDER would pass DATA_MAX_BYTES (code insufficient_storage)"))
            if code in codes}


def _ok(description: str, schema: dict | None = None, media: str = "application/json") -> dict:
    content = {media: {"schema": schema or {"type": "object"}}}
    return {"description": description, "content": content}


def _demo_paths(demo: Demo) -> dict:
    tag = [demo.name]
    params = {"type": "object", "additionalProperties": False,
              "properties": {name: p.json_schema() for name, p in demo.params.items()}}
    start_body = {"type": "object", "additionalProperties": False, "properties": {
        "experiment_id": {"type": "string", "description": "Your id for this run; echoed back"},
        "notify_url": {"type": "string", "format": "uri", "description": "Receives callbacks (POST JSON)"},
        "documents": {"type": "array", "items": {"$ref": "#/components/schemas/Document"}},
        "parameters": params}}
    prefix = f"/{demo.name}"
    return {
        f"{prefix}/start": {"post": {
            "tags": tag, "summary": f"Start a {demo.name} job", "description": demo.description,
            "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                            "schema": {"type": "string"}, "description": "Same key, same job"}],
            "requestBody": {"content": {
                "application/json": {"schema": start_body},
                "multipart/form-data": {"schema": {"type": "object", "properties": {
                    "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                    "documents": {"type": "string", "description": "JSON list of documents"},
                    "parameters": {"type": "string", "description": "JSON object"},
                    "experiment_id": {"type": "string"}, "notify_url": {"type": "string"}}}}}},
            "responses": {"202": _ok("Queued", {"$ref": "#/components/schemas/Started"}),
                          **_errors(400, 401, 409, 410, 413, 415, 429, 503, 507)}}},
        f"{prefix}/{{tracking_id}}/status": {"get": {
            "tags": tag, "summary": "Job state, progress, errors, log tail, timings", "parameters": [JOB_PATH_ID],
            "responses": {"200": _ok("The job", {"$ref": "#/components/schemas/Status"}),
                          **_errors(401, 404, 410)}}},
        f"{prefix}/{{tracking_id}}/events": {"get": {
            "tags": tag, "summary": "The job's events, live (Server-Sent Events)", "description": EVENTS_DESCRIPTION,
            "parameters": [JOB_PATH_ID, {"name": "Last-Event-ID", "in": "header", "required": False,
                                         "schema": {"type": "string"},
                                         "description": "Resume after this event (EventSource sends it by itself)"}],
            "responses": {"200": _ok("The stream, one message per event; keep-alive comments between them",
                                     SSE_EVENT, "text/event-stream"),
                          "204": {"description": "Nothing more: Last-Event-ID is the job's terminal event"},
                          **_errors(401, 404, 410, 503)}}},
        f"{prefix}/{{tracking_id}}/cancel": {"post": {
            "tags": tag, "summary": "Cancel: a pending job ends at once, a running one at its next image",
            "parameters": [JOB_PATH_ID],
            "responses": {"202": _ok("Cancel requested", {"$ref": "#/components/schemas/Status"}),
                          **_errors(401, 404, 409, 410)}}},
        f"{prefix}/{{tracking_id}}/result": {"get": {
            "tags": tag, "summary": "All results as a zip (once the job succeeded)", "parameters": [JOB_PATH_ID],
            "responses": {"200": _ok("The zip", {"type": "string", "format": "binary"}, "application/zip"),
                          **_errors(401, 404, 409, 410)}}},
        f"{prefix}/{{tracking_id}}/result/{{path}}": {"get": {
            "tags": tag, "summary": "One result file",
            "parameters": [JOB_PATH_ID, {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _ok("The file (images, JSON and text inline; anything else as an attachment)",
                                     {"type": "string", "format": "binary"}, "*/*"),
                          **_errors(400, 401, 404, 410)}}},
        f"{prefix}/qsizes": {"get": {"tags": tag, "summary": "Messages waiting in this demo's queue, and the wait",
                                     "responses": {"200": _ok("Queue sizes", {"type": "object", "properties": {
                                         "queue": {"type": "string"}, "queues": {"type": "object"},
                                         "waiting": {"type": "integer"}, "delayed": {"type": "integer"},
                                         "dead": {"type": "integer"}, **WAIT_PROPERTIES}}), **_errors(401)}}},
        f"{prefix}/monitor": {"get": {
            "tags": tag, "summary": "Queues, the wait, live workers, jobs per state, disk use",
            "responses": {"200": _ok("Monitoring data", {"type": "object", "properties": {
                **WAIT_PROPERTIES, **MONITOR_RETENTION_PROPERTIES}}), **_errors(401)}}},
        f"{prefix}/monitor/clear": {"post": {
            "tags": tag, "summary": "Delete results and uploads of ended jobs older than days_before days",
            "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {
                "type": "object", "required": ["days_before"], "properties": {"days_before": {"type": "number"}}}}}},
            "responses": {"200": _ok("Counts: cleared, bytes_freed, tracking_ids"), **_errors(400, 401)}}},
        f"{prefix}/monitor/clear/{{tracking_id}}": {"post": {
            "tags": tag, "summary": "Delete one ended job's files", "parameters": [JOB_PATH_ID],
            "responses": {"200": _ok("Counts"), **_errors(401, 404, 409, 410)}}},
        f"{prefix}/models": {"get": {
            "tags": tag, "summary": "Models: {file: last update}; ?details=1 for classes, size, source",
            "parameters": [{"name": "details", "in": "query", "required": False, "schema": {"type": "string"}}],
            "responses": {"200": _ok("Models"), **_errors(401)}}},
    }


def _dataset_paths() -> dict:
    tag = ["datasets"]
    doc = [{"name": "type", "in": "path", "required": True, "schema": {"enum": list(DOCUMENT_TYPES)}},
           {"name": "uid", "in": "path", "required": True, "schema": {"type": "string"}}]
    return {
        "/datasets/{uid}": {"get": {
            "tags": tag, "summary": "The documents a job read (uid: its tracking id), with their URLs here",
            "parameters": [{"name": "uid", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _ok("uid, url, documents [{type, uid, src, url, download}]"), **_errors(401, 404)}}},
        "/datasets/document/{type}/{uid}": {"get": {
            "tags": tag, "summary": "A document's images, with URLs", "parameters": doc,
            "responses": {"200": _ok("type, uid, src, images [{name, index, url, source_url}]"), **_errors(401, 404)}}},
        "/datasets/document/{type}/{uid}/image/{name}": {"get": {
            "tags": tag, "summary": "One image, as the API downloaded it",
            "parameters": [*doc, {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _ok("The image", {"type": "string", "format": "binary"}, "*/*"),
                          **_errors(401, 404)}}},
        "/datasets/document/{type}/{uid}/download": {"get": {
            "tags": tag, "summary": "A zip of the document's images", "parameters": doc,
            "responses": {"200": _ok("The zip", {"type": "string", "format": "binary"}, "application/zip"),
                          **_errors(401, 404)}}},
    }


def _aikon_paths(demos: dict[str, Demo]) -> dict:
    """aikon-api's routes (api/platform/aikon.py); `/region_extraction/*` is otherwise `/regions/*`."""
    tag = ["aikon-api"]
    doc = {"name": "doc_id", "in": "path", "required": True, "schema": {"type": "string"}}
    paths: dict = {
        f"/{name}/{{tracking_id}}/documents/{{doc_uid}}": {"get": {
            "tags": tag, "summary": "One document's results (the result_url of output.results_url)",
            "parameters": [JOB_PATH_ID, {"name": "doc_uid", "in": "path", "required": True,
                                         "schema": {"type": "string"}}],
            "responses": {"200": _ok("regions: the document's pages, doc_uid as the client sent it",
                                     {"type": "array", "items": {"type": "object"}}), **_errors(401, 404, 410)}}}
        for name in demos}
    paths["/datasets/dataset/{uid}"] = {"get": {
        "tags": tag, "summary": "A job's dataset as aikon-api listed it: client uids, download = images.zip",
        "parameters": [{"name": "uid", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": _ok("uid, url, documents [{type, uid, src, url, download}]"), **_errors(401, 404)}}}
    paths["/datasets/document/{type}/{uid}/images.zip"] = {"get": {
        "tags": tag, "summary": "A document's images as aikon-demo unpacks them: images/ and images.json",
        "parameters": [{"name": "type", "in": "path", "required": True, "schema": {"enum": list(DOCUMENT_TYPES)}},
                       {"name": "uid", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": _ok("The zip", {"type": "string", "format": "binary"}, "application/zip"),
                      **_errors(401, 404)}}}
    if "regions" not in demos:
        return paths
    aikon_log = {"type": "object", "properties": {
        "status": {"enum": ["PENDING", "PROGRESS", "SUCCESS", "ERROR", "CANCELLED"]}, "id": {"type": "string"},
        "infos": {"type": "array", "items": {"type": "string"}, "description": "the last ten log lines"},
        "progress": {"type": "array", "items": {"type": "object", "properties": {
            "context": {"type": "string"}, "current": {"type": "integer"}, "total": {"type": "integer"}}}},
        "errors": {"type": "array", "items": {"type": "string"}}}}
    paths.update({
        "/region_extraction/start": {"post": {
            "tags": tag, "summary": "Start a regions job with aikon-api's body (every other /region_extraction "
                                    "route is the /regions one)",
            "description": "parameters.model: a model file or its stem; parameters.postprocess: squarify false "
                           "and margins 0 only; parameters at the top level when `parameters` is absent; "
                           "document uids that are not file names are made ones and given back to the client",
            "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": {"200": _ok("Queued", {"$ref": "#/components/schemas/Started"}),
                          **_errors(400, 401, 409, 410, 415, 429, 503, 507)}}},
        "/region_extraction/{tracking_id}/status": {"get": {
            "tags": tag, "summary": "The /regions status, with `log` as aikon-api's object",
            "parameters": [JOB_PATH_ID],
            "responses": {"200": _ok("The job: the /regions status but for `log`", {"type": "object", "properties": {
                "tracking_id": {"type": "string"}, "state": {"enum": list(STATES)}, "log": aikon_log}}),
                          **_errors(401, 404, 410)}}},
        "/region_extraction/models": {"get": {
            "tags": tag, "summary": "Models as aikon-api listed them: {stem: {name, model, desc, file, date}}",
            "responses": {"200": _ok("Models"), **_errors(401)}}},
    })
    for prefix in ("region_extraction", "regions"):
        paths[f"/{prefix}/{{doc_id}}/delete"] = {"post": {
            "tags": tag, "summary": "Forget a document's dataset record; with model_name, delete its results "
                                    "made with that model in ended jobs",
            "parameters": [doc, {"name": "model_name", "in": "query", "required": False,
                                 "schema": {"type": "string"}}],
            "responses": {"200": _ok("{cleared_document: 1} or {cleared_annotations: n}"), **_errors(401, 404)}}}
    return paths


def spec(demos: dict[str, Demo]) -> dict:
    paths = {
        "/health": {"get": {"summary": "Alive (no token needed)", "security": [], "responses": {"200": _ok("ok")}}},
        "/ready": {"get": {"summary": "Redis reachable and at least one worker alive",
                           "responses": {"200": _ok("Ready"), "503": _ok("Not ready"), **_errors(401)}}},
        "/metrics": {"get": {"summary": "Prometheus metrics",
                             "responses": {"200": _ok("Metrics", {"type": "string"}, "text/plain"), **_errors(401)}}},
    }
    for demo in demos.values():
        paths.update(_demo_paths(demo))
    paths.update(_dataset_paths())
    paths.update(_aikon_paths(demos))
    progress = {"type": "object", "properties": {"done": {"type": "integer"}, "total": {"type": "integer"},
                                                 "percent": {"type": "number"}, "eta_s": {"type": ["number", "null"]}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Image-analysis demo API", "version": "1.0",
                 "description": "Send images, follow the job, get the results."},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"},
                    "field": {"type": "string", "description": "the invalid input, for 400s"},
                    "expired_at": {"type": "string", "format": "date-time",
                                   "description": "410: when the retention sweeper deleted the job"},
                    "data_bytes": {"type": "integer", "description": "507: DATA_FOLDER's bytes, as estimated"},
                    "incoming_bytes": {"type": "integer", "description": "507: this request's uploads"},
                    "data_max_bytes": {"type": "integer", "description": "507: DATA_MAX_BYTES"}}}}},
                "Document": {"type": "object", "required": ["type", "src"], "properties": {
                    "type": {"enum": ["img", "url_list", "iiif", "zip", "pdf"]},
                    "src": {"type": "string", "format": "uri"}, "uid": {"type": "string"}}},
                "Started": {"type": "object", "properties": {k: {"type": "string"} for k in (
                    "tracking_id", "experiment_id", "state", "status_url", "result_url")}},
                "Status": {"type": "object", "properties": {
                    "tracking_id": {"type": "string"}, "experiment_id": {"type": "string"},
                    "state": {"enum": list(STATES)},
                    "progress": progress, "error": {"type": ["string", "null"]},
                    "errors": {"type": "array", "items": {"type": "object"}},
                    "log": {"type": "array", "items": {"type": "string"}},
                    "result_url": {"type": "string"}, "timings": {"type": "object"}}},
            },
        },
    }


def html(document: dict) -> str:
    """A readable page of the spec: each route, what it does, the parameters of each demo."""
    esc = html_lib.escape
    rows = []
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            rows.append(f"<tr><td><code>{method.upper()}</code></td><td><code>{esc(path)}</code></td>"
                        f"<td>{esc(op.get('summary', ''))}</td></tr>")
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                props = body["properties"]["parameters"]["properties"]
                if props:
                    items = "".join(
                        f"<li><code>{esc(n)}</code> ({esc(str(p.get('type')))}"
                        f"{', default ' + esc(repr(p['default'])) if 'default' in p else ''})"
                        f" {esc(p.get('description', ''))}</li>" for n, p in props.items())
                    rows.append(f"<tr><td></td><td colspan=2>parameters:<ul>{items}</ul></td></tr>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(document['info']['title'])}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}
td{{padding:.3rem .6rem;vertical-align:top;border-bottom:1px solid #ddd}}code{{font-size:.95em}}</style></head>
<body><h1>{esc(document['info']['title'])}</h1><p>{esc(document['info']['description'])}
Machine-readable: <a href="/openapi.json">/openapi.json</a>. With <code>API_TOKEN</code> set, send
<code>Authorization: Bearer &lt;token&gt;</code>.</p>
<table><thead><tr><th>Method</th><th>Path</th><th>What it does</th></tr></thead><tbody>
{''.join(rows)}</tbody></table></body></html>"""
