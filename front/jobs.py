"""What every part of the front shares about a job: the app's config, API client and store, the
check that a job is one this front started, and bringing its record up to date from the API.

The pages, the proxy and the callback receiver each keep their own routes; they meet here so none
of them imports another's."""
from __future__ import annotations

import re
import time

from flask import abort, current_app

from . import words
from .api_client import ApiClient, ApiProblem
from .config import FrontConfig
from .store import JobStore

TRACKING_ID = re.compile(r"^[0-9a-f]{32}$")


def cfg() -> FrontConfig:
    return current_app.config["FRONT"]


def api() -> ApiClient:
    return current_app.extensions["front_api"]


def store() -> JobStore:
    return current_app.extensions["front_store"]


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
    """The job's state in words, as the job page draws it and its poller receives it."""
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
