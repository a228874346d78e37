"""Callbacks: an outbox in Redis, filled by workers, emptied by a separate sender process.

A GPU worker only pushes an event (one Redis round trip) and goes on; the sender POSTs it to the
client's `notify_url` through the SSRF guard, signs it when CALLBACK_SECRET is set, and retries
with exponential backoff. A slow or dead receiver never holds a GPU and never fails a job. Events
that cannot be delivered end in a short "dead" list an operator can read.

Keys (all under `callbacks:`):

- `callbacks:queue` list, events waiting (JSON `{"url", "payload", "attempt"}`);
- `callbacks:processing:<sender>` list, the event a sender is delivering (taken with BLMOVE, so
  one sender only gets each event);
- `callbacks:retry` sorted set by due time (unix seconds), moved back to the queue by a Lua script;
- `callbacks:dead` capped list (newest first) of events given up on;
- `callbacks:latest:<tracking_id>` the event id last queued for a job: a PROGRESS that failed is
  not retried once a newer event for its job was queued;
- `callbacks:alive:<sender>` a sender's heartbeat; the in-flight events of a sender without one
  are queued again.

Delivery is at least once (an event whose sender died mid-POST is sent again), so receivers
de-duplicate by `event_id`.
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
from .netguard import AddressNotAllowed, check_url, guarded_session

log = logging.getLogger("api.callbacks")

EVENTS = ("STARTED", "PROGRESS", "SUCCESS", "ERROR", "CANCELLED")
SIGNATURE_HEADER = "X-Signature"  # "sha256=<hex>"
TIMESTAMP_HEADER = "X-Signature-Timestamp"  # unix seconds
PREFIX = "callbacks:"
QUEUE, RETRY, DEAD = PREFIX + "queue", PREFIX + "retry", PREFIX + "dead"
PROCESSING, ALIVE, LATEST = PREFIX + "processing:", PREFIX + "alive:", PREFIX + "latest:"
DEAD_KEPT = 100
LATEST_TTL_S = 24 * 3600  # longer than any retry schedule
ALIVE_TTL_S = 30  # a sender silent this long is presumed dead; its in-flight events are sent again
DUE_BATCH = 100
MIN_BLOCK_S = 0.01  # shorter waits do not block at all

# Move retries that are due back to the queue, atomically (several senders may run); return the
# due time of the next retry still waiting, or false.
DUE_LUA = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, item in ipairs(due) do
  redis.call('ZREM', KEYS[1], item)
  redis.call('RPUSH', KEYS[2], item)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return nxt[2] or false
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
    """True when the signature matches the body and the timestamp is within `max_age_s` of now
    (either way). False, never an exception, for missing or malformed headers. Header names are
    matched case-insensitively. (Rejecting a replay of the same event id is the receiver's job.)"""
    lower = {str(key).lower(): value for key, value in headers.items()}
    raw_ts, signature = lower.get(TIMESTAMP_HEADER.lower()), lower.get(SIGNATURE_HEADER.lower())
    if not isinstance(raw_ts, str) or not isinstance(signature, str):
        return False
    raw_ts, signature = raw_ts.strip(), signature.strip()
    if not (raw_ts.isascii() and raw_ts.isdigit()) or not signature.startswith("sha256="):
        return False
    timestamp = int(raw_ts)
    if abs((now if now is not None else time.time()) - timestamp) > max_age_s:
        return False
    given = signature.removeprefix("sha256=").encode("utf-8", "replace")
    return hmac.compare_digest(given, sign(secret, timestamp, body).encode())


# -- the outbox -----------------------------------------------------------------------------------------
class Outbox:
    """Events waiting to be sent, kept in Redis so they survive a sender restart."""

    def __init__(self, client: redis.Redis, cfg: Config):
        self.redis = client
        self.cfg = cfg

    def push(self, url: str, payload: dict) -> str:
        """Queue one POST of `payload` (JSON) to `url`, exactly as given. Adds `event_id` and
        `timestamp` (ISO 8601, UTC) when missing; returns the event id. One Redis round trip."""
        payload.setdefault("event_id", uuid.uuid4().hex)
        payload.setdefault("timestamp", datetime.now(timezone.utc).isoformat(timespec="milliseconds"))
        # default=str: a value JSON cannot hold must not make a job fail over its callback
        item = json.dumps({"url": url, "payload": payload, "attempt": 0}, default=str)
        tracking_id = payload.get("tracking_id")
        if tracking_id:
            pipe = self.redis.pipeline(transaction=True)
            pipe.set(LATEST + str(tracking_id), payload["event_id"], ex=LATEST_TTL_S)  # before the event is visible
            pipe.rpush(QUEUE, item)
            pipe.execute()
        else:
            self.redis.rpush(QUEUE, item)
        return payload["event_id"]

    def pending(self) -> int:
        """Events waiting: queued, or scheduled for a retry (not those being sent right now)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.llen(QUEUE)
        pipe.zcard(RETRY)
        return sum(pipe.execute())

    def dead(self, limit: int = 20) -> list[dict]:
        """The events given up on, newest first: `url`, `payload`, `attempt`, `last_error`, `dropped_at`."""
        return [json.loads(item) for item in self.redis.lrange(DEAD, 0, limit - 1)]


# -- the sender -----------------------------------------------------------------------------------------
class CallbackSender:
    """Takes events from the outbox and POSTs them; any number may run side by side."""

    def __init__(self, client: redis.Redis, cfg: Config):
        self.redis = client
        self.cfg = cfg
        self.session = guarded_session(allow_private=cfg.allow_private_urls, allowed_hosts=cfg.allowed_source_hosts)
        self.sender_id = uuid.uuid4().hex
        self.processing = PROCESSING + self.sender_id
        self.alive_ttl_s = max(ALIVE_TTL_S, int(4 * cfg.callback_timeout_s) + 1)
        self._due = client.register_script(DUE_LUA)
        self._housekeeping_at = 0.0
        self._leftover = False  # an event may be left in our processing list (a Redis error mid-step)

    def step(self, timeout: float = 1.0) -> bool:
        """Requeue due retries, then wait up to `timeout` for one event and try to deliver it.
        True when an event was handled (delivered, rescheduled or dropped)."""
        if time.monotonic() >= self._housekeeping_at:
            self._housekeeping()
        if self._leftover:
            self._requeue(self.processing)
            self._leftover = False
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            now = time.time()
            next_due = self._due(keys=[RETRY, QUEUE], args=[now, DUE_BATCH])
            wait = deadline - time.monotonic()
            if next_due is not None:  # wake up when the next retry is due, not at the end of `timeout`
                wait = min(wait, max(float(next_due) - now, MIN_BLOCK_S))
            if wait >= MIN_BLOCK_S:  # Redis reads a timeout under 1 ms as 0: block for ever
                raw = self.redis.blmove(QUEUE, self.processing, round(wait, 3), "LEFT", "RIGHT")
            else:
                raw = self.redis.lmove(QUEUE, self.processing, "LEFT", "RIGHT")
            if raw is not None or time.monotonic() >= deadline - MIN_BLOCK_S:
                break
        if raw is None:
            return False
        self._leftover = True
        if time.monotonic() >= self._housekeeping_at:  # a long wait: say we are alive before the POST
            self._housekeeping()
        try:
            item = json.loads(raw)
            if not isinstance(item, dict) or not isinstance(item.get("payload"), dict) or "url" not in item:
                raise ValueError("not an outbox item")
        except ValueError as exc:
            log.error("malformed callback item dropped: %s", exc)
            self._finish(raw, dead={"raw": raw.decode(errors="replace"), "last_error": f"malformed: {exc}"})
        else:
            self._handle(raw, item)
        self._leftover = False
        return True

    def run(self, stop: threading.Event) -> None:
        """Send until `stop` is set; an error is logged, never fatal."""
        while not stop.is_set():
            try:
                self.step(timeout=0.5)
            except Exception:  # noqa: BLE001 - the sender must outlive any one failure
                log.exception("callback sender step failed")
                stop.wait(1.0)
        try:
            if self._leftover:
                self._requeue(self.processing)
            self.redis.delete(ALIVE + self.sender_id)
        except redis.RedisError:
            log.warning("callback sender could not sign off; its events are recovered when its heartbeat expires")

    # -- one event ---------------------------------------------------------------------------------------
    def _handle(self, raw: bytes, item: dict) -> None:
        payload = item["payload"]
        attempt = int(item.get("attempt", 0)) + 1
        item["attempt"] = attempt
        if attempt > 1 and self._superseded(payload):
            log.info("stale PROGRESS callback for %s skipped: a newer event was queued", payload.get("tracking_id"))
            self._finish(raw)
            return
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if self.cfg.callback_secret:
            headers.update(signature_headers(self.cfg.callback_secret, body))
        try:
            check_url(item["url"], allow_private=self.cfg.allow_private_urls, resolve=False,
                      allowed_hosts=self.cfg.allowed_source_hosts)
            response = self.session.post(item["url"], data=body, headers=headers, timeout=self.cfg.callback_timeout_s,
                                         allow_redirects=False, stream=True)  # the answer's body is never read
            response.close()
            if 200 <= response.status_code < 300:
                log.debug("callback %s to %s delivered", payload.get("event"), item["url"])
                self._finish(raw)
                return
            reason = f"HTTP {response.status_code}"
        except AddressNotAllowed as exc:  # the SSRF guard: it will never succeed
            self._give_up(raw, item, f"refused: {exc}")
            return
        except ValueError as exc:  # not http(s), no host, credentials, a malformed URL: never succeeds either
            self._give_up(raw, item, f"invalid: {type(exc).__name__}: {exc}")
            return
        except requests.RequestException as exc:  # refused, reset, timed out: retried
            reason = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # noqa: BLE001 - a bug must not lose the event; retry it
            log.exception("callback %s to %s: unexpected error", payload.get("event"), item["url"])
            reason = f"{type(exc).__name__}: {exc}"
        item["last_error"] = reason
        if attempt >= self.cfg.callback_max_attempts:
            self._give_up(raw, item, f"{reason} after {attempt} attempts")
            return
        if self._superseded(payload):
            log.info("failed PROGRESS callback for %s not retried: a newer event was queued",
                     payload.get("tracking_id"))
            self._finish(raw)
            return
        delay = min(self.cfg.callback_backoff_s * 2 ** (attempt - 1), self.cfg.callback_backoff_max_s)
        self._finish(raw, retry=(json.dumps(item), time.time() + delay))
        log.info("callback %s to %s failed (%s); attempt %d in %.1f s", payload.get("event"), item["url"],
                 reason, attempt + 1, delay)

    def _superseded(self, payload: dict) -> bool:
        """A PROGRESS event after which another event for the same job was queued."""
        tracking_id = payload.get("tracking_id")
        if payload.get("event") != "PROGRESS" or not tracking_id:
            return False
        latest = self.redis.get(LATEST + str(tracking_id))
        return latest is not None and latest.decode() != payload.get("event_id")

    def _give_up(self, raw: bytes, item: dict, reason: str) -> None:
        item["last_error"] = reason
        log.warning("callback %s to %s dropped: %s", item["payload"].get("event"), item["url"], reason)
        self._finish(raw, dead=item)

    def _finish(self, raw: bytes, *, retry: tuple[str, float] | None = None, dead: dict | None = None) -> None:
        """Take the event out of our processing list and, in the same transaction, schedule its
        retry or record it as dead."""
        pipe = self.redis.pipeline(transaction=True)
        if retry is not None:
            pipe.zadd(RETRY, {retry[0]: retry[1]})
        if dead is not None:
            dead["dropped_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            pipe.lpush(DEAD, json.dumps(dead, default=str))
            pipe.ltrim(DEAD, 0, DEAD_KEPT - 1)
        pipe.lrem(self.processing, 1, raw)
        pipe.execute()

    # -- several senders ---------------------------------------------------------------------------------
    def _housekeeping(self) -> None:
        """Say this sender is alive; put back the events of senders that died mid-delivery."""
        self._housekeeping_at = time.monotonic() + self.alive_ttl_s / 3
        self.redis.set(ALIVE + self.sender_id, 1, ex=self.alive_ttl_s)
        for key in self.redis.scan_iter(PROCESSING + "*"):
            sender_id = key.decode().removeprefix(PROCESSING)
            if sender_id != self.sender_id and not self.redis.exists(ALIVE + sender_id):
                moved = self._requeue(key)
                if moved:
                    log.warning("%d callback(s) of stopped sender %s queued again", moved, sender_id)

    def _requeue(self, key: str | bytes) -> int:
        moved = 0
        while self.redis.lmove(key, QUEUE, "LEFT", "LEFT"):  # to the front: they were taken first
            moved += 1
        return moved
