"""Callbacks: an outbox in Redis, filled by workers, emptied by a separate sender process.

A GPU worker only pushes an event (one Redis command) and goes on; the sender POSTs it to the
client's `notify_url` through the SSRF guard, signs it when CALLBACK_SECRET is set, and retries
with exponential backoff. A slow or dead receiver never holds a GPU and never fails a job. Events
that cannot be delivered end in a short "dead" list an operator can read.

Keys: `callbacks:queue` (list, waiting), `callbacks:processing:<sender>` (list, being sent),
`callbacks:retry` (sorted set by due time), `callbacks:dead` (capped list),
`callbacks:alive:<sender>` (a sender's heartbeat). Delivery is at least once: an event whose
sender died mid-POST is sent again, so receivers de-duplicate by `event_id`.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Mapping

import redis
import requests

from .config import Config
from .netguard import AddressNotAllowed, guarded_session

log = logging.getLogger("api.callbacks")

EVENTS = ("STARTED", "PROGRESS", "SUCCESS", "ERROR", "CANCELLED")
SIGNATURE_HEADER = "X-Signature"
TIMESTAMP_HEADER = "X-Signature-Timestamp"
QUEUE, RETRY, DEAD = "callbacks:queue", "callbacks:retry", "callbacks:dead"
PROCESSING, ALIVE = "callbacks:processing:", "callbacks:alive:"
DEAD_KEPT = 100
ALIVE_TTL_S = 30  # a sender silent this long is presumed dead; its in-flight events are sent again

# Move retries that are due back to the queue, atomically (several senders may run).
DUE_LUA = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, item in ipairs(due) do
  redis.call('ZREM', KEYS[1], item)
  redis.call('RPUSH', KEYS[2], item)
end
return #due
"""


# -- signatures ---------------------------------------------------------------------------------------
def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of `"<timestamp>." + body`: the timestamp is signed too, so an old
    event cannot be replayed with a fresh one."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = int(now if now is not None else time.time())
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: f"sha256={sign(secret, timestamp, body)}"}


def verify_signature(secret: str, body: bytes, headers: Mapping[str, str], *, max_age_s: float = 300,
                     now: float | None = None) -> bool:
    """True when the signature matches the body and the timestamp is within `max_age_s` of now.
    (Rejecting a replay of the same event id is the receiver's job.)"""
    lower = {k.lower(): v for k, v in headers.items()}
    raw_ts, signature = lower.get(TIMESTAMP_HEADER.lower(), ""), lower.get(SIGNATURE_HEADER.lower(), "")
    if not raw_ts.isdigit() or not signature.startswith("sha256="):
        return False
    timestamp = int(raw_ts)
    if abs((now if now is not None else time.time()) - timestamp) > max_age_s:
        return False
    return hmac.compare_digest(signature.removeprefix("sha256="), sign(secret, timestamp, body))


# -- the outbox -----------------------------------------------------------------------------------------
class Outbox:
    """Events waiting to be sent, kept in Redis so they survive a sender restart."""

    def __init__(self, client: redis.Redis, cfg: Config):
        self.redis = client
        self.cfg = cfg

    def push(self, url: str, payload: dict) -> str:
        """Queue one POST of `payload` to `url`, exactly as given. One Redis command."""
        payload.setdefault("event_id", uuid.uuid4().hex)
        payload.setdefault("timestamp", datetime.now(timezone.utc).isoformat(timespec="milliseconds"))
        self.redis.rpush(QUEUE, json.dumps({"url": url, "payload": payload, "attempt": 0}))
        return payload["event_id"]

    def pending(self) -> int:
        pipe = self.redis.pipeline(transaction=False)
        pipe.llen(QUEUE)
        pipe.zcard(RETRY)
        return sum(pipe.execute())

    def dead(self, limit: int = 20) -> list[dict]:
        return [json.loads(item) for item in self.redis.lrange(DEAD, 0, limit - 1)]


# -- the sender -----------------------------------------------------------------------------------------
class CallbackSender:
    def __init__(self, client: redis.Redis, cfg: Config):
        self.redis = client
        self.cfg = cfg
        self.session = guarded_session(allow_private=cfg.allow_private_urls)
        self.sender_id = uuid.uuid4().hex
        self.processing = PROCESSING + self.sender_id
        self._due = client.register_script(DUE_LUA)
        self._housekeeping_at = 0.0

    def step(self, timeout: float = 1.0) -> bool:
        """Requeue due retries, then wait up to `timeout` for one event and try to deliver it."""
        if time.monotonic() >= self._housekeeping_at:
            self._housekeeping()
        self._due(keys=[RETRY, QUEUE], args=[time.time()])
        raw = self.redis.blmove(QUEUE, self.processing, timeout, "LEFT", "RIGHT")
        if raw is None:
            return False
        try:
            self._handle(json.loads(raw))
        finally:
            self.redis.lrem(self.processing, 1, raw)
        return True

    def _handle(self, item: dict) -> None:
        item["attempt"] += 1
        body = json.dumps(item["payload"]).encode()
        headers = {"Content-Type": "application/json"}
        if self.cfg.callback_secret:
            headers.update(signature_headers(self.cfg.callback_secret, body))
        try:
            response = self.session.post(item["url"], data=body, headers=headers, timeout=self.cfg.callback_timeout_s,
                                         allow_redirects=False)
            if 200 <= response.status_code < 300:
                return
            reason = f"HTTP {response.status_code}"
        except AddressNotAllowed as exc:
            self._give_up(item, f"refused: {exc}")  # will never succeed
            return
        except requests.RequestException as exc:
            reason = f"{type(exc).__name__}: {exc}"
        if item["attempt"] >= self.cfg.callback_max_attempts:
            self._give_up(item, f"{reason} after {item['attempt']} attempts")
            return
        delay = min(self.cfg.callback_backoff_s * 2 ** (item["attempt"] - 1), self.cfg.callback_backoff_max_s)
        item["last_error"] = reason
        self.redis.zadd(RETRY, {json.dumps(item): time.time() + delay})
        log.info("callback %s to %s failed (%s); retry %d in %.1f s", item["payload"].get("event"), item["url"],
                 reason, item["attempt"] + 1, delay)

    def _give_up(self, item: dict, reason: str) -> None:
        item["last_error"] = reason
        log.warning("callback %s to %s dropped: %s", item["payload"].get("event"), item["url"], reason)
        pipe = self.redis.pipeline()
        pipe.lpush(DEAD, json.dumps(item))
        pipe.ltrim(DEAD, 0, DEAD_KEPT - 1)
        pipe.execute()

    def run(self, stop: threading.Event) -> None:
        """Send until `stop` is set; an error is logged, never fatal."""
        while not stop.is_set():
            try:
                self.step(timeout=0.5)
            except Exception:  # noqa: BLE001 - the sender must outlive any one failure
                log.exception("callback sender step failed")
                stop.wait(1.0)
        self.redis.delete(ALIVE + self.sender_id)

    def _housekeeping(self) -> None:
        """Say this sender is alive; put back the events of senders that died mid-delivery."""
        self._housekeeping_at = time.monotonic() + ALIVE_TTL_S / 3
        self.redis.set(ALIVE + self.sender_id, 1, ex=ALIVE_TTL_S)
        for key in self.redis.scan_iter(PROCESSING + "*"):
            sender_id = key.decode().removeprefix(PROCESSING)
            if not self.redis.exists(ALIVE + sender_id):
                while self.redis.lmove(key, QUEUE, "LEFT", "RIGHT"):
                    pass
