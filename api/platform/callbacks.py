"""Callbacks: an outbox in Redis, filled by workers, emptied by a separate sender process.

A GPU worker only pushes an event (one Redis round trip) and goes on; the sender POSTs it to the
client's `notify_url` through the SSRF guard, signs it when CALLBACK_SECRET is set, and retries
with exponential backoff. A slow or dead receiver never holds a GPU and never fails a job. Events
that cannot be delivered end in a short "dead" list an operator can read.

A slow receiver does not hold anyone else's callbacks either: each delivery has a total deadline
(CALLBACK_TIMEOUT_S for connect, send and the answer's headers together, so a receiver trickling one
byte at a time is cut too), `run()` delivers CALLBACK_CONCURRENCY events at once, at most
CALLBACK_PER_HOST of them to one host, and one at a time per job, in the order taken (`_Lanes`).

Keys (all under `callbacks:`):

- `callbacks:queue` list, events waiting (JSON `{"url", "payload", "attempt"}`);
- `callbacks:processing:<sender>` list, the events a sender holds: being delivered, or waiting for
  a free slot of their host (taken with BLMOVE, so one sender only gets each event);
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

import functools
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self, cast
from urllib.parse import urlsplit

import redis
import requests
from requests.adapters import HTTPAdapter

from . import keys
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
# Events a sender holds waiting for a slot, per host and in all; past that they are parked in the
# retry set for CALLBACK_BACKOFF_S (no attempt counted), so a slow host's backlog neither fills the
# sender's memory nor stops it from taking other hosts' events.
WAITING_PER_HOST = 20
WAITING_MAX = 500

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

# Put one event a sender holds back at the front of the queue, unless it already left the
# processing list (a failure after its outcome was recorded must not send it twice).
PUT_BACK_LUA = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) > 0 then
  redis.call('LPUSH', KEYS[2], ARGV[1])
end
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
        payload.setdefault("timestamp", datetime.now(UTC).isoformat(timespec="milliseconds"))
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
        """Events waiting: queued, or scheduled for a retry (not those a sender holds)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.llen(QUEUE)
        pipe.zcard(RETRY)
        return sum(pipe.execute())

    def dead(self, limit: int = 20) -> list[dict]:
        """The events given up on, newest first: `url`, `payload`, `attempt`, `last_error`, `dropped_at`."""
        return [json.loads(item) for item in self.redis.lrange(DEAD, 0, limit - 1)]


# -- the total deadline of one delivery ----------------------------------------------------------------
class DeadlineExceeded(requests.Timeout):
    """A delivery (connect, send, the answer's status and headers) outlasted its whole budget."""


_current = threading.local()  # `.deadline`: the Deadline of the delivery this thread is making


class Deadline:
    """Cuts one delivery at a total time. requests' timeouts bound each read, not the whole, so a
    receiver trickling a byte a second would hold a sender for ever; at expiry the sockets the
    delivery opened are shut down, which ends a blocked read or write at once. Used as a context
    manager around the request, in the thread that makes it."""

    def __init__(self, budget_s: float):
        self.budget_s = budget_s
        self.expired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(budget_s, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Self:
        _current.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        with self._lock:
            self._sockets.clear()  # the response was closed, so was its connection: no reuse to cut
        _current.deadline = None

    def attach(self, sock: socket.socket) -> None:
        """A socket of this delivery: shut down at expiry, or now when the time is already up."""
        with self._lock:
            if not self.expired:
                self._sockets.append(sock)
                return
        _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    try:  # the plain socket's shutdown: it ends a TLS socket's reads too, without touching its state
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # closed already


def _attach(sock: socket.socket | None) -> None:
    deadline = getattr(_current, "deadline", None)
    if deadline is not None and sock is not None:
        deadline.attach(sock)


@functools.cache  # a few pool classes, each subclassed once
def _tracked_pool(pool_cls: Any) -> type:
    """`pool_cls` whose connections tell the running delivery's Deadline about their socket."""

    class Tracked(pool_cls.ConnectionCls):  # type: ignore[name-defined]
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()  # the SSRF guard's checks run first
            _attach(sock)
            return sock

        def request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            _attach(self.sock)  # a kept-alive connection opens no new socket
            return super().request(*args, **kwargs)

    Tracked.__name__ = f"Tracked{pool_cls.ConnectionCls.__name__}"
    return type(f"Tracked{pool_cls.__name__}", (pool_cls,), {"ConnectionCls": Tracked})


def deadline_session(session: requests.Session) -> requests.Session:
    """Let a Deadline cut `session`'s connections (those the guard opens: its pools are
    subclassed, their connection checks untouched)."""
    for adapter in {id(adapter): adapter for adapter in session.adapters.values()}.values():  # one for both schemes
        manager = cast(HTTPAdapter, adapter).poolmanager
        manager.pool_classes_by_scheme = {scheme: _tracked_pool(cls)
                                          for scheme, cls in manager.pool_classes_by_scheme.items()}
    return session


# -- which held events may go now ------------------------------------------------------------------------
@dataclass(eq=False)
class _Event:
    raw: bytes  # as in the processing list
    item: dict
    host: str
    job: str | None  # tracking_id


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:  # a malformed URL: refused when delivered
        return ""


class _Lanes:
    """Which of the events a sender holds may be delivered now: at most `slots` at once, at most
    `per_host` to one host (a slow receiver cannot take every slot), and one at a time per job in
    the order taken (a job's events do not overtake each other). The others wait, still in the
    sender's processing list in Redis; `offer` refuses (None) past WAITING_PER_HOST / WAITING_MAX."""

    def __init__(self, slots: int, per_host: int):
        self.slots, self.per_host = slots, per_host
        self._lock = threading.Lock()
        self._waiting: list[_Event] = []
        self._running = 0
        self._hosts: Counter[str] = Counter()  # deliveries under way per host
        self._jobs: set[str] = set()  # jobs with a delivery under way
        self._closed = False

    def offer(self, event: _Event) -> list[_Event] | None:
        """Hold `event`; return the events to start now, or None when it cannot be held."""
        with self._lock:
            if (len(self._waiting) >= WAITING_MAX
                    or sum(e.host == event.host for e in self._waiting) >= WAITING_PER_HOST):
                return None
            self._waiting.append(event)
            return self._ready()

    def done(self, event: _Event) -> list[_Event]:
        """`event`'s delivery ended; return the events to start now."""
        with self._lock:
            self._running -= 1
            self._hosts[event.host] -= 1
            self._jobs.discard(event.job)
            return [] if self._closed else self._ready()

    def close(self) -> None:
        """Start nothing more (the sender stops; waiting events go back to the queue)."""
        with self._lock:
            self._closed = True

    def _ready(self) -> list[_Event]:
        ready: list[_Event] = []
        held_back: set[str] = set()  # jobs with an earlier event still waiting
        for event in self._waiting:
            if self._running >= self.slots:
                break
            if (event.job in self._jobs or event.job in held_back
                    or self._hosts[event.host] >= self.per_host):
                if event.job:
                    held_back.add(event.job)
                continue
            ready.append(event)
            self._running += 1
            self._hosts[event.host] += 1
            if event.job:
                self._jobs.add(event.job)
        self._waiting = [event for event in self._waiting if event not in ready]
        return ready


# -- the sender -----------------------------------------------------------------------------------------
class CallbackSender:
    """Takes events from the outbox and POSTs them; any number may run side by side.

    `step()` alone delivers the event it takes before returning; inside `run()` it hands the
    event to a pool of CALLBACK_CONCURRENCY threads (see `_Lanes`)."""

    def __init__(self, client: redis.Redis, cfg: Config):
        self.redis = client
        self.cfg = cfg
        self.session = deadline_session(guarded_session(allow_private=cfg.allow_private_urls,
                                                        allowed_hosts=cfg.allowed_source_hosts))
        self.sender_id = uuid.uuid4().hex
        self.processing = PROCESSING + self.sender_id
        self.alive_ttl_s = max(ALIVE_TTL_S, int(4 * cfg.callback_timeout_s) + 1)
        self._due = client.register_script(DUE_LUA)
        self._put_back = client.register_script(PUT_BACK_LUA)
        self._housekeeping_at = 0.0
        # events taken but left in our processing list by a failure (Redis error mid-step): put
        # back in the queue by the next step
        self._stranded: deque[bytes] = deque()
        self._lanes: _Lanes | None = None  # while run() runs
        self._pool: ThreadPoolExecutor | None = None

    def step(self, timeout: float = 1.0) -> bool:
        """Requeue due retries, then wait up to `timeout` for one event and deliver it (inside
        `run()`: hand it to the delivery pool). True when an event was taken."""
        if time.monotonic() >= self._housekeeping_at:
            self._housekeeping()
        self._put_back_stranded()
        raw = self._take(timeout)
        if raw is None:
            return False
        self._stranded.append(raw)  # until it is handled or handed over
        if time.monotonic() >= self._housekeeping_at:  # a long wait: say we are alive before the POST
            self._housekeeping()
        event = self._parse(raw)
        if event is not None:
            self._dispatch(event)
        self._stranded.remove(raw)
        return True

    def run(self, stop: threading.Event) -> None:
        """Send until `stop` is set, CALLBACK_CONCURRENCY at a time; an error is logged, never
        fatal. On stop, deliveries under way end (each within its deadline) and the events still
        waiting go back to the front of the queue."""
        slots = max(1, self.cfg.callback_concurrency)
        self._lanes = _Lanes(slots, max(1, self.cfg.callback_per_host))
        self._pool = ThreadPoolExecutor(slots, thread_name_prefix="callback")
        try:
            while not stop.is_set():
                try:
                    self.step(timeout=0.5)
                except Exception:
                    log.exception("callback sender step failed")
                    stop.wait(1.0)
        finally:
            self._lanes.close()
            self._pool.shutdown(wait=True)
            self._lanes = self._pool = None
        try:
            self._requeue(self.processing)
            self.redis.delete(ALIVE + self.sender_id)
        except redis.RedisError:
            log.warning("callback sender could not sign off; its events are recovered when its heartbeat expires")

    # -- taking and handing out --------------------------------------------------------------------------
    def _take(self, timeout: float) -> bytes | None:
        """Move the next event into our processing list, waiting up to `timeout` (or until the
        next retry falls due)."""
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            now = time.time()
            next_due = self._due(keys=[RETRY, QUEUE], args=[now, DUE_BATCH])
            wait = deadline - time.monotonic()
            if next_due is not None:  # wake up when the next retry is due, not at the end of `timeout`
                wait = min(wait, max(float(next_due) - now, MIN_BLOCK_S))
            if wait >= MIN_BLOCK_S:  # Redis reads a timeout under 1 ms as 0: block for ever
                # fractional seconds are valid (Redis ≥ 6), whatever redis-py's annotation says
                raw = self.redis.blmove(QUEUE, self.processing, cast(int, round(wait, 3)), "LEFT", "RIGHT")
            else:
                raw = self.redis.lmove(QUEUE, self.processing, "LEFT", "RIGHT")
            if raw is not None or time.monotonic() >= deadline - MIN_BLOCK_S:
                return cast("bytes | None", raw)

    def _parse(self, raw: bytes) -> _Event | None:
        """The event in `raw`, or None when it is malformed (then set aside as dead)."""
        try:
            item = json.loads(raw)
            if not isinstance(item, dict) or not isinstance(item.get("payload"), dict) or "url" not in item:
                raise ValueError("not an outbox item")
        except ValueError as exc:
            log.error("malformed callback item dropped: %s", exc)
            self._finish(raw, dead={"raw": raw.decode(errors="replace"), "last_error": f"malformed: {exc}"})
            return None
        job = item["payload"].get("tracking_id")
        return _Event(raw, item, _host(str(item["url"])), str(job) if job else None)

    def _dispatch(self, event: _Event) -> None:
        if self._lanes is None or self._pool is None:
            self._handle(event.raw, event.item)
            return
        ready = self._lanes.offer(event)
        if ready is None:  # its host has too many waiting already: back in a while, no attempt counted
            self._finish(event.raw, retry=(event.raw.decode(), time.time() + self.cfg.callback_backoff_s))
            return
        self._start(ready)

    def _start(self, events: list[_Event]) -> None:
        assert self._pool is not None, "started by run()"
        for event in events:
            self._pool.submit(self._deliver, event)

    def _deliver(self, event: _Event) -> None:
        """One delivery in a pool thread; then start what its end made room for."""
        try:
            self._handle(event.raw, event.item)
        except Exception:
            log.exception("callback %s to %s: could not record the outcome", event.item["payload"].get("event"),
                          event.item["url"])
            self._stranded.append(event.raw)
        finally:
            lanes = self._lanes
            if lanes is not None:
                self._start(lanes.done(event))

    def _put_back_stranded(self) -> None:
        while self._stranded:
            self._put_back(keys=[self.processing, QUEUE], args=[self._stranded[0]])
            self._stranded.popleft()

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
            status = self._post(item["url"], body, headers)
            if 200 <= status < 300:
                log.debug("callback %s to %s delivered", payload.get("event"), item["url"])
                self._finish(raw)
                return
            reason = f"HTTP {status}"
        except AddressNotAllowed as exc:  # the SSRF guard: it will never succeed
            self._give_up(raw, item, f"refused: {exc}")
            return
        except ValueError as exc:  # not http(s), no host, credentials, a malformed URL: never succeeds either
            self._give_up(raw, item, f"invalid: {type(exc).__name__}: {exc}")
            return
        except requests.RequestException as exc:  # refused, reset, timed out: retried
            reason = f"{type(exc).__name__}: {exc}"
        except Exception as exc:
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

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST within CALLBACK_TIMEOUT_S in all; the answer's status (its body is never read)."""
        budget = self.cfg.callback_timeout_s
        with Deadline(budget) as deadline:
            try:
                response = self.session.post(url, data=body, headers=headers, timeout=budget,
                                             allow_redirects=False, stream=True)
            except requests.RequestException as exc:
                if deadline.expired:
                    raise DeadlineExceeded(f"no answer within {budget:g} s") from exc
                raise
            response.close()  # closes the connection too (body unread): it is never reused
        return response.status_code

    def _superseded(self, payload: dict) -> bool:
        """A PROGRESS event after which another event for the same job was queued."""
        tracking_id = payload.get("tracking_id")
        if payload.get("event") != "PROGRESS" or not tracking_id:
            return False
        latest = self.redis.get(LATEST + str(tracking_id))
        return latest is not None and keys.text(latest) != payload.get("event_id")

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
            dead["dropped_at"] = datetime.now(UTC).isoformat(timespec="seconds")
            pipe.lpush(DEAD, json.dumps(dead, default=str))
            pipe.ltrim(DEAD, 0, DEAD_KEPT - 1)
        pipe.lrem(self.processing, 1, keys.text(raw))
        pipe.execute()

    # -- several senders ---------------------------------------------------------------------------------
    def _housekeeping(self) -> None:
        """Say this sender is alive; put back the events of senders that died mid-delivery."""
        self._housekeeping_at = time.monotonic() + self.alive_ttl_s / 3
        self.redis.set(ALIVE + self.sender_id, 1, ex=self.alive_ttl_s)
        for key in self.redis.scan_iter(PROCESSING + "*"):
            sender_id = keys.text(key).removeprefix(PROCESSING)
            if sender_id != self.sender_id and not self.redis.exists(ALIVE + sender_id):
                moved = self._requeue(key)
                if moved:
                    log.warning("%d callback(s) of stopped sender %s queued again", moved, sender_id)

    def _requeue(self, key: str | bytes) -> int:
        key = keys.text(key)
        """Move a processing list back to the front of the queue, in its order (they were taken first)."""
        moved = 0
        while self.redis.lmove(key, QUEUE, "RIGHT", "LEFT"):  # the last first, so the first ends in front
            moved += 1
        return moved
