"""A job's live events (GET /<app>/<id>/events) as Server-Sent Events, read from its Redis stream.

Why a hub: an open stream holds one gunicorn thread, and many clients may follow one job (a room
watching a demo, a front's pages). If each did its own blocking XREAD, Redis would hold a blocked
connection per client. Instead one thread per API process (`EventHub`) reads every followed job's
stream with a single blocking XREAD and hands each new event, formatted once, to the queues of
that job's clients: 200 clients of one job cost one blocked Redis connection per process (none
while nobody follows a job), and a client that joins reads its backlog with one XRANGE.

Order and resume: stream entries are ordered. A client registers with the hub first, then reads
its backlog, and from then on sends only entries after the last one it sent, so the backlog and
the live feed join without loss or repetition. The SSE `id:` is the event's `event_id` (its
callback's); a Last-Event-ID is looked up in the stream, newest first. An id no longer kept
(trimmed: older than every kept event) or not of this job replays every kept event.

The end: the stream closes after the terminal event (SUCCESS, ERROR, CANCELLED). A request for an
ended job replays the kept events after Last-Event-ID and closes; when its events expired with
the job's Redis state (or it ended before events were recorded), one synthetic terminal event
built from the job's state is sent, with the id `end-<tracking_id>`. A Last-Event-ID that is the
terminal event's id is answered 204, which tells EventSource to stop reconnecting.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import redis
from flask import Flask, Response
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import keys
from .config import Config
from .errors import error_response
from .events import TERMINAL_EVENTS, payload
from .jobs import Job, JobStore, iso

log = logging.getLogger(__name__)

BLOCK_S = 10.0  # one XREAD waits this long; then the hub checks whether its followed jobs ended
END_GRACE_S = 5.0  # a job that ended this recently may still be writing its terminal event
BACKLOG_MAX = 1000  # events queued for one slow client before its stream is closed (it resumes)
LOOKUP_BATCH = 100  # entries read per step when looking for a Last-Event-ID, newest first
RETRY_MS = 2000  # the reconnection delay EventSource is told to use
BUSY_RETRY_AFTER_S = 5
SYNTHETIC_PREFIX = "end-"
HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}


def position(entry_id: bytes | str) -> tuple[int, int]:
    """A stream entry id ("<ms>-<seq>") as a comparable pair."""
    ms, _, seq = keys.text(entry_id).partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class Entry:
    """One event of the stream, with its SSE frame made once for every client."""

    position: tuple[int, int]
    event_id: str
    event: str
    frame: bytes

    @property
    def terminal(self) -> bool:
        return self.event in TERMINAL_EVENTS

    @classmethod
    def of(cls, entry_id: bytes | str, fields: dict[Any, Any]) -> Entry:
        """An entry as `events.record` writes it; one written otherwise still gets an id and a frame."""
        values = {keys.text(k): keys.text(v) for k, v in fields.items()}
        event_id = values.get("id") or keys.text(entry_id)
        event, data = values.get("event", "message"), values.get("data", "{}").replace("\n", " ")
        return cls(position(entry_id), event_id, event, sse_frame(event_id, event, data))

    @property
    def entry_id(self) -> str:
        return f"{self.position[0]}-{self.position[1]}"


def sse_frame(event_id: str, event: str, data: str) -> bytes:
    """One SSE message. The data is one line of JSON (json.dumps escapes every newline)."""
    return f"id: {event_id}\nevent: {event}\ndata: {data}\n\n".encode()


class _Check:
    """Put in a client's queue by the hub: its job may have ended without a terminal event."""


CHECK = _Check()


class Subscription:
    """One client's place at the hub: the events of its job, in order, as the hub reads them."""

    def __init__(self, key: str, tracking_id: str):
        self.key, self.tracking_id = key, tracking_id
        self.queue: queue.Queue[Entry | _Check] = queue.Queue(BACKLOG_MAX)
        self.lagging = False  # its queue overflowed: the client must resume from Redis

    def put(self, item: Entry | _Check) -> None:
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.lagging = True


class EventHub:
    """One per API process: a thread that follows every job a client of this process follows, with
    one blocking XREAD on one connection, and fans each event out to the job's subscriptions.

    A stream added while the XREAD blocks is taken in at once: the hub's connection is woken with
    CLIENT UNBLOCK (from another connection), and the next XREAD names it too."""

    def __init__(self, cfg: Config, client: redis.Redis):
        self.cfg = cfg
        self.max_streams = cfg.events_max_streams or max(1, cfg.gunicorn_threads // 2)
        self.name = f"event-hub-{os.getpid()}-{next(_hub_numbers)}"  # its connection's CLIENT SETNAME
        self._waker = client  # the app's pool: CLIENT UNBLOCK, and the job checks
        self._reader = redis.Redis.from_url(cfg.redis_url, single_connection_client=True, client_name=self.name,
                                            socket_timeout=BLOCK_S + 10, retry=Retry(NoBackoff(), 0))
        self._reader_id: int | None = None
        self._lock = threading.Condition()
        self._subscriptions: dict[str, set[Subscription]] = {}
        self._positions: dict[str, str] = {}  # stream key -> the entry id the next XREAD starts after
        self._tracking_ids: dict[str, str] = {}
        self._generation = 0  # bumped each time a stream is added
        self._read_generation = -1  # the generation of the streams the XREAD under way names
        self._thread: threading.Thread | None = None
        self.open_streams = 0

    # -- clients -------------------------------------------------------------------------------------
    def open(self) -> bool:
        """Take one of this process's stream slots; False when all are taken."""
        with self._lock:
            if self.open_streams >= self.max_streams:
                return False
            self.open_streams += 1
            return True

    def close(self) -> None:
        with self._lock:
            self.open_streams -= 1

    def subscribe(self, tracking_id: str, after: str) -> Subscription:
        """Receive every event of the job read from now on; a stream new to the hub is read from
        `after` (the client reads its backlog itself, and skips what it already sent)."""
        key = keys.job_events(tracking_id)
        subscription = Subscription(key, tracking_id)
        with self._lock:
            new = key not in self._subscriptions
            self._subscriptions.setdefault(key, set()).add(subscription)
            if new:
                self._positions[key] = after
                self._tracking_ids[key] = tracking_id
                self._generation += 1
            generation = self._generation
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="event-hub", daemon=True)
                self._thread.start()
            self._lock.notify_all()
        if new:
            self._wake(generation)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            found = self._subscriptions.get(subscription.key)
            if found is None:
                return
            found.discard(subscription)
            if found:
                return
            # the XREAD under way may still name it; its events then go nowhere
            del self._subscriptions[subscription.key]
            del self._positions[subscription.key]
            del self._tracking_ids[subscription.key]
            idle, reader_id = not self._positions, self._reader_id
        if idle and reader_id is not None:  # nobody follows anything: hold no blocked connection
            try:
                self._waker.client_unblock(reader_id)
            except redis.RedisError:
                pass  # it times out by itself

    def _wake(self, generation: int) -> None:
        """Make the hub's XREAD name the streams of `generation`: unblock it if it is waiting on an
        older set; if it is not blocked yet, it is about to take the new set, or about to block on
        the old one (then try again in a moment)."""
        deadline, pause = time.monotonic() + BLOCK_S, 0.001
        while time.monotonic() < deadline:
            with self._lock:
                if self._read_generation >= generation:
                    return
                reader_id = self._reader_id
            if reader_id is not None:
                try:
                    if self._waker.client_unblock(reader_id):
                        return
                except redis.RedisError as exc:
                    log.warning("event hub: could not wake the reader: %s", exc)
                    return
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    # -- the reader thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        pause = 0.5
        while True:
            with self._lock:
                while not self._positions:
                    self._lock.wait()
                streams = dict(self._positions)
                generation = self._generation
            try:
                if self._reader_id is None:
                    self._reader_id = int(cast(int, self._reader.client_id()))
                with self._lock:
                    self._read_generation = generation
                started = time.monotonic()
                reply = self._reader.xread(cast(Any, streams), block=int(BLOCK_S * 1000))
            except redis.RedisError as exc:
                log.warning("event hub: Redis read failed (%s); again in %.1f s", exc, pause)
                self._reconnect()
                time.sleep(pause)
                pause = min(pause * 2, 10.0)
                continue
            pause = 0.5
            if reply:
                try:
                    self._dispatch(reply)
                except Exception:  # a bug here must not stop every stream of this process
                    log.exception("event hub: could not hand events out")
            elif time.monotonic() - started >= BLOCK_S * 0.9:  # quiet (not woken): did a followed job
                self._check_ended(streams)  # end without saying so?

    def _reconnect(self) -> None:
        with self._lock:
            self._reader_id = None
            self._read_generation = -1
        try:
            self._reader.connection.disconnect()  # type: ignore[union-attr]
        except (AttributeError, OSError):
            pass

    def _dispatch(self, reply: Any) -> None:
        items = reply.items() if isinstance(reply, dict) else reply  # RESP3 answers a map
        with self._lock:
            for raw_key, entries in items:
                key = keys.text(raw_key)
                if key not in self._positions or not entries:
                    continue  # nobody follows it any more
                last = keys.text(entries[-1][0])
                if position(self._positions[key]) < position(last):  # first: a failure below reads on
                    self._positions[key] = last
                parsed = [Entry.of(entry_id, fields) for entry_id, fields in entries]
                for subscription in self._subscriptions.get(key, ()):
                    for entry in parsed:
                        subscription.put(entry)

    def _check_ended(self, streams: dict[str, str]) -> None:
        with self._lock:
            tracking = {key: self._tracking_ids[key] for key in streams if key in self._tracking_ids}
        if not tracking:
            return
        try:
            pipe = self._waker.pipeline(transaction=False)
            for tracking_id in tracking.values():
                pipe.hget(keys.job(tracking_id), "state")
            states = pipe.execute()
        except redis.RedisError:
            return
        with self._lock:
            for key, state in zip(tracking, states, strict=True):
                if state is None or keys.text(state) in ("SUCCESS", "FAILURE", "CANCELLED"):
                    for subscription in self._subscriptions.get(key, ()):
                        subscription.put(CHECK)


_hubs_lock = threading.Lock()
_hub_numbers = itertools.count(1)


def hub(app: Flask, cfg: Config, client: redis.Redis) -> EventHub:
    """The app's hub, made at its first stream (in each gunicorn worker, after the fork)."""
    with _hubs_lock:
        found = app.extensions.get("api_event_hub")
        if found is None:
            found = app.extensions["api_event_hub"] = EventHub(cfg, client)
        return found


# -- one client's stream ---------------------------------------------------------------------------
def _entries(reply: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """XRANGE's answer, typed (redis-py's annotations allow None, which it never answers here)."""
    return list(reply or [])


def find(client: redis.Redis, tracking_id: str, event_id: str) -> Entry | None:
    """The kept entry whose event id is `event_id`, looked for from the newest (a client resuming
    is usually a few events behind)."""
    key, upper = keys.job_events(tracking_id), "+"
    while True:
        batch = _entries(client.xrevrange(key, upper, "-", count=LOOKUP_BATCH))
        for entry_id, fields in batch:
            if keys.text(fields.get(b"id", b"")) == event_id:
                return Entry.of(entry_id, fields)
        if len(batch) < LOOKUP_BATCH:
            return None
        upper = "(" + keys.text(batch[-1][0])


def backlog(client: redis.Redis, tracking_id: str, after: str) -> list[Entry]:
    start = "-" if after == "0-0" else "(" + after
    reply = _entries(client.xrange(keys.job_events(tracking_id), start, "+"))
    return [Entry.of(entry_id, fields) for entry_id, fields in reply]


def synthetic_end(cfg: Config, job: Job) -> Entry:
    """The terminal event of an ended job whose recorded events are gone, built from its state."""
    event_id = SYNTHETIC_PREFIX + job.tracking_id
    body = {**payload(cfg, job), "event_id": event_id, "timestamp": iso(job.finished_at)}
    frame = sse_frame(event_id, body["event"], json.dumps(body, default=str))
    return Entry((0, 0), event_id, body["event"], frame)


class EventStream:
    """The body of one SSE response. A class, not a bare generator, so that its slot and hub
    subscription are given back by `close()` (called by the WSGI server) even when the client
    left before the first byte was sent."""

    def __init__(self, hub: EventHub, store: JobStore, cfg: Config, job: Job, after: str):
        self.hub, self.store, self.cfg, self.job = hub, store, cfg, job
        self.subscription: Subscription | None = hub.subscribe(job.tracking_id, after)
        self.after = after
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return self._events()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.subscription is not None:
            self.hub.unsubscribe(self.subscription)
        self.hub.close()

    def _events(self) -> Iterator[bytes]:
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()  # sent at once, so the client has the headers
            last = position(self.after)
            for entry in backlog(self.store.redis, self.job.tracking_id, self.after):
                last = entry.position
                yield entry.frame
                if entry.terminal:
                    return
            assert self.subscription is not None
            subscription, items = self.subscription, self.subscription.queue
            keepalive = max(0.05, self.cfg.events_keepalive_s)
            known: Job | None = self.job  # read by the route a moment ago: the first check needs no read
            check_at: float | None = time.monotonic()
            next_ping = time.monotonic() + keepalive
            while True:
                now = time.monotonic()
                if check_at is not None and now >= check_at:
                    ending, again = self._ending(known)
                    known = None
                    if ending is not None:
                        yield ending.frame
                        return
                    check_at = None if again is None else now + again
                if now >= next_ping:
                    yield b": keep-alive\n\n"
                    next_ping = now + keepalive
                wait = next_ping - now if check_at is None else min(next_ping, check_at) - now
                try:
                    item = items.get(timeout=max(0.0, wait))
                except queue.Empty:
                    continue
                if isinstance(item, _Check):
                    check_at = min(check_at or now, now)
                elif item.position > last:
                    last = item.position
                    yield item.frame
                    next_ping = time.monotonic() + keepalive
                    if item.terminal:
                        return
                if subscription.lagging:  # it fell too far behind: it resumes with Last-Event-ID
                    return
        finally:
            self.close()

    def _ending(self, known: Job | None) -> tuple[Entry | None, float | None]:
        """When the job ended and its terminal event will not come (it ended more than END_GRACE_S
        ago, or Redis forgot it): the synthetic one. Else None, and in how many seconds to look
        again (None: when the hub says so)."""
        job = known or self.store.get(self.job.app, self.job.tracking_id) or self.job
        if not job.finished:
            return None, None
        waited = time.time() - job.finished_at if job.finished_at else END_GRACE_S
        if waited < END_GRACE_S:
            return None, END_GRACE_S - waited
        return synthetic_end(self.cfg, job), None


def events_response(app: Flask, cfg: Config, store: JobStore, job: Job, last_event_id: str) -> Response:
    """The SSE response for `job`, resumed after `last_event_id` (may be empty)."""
    after = "0-0"
    if last_event_id:
        if job.finished and last_event_id == SYNTHETIC_PREFIX + job.tracking_id:
            return Response(status=204, headers=HEADERS)
        found = find(store.redis, job.tracking_id, last_event_id)
        if found is not None:
            if found.terminal:
                return Response(status=204, headers=HEADERS)
            after = found.entry_id
    events_hub = hub(app, cfg, store.redis)
    if not events_hub.open():
        response = error_response(503, "busy", f"this API process already streams {events_hub.max_streams} "
                                               "event streams (EVENTS_MAX_STREAMS); poll the status route, or "
                                               "retry later")
        response.headers["Retry-After"] = str(BUSY_RETRY_AFTER_S)
        return response
    try:
        body = EventStream(events_hub, store, cfg, job, after)
    except BaseException:
        events_hub.close()
        raise
    return Response(body, mimetype="text/event-stream", headers=HEADERS)
