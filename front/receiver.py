"""The API's callbacks, received: the only route the API calls on the front (POST /callback).
The signature check itself is callbacks.py, kept free of Flask so it is tested against the API's
signer directly."""
from __future__ import annotations

import json
import logging

from flask import Blueprint, jsonify, request

from .callbacks import verify
from .jobs import TRACKING_ID, cfg, store

log = logging.getLogger(__name__)
bp = Blueprint("receiver", __name__)


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
