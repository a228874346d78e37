"""api.platform.callbacks: signatures, the Redis outbox and the sender, against a real Redis and a
local receiver on 127.0.0.1 (nothing leaves the loopback interface)."""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import select
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis

from api.platform import callbacks
from api.platform.callbacks import (
    EVENTS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    CallbackSender,
    Outbox,
    sign,
    signature_headers,
    verify_signature,
)
from api.platform.embedded import free_port
from tests.support.httpserver import LocalServer, Response
from tests.support.platform import wait_for

SECRET = "s3cret"
BODY = b'{"event": "SUCCESS", "tracking_id": "t1"}'
NOW = 1_700_000_000


@pytest.fixture
def client(redis_url):
    conn = redis.Redis.from_url(redis_url)
    yield conn
    conn.close()


def drain(sender: CallbackSender, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sender.step(timeout=0.05)


def ok(req):
    return Response(b"ok", 200, "text/plain")


# -- signatures ---------------------------------------------------------------------------------------
def test_constants():
    assert EVENTS == ("STARTED", "PROGRESS", "SUCCESS", "ERROR", "CANCELLED")
    assert (SIGNATURE_HEADER, TIMESTAMP_HEADER) == ("X-Signature", "X-Signature-Timestamp")


def test_sign_is_hmac_sha256_of_timestamp_dot_body():
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW, BODY) == expected
    assert signature_headers(SECRET, BODY, now=NOW + 0.9) == {TIMESTAMP_HEADER: str(NOW),
                                                            SIGNATURE_HEADER: f"sha256={expected}"}
    fresh = signature_headers(SECRET, BODY)
    assert abs(int(fresh[TIMESTAMP_HEADER]) - time.time()) < 5 and verify_signature(SECRET, BODY, fresh)


def test_verify_round_trip_any_header_case():
    headers = signature_headers(SECRET, BODY, now=NOW)
    assert verify_signature(SECRET, BODY, headers, now=NOW + 10)
    assert verify_signature(SECRET, BODY, {k.lower(): v for k, v in headers.items()}, now=NOW)
    assert verify_signature(SECRET, BODY, {k.upper(): v for k, v in headers.items()}, now=NOW)


def test_verify_refuses_wrong_secret_and_tampered_body():
    headers = signature_headers(SECRET, BODY, now=NOW)
    assert not verify_signature("not-the-secret", BODY, headers, now=NOW)
    assert not verify_signature(SECRET, BODY.replace(b"SUCCESS", b"ERROR"), headers, now=NOW)
    assert not verify_signature(SECRET, BODY + b" ", headers, now=NOW)
    # a fresh timestamp put on an old signature
    assert not verify_signature(SECRET, BODY, dict(headers, **{TIMESTAMP_HEADER: str(NOW + 1)}), now=NOW)


def test_verify_refuses_stale_and_future_timestamps():
    headers = signature_headers(SECRET, BODY, now=NOW)
    assert verify_signature(SECRET, BODY, headers, now=NOW + 300)
    assert not verify_signature(SECRET, BODY, headers, now=NOW + 301)
    assert not verify_signature(SECRET, BODY, headers, now=NOW - 301)  # from the future
    assert not verify_signature(SECRET, BODY, headers, now=NOW + 61, max_age_s=60)
    assert not verify_signature(SECRET, BODY, signature_headers(SECRET, BODY, now=time.time() - 3600))


@pytest.mark.parametrize("headers", [
    {},
    {SIGNATURE_HEADER: "sha256=" + "0" * 64},
    {TIMESTAMP_HEADER: str(NOW)},
    {TIMESTAMP_HEADER: "soon", SIGNATURE_HEADER: "sha256=" + "0" * 64},
    {TIMESTAMP_HEADER: "", SIGNATURE_HEADER: ""},
    {TIMESTAMP_HEADER: "-5", SIGNATURE_HEADER: "sha256=" + "0" * 64},
    {TIMESTAMP_HEADER: "\u00b2", SIGNATURE_HEADER: "sha256=" + "0" * 64},  # str.isdigit() says yes
    {TIMESTAMP_HEADER: str(NOW), SIGNATURE_HEADER: sign(SECRET, NOW, BODY)},  # no "sha256=" prefix
    {TIMESTAMP_HEADER: str(NOW), SIGNATURE_HEADER: "sha256=\u00e9t\u00e9"},  # not ASCII
    {TIMESTAMP_HEADER: str(NOW), SIGNATURE_HEADER: "md5=" + sign(SECRET, NOW, BODY)},
])
def test_verify_refuses_missing_or_malformed_headers(headers):
    assert verify_signature(SECRET, BODY, headers, now=NOW) is False


# -- the outbox -----------------------------------------------------------------------------------------
def test_push_adds_event_id_and_timestamp_and_is_counted(config, client):
    outbox = Outbox(client, config)
    payload = {"event": "STARTED", "tracking_id": "t1"}
    event_id = outbox.push("http://127.0.0.1:9/cb?x=1", payload)
    assert payload["event_id"] == event_id and len(event_id) == 32 and int(event_id, 16) >= 0
    stamp = datetime.fromisoformat(payload["timestamp"])
    assert stamp.utcoffset() == timedelta(0) and abs(datetime.now(UTC) - stamp) < timedelta(seconds=5)
    given = {"event": "SUCCESS", "event_id": "mine", "timestamp": "2024-01-01T00:00:00Z", "when": datetime.now()}
    assert outbox.push("http://127.0.0.1:9/cb", given) == "mine"  # kept; a datetime does not make it fail
    assert given["timestamp"] == "2024-01-01T00:00:00Z"
    assert outbox.pending() == 2 and outbox.dead() == []
    client.zadd("callbacks:retry", {"{}": time.time() + 60})
    assert outbox.pending() == 3
    assert all(key.startswith(b"callbacks:") for key in client.keys("*"))


# -- delivery -------------------------------------------------------------------------------------------
def test_delivery_keeps_query_string_and_signature_verifies(config, client, http_server):
    cfg = dataclasses.replace(config, callback_secret=SECRET)
    http_server.routes["/notify"] = ok
    outbox = Outbox(client, cfg)
    url = http_server.url("/notify?token=a%2Fb&job=7&empty=")
    event_id = outbox.push(url, {"event": "SUCCESS", "tracking_id": "t1", "output": {"text": "\u00e9"}})
    assert CallbackSender(client, cfg).step(timeout=2)
    [req] = http_server.requests
    assert req.method == "POST" and req.path == "/notify?token=a%2Fb&job=7&empty="
    assert req.headers["Content-Type"] == "application/json"
    assert verify_signature(SECRET, req.body, req.headers)
    assert not verify_signature("other", req.body, req.headers)
    payload = json.loads(req.body)
    assert payload["event_id"] == event_id and payload["event"] == "SUCCESS" and payload["output"] == {"text": "é"}
    assert outbox.pending() == 0 and outbox.dead() == [] and client.keys("callbacks:processing:*") == []


def test_no_secret_no_signature_headers(config, client, http_server):
    http_server.routes["/cb"] = ok
    Outbox(client, config).push(http_server.url("/cb"), {"event": "STARTED"})
    assert CallbackSender(client, config).step(timeout=2)
    [req] = http_server.requests
    lower = {k.lower() for k in req.headers}
    assert SIGNATURE_HEADER.lower() not in lower and TIMESTAMP_HEADER.lower() not in lower


def test_step_without_events_returns_false_within_its_timeout(config, client):
    sender = CallbackSender(client, config)
    started = time.monotonic()
    assert sender.step(timeout=0) is False  # 0 must not block for ever
    assert sender.step(timeout=0.2) is False
    assert time.monotonic() - started < 1.5


def test_receiver_answering_503_then_200_gets_one_delivery_after_backoff(config, client, http_server):
    attempts: list[float] = []

    def flaky(req):
        attempts.append(time.monotonic())
        return Response(b"busy", 503) if len(attempts) <= 2 else Response(b"ok", 200)

    http_server.routes["/cb"] = flaky
    outbox = Outbox(client, config)
    event_id = outbox.push(http_server.url("/cb"), {"event": "SUCCESS", "tracking_id": "t1"})
    sender = CallbackSender(client, config)
    assert sender.step(timeout=1) and outbox.pending() == 1  # failed once: scheduled for a retry
    [(item, due)] = client.zrange("callbacks:retry", 0, -1, withscores=True)
    assert json.loads(item)["attempt"] == 1 and "HTTP 503" in json.loads(item)["last_error"]
    assert 0 < due - time.time() <= 0.21
    drain(sender, 1.5)
    assert len(attempts) == 3
    assert attempts[0] < attempts[1] < attempts[2]
    assert attempts[1] - attempts[0] >= 0.18 and attempts[2] - attempts[1] >= 0.38  # 0.2 s, then 0.4 s
    assert [json.loads(r.body)["event_id"] for r in http_server.requests] == [event_id] * 3  # same event
    assert outbox.pending() == 0 and outbox.dead() == []


def test_receiver_down_then_started_on_the_same_port(config, client):
    port = free_port()
    outbox = Outbox(client, config)
    outbox.push(f"http://127.0.0.1:{port}/hook?k=v", {"event": "CANCELLED", "tracking_id": "t1"})
    sender = CallbackSender(client, config)
    assert sender.step(timeout=1)  # connection refused
    assert outbox.pending() == 1
    assert "ConnectionError" in json.loads(client.zrange("callbacks:retry", 0, 0)[0])["last_error"]
    assert sender.step(timeout=1)  # refused again, after the first backoff
    with LocalServer(port=port) as server:
        server.routes["/hook"] = ok
        wait_for(lambda: sender.step(timeout=0.1) and server.requests, 5, message="delivery once the receiver is up")
        drain(sender, 1.0)
        assert len(server.requests) == 1 and server.requests[0].path == "/hook?k=v"
    assert outbox.pending() == 0 and outbox.dead() == []


def test_step_wakes_up_when_a_retry_falls_due(config, client, http_server):
    http_server.routes["/cb"] = lambda req: Response(b"", 500 if len(http_server.requests) == 1 else 204)
    Outbox(client, config).push(http_server.url("/cb"), {"event": "ERROR"})
    sender = CallbackSender(client, config)
    assert sender.step(timeout=1)
    started = time.monotonic()
    assert sender.step(timeout=10)  # the retry is due in 0.2 s: taken then, not after 10 s
    assert 0.1 < time.monotonic() - started < 3
    assert http_server.hits("/cb") == 2


def test_attempts_exhausted_land_in_dead_and_the_sender_goes_on(config, client, http_server, caplog):
    cfg = dataclasses.replace(config, callback_max_attempts=3)
    http_server.routes["/down"] = lambda req: Response(b"", 500)
    http_server.routes["/up"] = ok
    outbox = Outbox(client, cfg)
    event_id = outbox.push(http_server.url("/down"), {"event": "ERROR", "tracking_id": "t1"})
    stop = threading.Event()
    caplog.set_level(logging.INFO, logger="api.callbacks")
    thread = threading.Thread(target=CallbackSender(client, cfg).run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: outbox.dead(), 5, message="the event given up on")
        assert http_server.hits("/down") == 3  # 3 attempts in all, then no more
        [dead] = outbox.dead()
        assert dead["payload"]["event_id"] == event_id and dead["attempt"] == 3 and dead["url"].endswith("/down")
        assert "HTTP 500" in dead["last_error"] and "dropped_at" in dead
        assert any(r.name == "api.callbacks" and r.levelno == logging.WARNING and "dropped" in r.getMessage()
                   for r in caplog.records)
        assert thread.is_alive()
        outbox.push(http_server.url("/up"), {"event": "SUCCESS"})
        wait_for(lambda: http_server.hits("/up") == 1, 5, message="the next event delivered")
        time.sleep(0.5)
        assert http_server.hits("/down") == 3 and outbox.pending() == 0
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_dead_list_is_capped(config, client):
    cfg = dataclasses.replace(config, callback_max_attempts=1)
    port = free_port()  # nothing listens there
    outbox = Outbox(client, cfg)
    for i in range(callbacks.DEAD_KEPT + 5):
        outbox.push(f"http://127.0.0.1:{port}/cb", {"event": "ERROR", "n": i})
    sender = CallbackSender(client, cfg)
    while sender.step(timeout=0):
        pass
    assert client.llen("callbacks:dead") == callbacks.DEAD_KEPT
    assert [d["payload"]["n"] for d in outbox.dead(limit=3)] == [104, 103, 102]  # newest first
    assert len(outbox.dead()) == 20


def test_ssrf_guard_refuses_loopback_without_a_request(config, client, http_server, monkeypatch):
    cfg = dataclasses.replace(config, allow_private_urls=False)
    http_server.routes["/cb"] = ok
    # a public-looking name that resolves to loopback: only the check after connect can refuse it
    real_getaddrinfo = socket.getaddrinfo

    def fake_getaddrinfo(host, *args, **kwargs):
        return real_getaddrinfo("127.0.0.1" if host == "hooks.example.com" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    outbox = Outbox(client, cfg)
    for host in ("127.0.0.1", "localhost", "[::1]", "hooks.example.com"):
        outbox.push(f"http://{host}:{http_server.port}/cb", {"event": "SUCCESS", "tracking_id": "t1"})
    sender = CallbackSender(client, cfg)
    for _ in range(4):
        assert sender.step(timeout=1)
    time.sleep(0.2)
    assert http_server.hits("/cb") == 0 and http_server.requests == []
    dead = outbox.dead()
    assert len(dead) == 4 and all("refused" in d["last_error"] and d["attempt"] == 1 for d in dead)  # not retried
    assert outbox.pending() == 0


def test_a_url_that_can_never_work_is_dropped_at_once(config, client):
    outbox = Outbox(client, config)
    outbox.push("ftp://127.0.0.1/cb", {"event": "SUCCESS"})
    outbox.push("http://user:pw@127.0.0.1:9/cb", {"event": "SUCCESS"})
    sender = CallbackSender(client, config)
    assert sender.step(timeout=1) and sender.step(timeout=1)
    assert outbox.pending() == 0 and [d["attempt"] for d in outbox.dead()] == [1, 1]


def test_malformed_item_is_set_aside(config, client, http_server):
    http_server.routes["/cb"] = ok
    client.rpush("callbacks:queue", b"not json", b"[1, 2]")
    Outbox(client, config).push(http_server.url("/cb"), {"event": "SUCCESS"})
    sender = CallbackSender(client, config)
    assert sender.step(timeout=1) and sender.step(timeout=1) and sender.step(timeout=1)
    assert http_server.hits("/cb") == 1
    assert [d["raw"] for d in Outbox(client, config).dead()] == ["[1, 2]", "not json"]


def test_failed_stale_progress_is_not_retried_but_final_events_are(config, client, http_server):
    http_server.routes["/cb"] = lambda req: Response(b"", 503 if len(http_server.requests) <= 2 else 200)
    outbox = Outbox(client, config)
    sender = CallbackSender(client, config)
    old_progress = outbox.push(http_server.url("/cb"), {"event": "PROGRESS", "tracking_id": "job1"})
    started = outbox.push(http_server.url("/cb"), {"event": "STARTED", "tracking_id": "job2"})
    assert sender.step(timeout=1) and sender.step(timeout=1)  # both fail (503): both scheduled for a retry
    assert outbox.pending() == 2
    new_progress = outbox.push(http_server.url("/cb"), {"event": "PROGRESS", "tracking_id": "job1"})
    success = outbox.push(http_server.url("/cb"), {"event": "SUCCESS", "tracking_id": "job2"})
    drain(sender, 1.0)
    sent = [json.loads(r.body)["event_id"] for r in http_server.requests]
    assert sent.count(old_progress) == 1  # the failed one, superseded by new_progress: not sent again
    assert sent.count(started) == 2  # STARTED is retried although SUCCESS came after it
    assert sent.count(new_progress) == 1 and sent.count(success) == 1
    assert outbox.pending() == 0 and outbox.dead() == []


def test_failed_latest_progress_is_retried(config, client, http_server):
    http_server.routes["/cb"] = lambda req: Response(b"", 503 if len(http_server.requests) == 1 else 200)
    outbox = Outbox(client, config)
    event_id = outbox.push(http_server.url("/cb"), {"event": "PROGRESS", "tracking_id": "job1"})
    drain(CallbackSender(client, config), 0.8)
    assert [json.loads(r.body)["event_id"] for r in http_server.requests] == [event_id, event_id]


# -- several senders, run() -------------------------------------------------------------------------
def test_two_senders_stepping_at_once_deliver_each_event_exactly_once(config, redis_url, client, http_server):
    received: list[str] = []
    lock = threading.Lock()

    def record(req):
        time.sleep(0.002)  # let the two senders overlap
        with lock:
            received.append(json.loads(req.body)["event_id"])
        return Response(b"", 204)

    http_server.routes["/cb"] = record
    outbox = Outbox(client, config)
    ids = [outbox.push(http_server.url("/cb"), {"event": "SUCCESS", "n": i}) for i in range(60)]
    handled = [0, 0]
    go = threading.Barrier(2)

    def loop(index: int) -> None:
        sender = CallbackSender(redis.Redis.from_url(redis_url), config)
        go.wait()
        while sender.step(timeout=0.3):
            handled[index] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(received) == sorted(ids) and len(set(received)) == 60
    assert sum(handled) == 60 and all(handled), handled  # both took part
    assert outbox.pending() == 0 and client.keys("callbacks:processing:*") == []


def test_run_stops_when_the_event_is_set(config, client, http_server):
    http_server.routes["/cb"] = ok
    stop = threading.Event()
    thread = threading.Thread(target=CallbackSender(client, config).run, args=(stop,), daemon=True)
    thread.start()
    Outbox(client, config).push(http_server.url("/cb"), {"event": "SUCCESS"})
    wait_for(lambda: http_server.hits("/cb") == 1, 5, message="delivery by run()")
    started = time.monotonic()
    stop.set()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - started < 2
    assert client.keys("callbacks:alive:*") == []  # signed off


def test_run_survives_an_exception_in_step(config, client, http_server, caplog):
    http_server.routes["/cb"] = ok
    sender = CallbackSender(client, config)
    real_step, calls = sender.step, []

    def failing_once(timeout=1.0):
        calls.append(timeout)
        if len(calls) == 1:
            raise redis.ConnectionError("redis went away")
        return real_step(timeout)

    sender.step = failing_once
    stop = threading.Event()
    caplog.set_level(logging.INFO, logger="api.callbacks")
    thread = threading.Thread(target=sender.run, args=(stop,), daemon=True)
    thread.start()
    Outbox(client, config).push(http_server.url("/cb"), {"event": "SUCCESS"})
    try:
        wait_for(lambda: http_server.hits("/cb") == 1, 5, message="delivery after the failed step")
        assert thread.is_alive()
        assert any(r.name == "api.callbacks" and r.exc_info for r in caplog.records)
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_events_of_a_sender_that_died_are_sent_again(config, client, http_server):
    http_server.routes["/cb"] = ok
    event_id = Outbox(client, config).push(http_server.url("/cb"), {"event": "SUCCESS"})
    client.lmove("callbacks:queue", "callbacks:processing:gone", "LEFT", "RIGHT")  # what a kill -9 leaves
    assert CallbackSender(client, config).step(timeout=1)
    assert [json.loads(r.body)["event_id"] for r in http_server.requests] == [event_id]
    assert client.keys("callbacks:processing:*") == []


# -- slow receivers: a total deadline, concurrent deliveries, a share per host ------------------------------
class SlowReceiver:
    """A receiver on a loopback address that takes each connection and reads the request, then
    never answers (silent) or answers one byte every `trickle_s` (a status line that never ends),
    until the client closes the connection or `LIFETIME_S` passes. Counts connections: opened,
    open now, most open at once, and `cut` (closed by the client while we were still at it)."""

    LIFETIME_S = 20.0  # bounds a test that fails (a sender that never lets go)
    # a new connection is counted open this long after it comes: the client closes the one it cut and opens
    # the next at once, and the thread serving the cut one may not have seen the close yet (a busy
    # machine: three seen open at once). Deliveries that really overlap do so for seconds.
    SETTLE_S = 0.5

    def __init__(self, host: str, trickle_s: float | None = None):
        self.listener = socket.create_server((host, 0))
        self.url = f"http://{host}:{self.listener.getsockname()[1]}/cb"
        self.trickle_s = trickle_s
        self.lock = threading.Lock()
        self.opened = self.open_now = self.max_open = self.cut = 0
        self.bytes_sent: list[int] = []  # per connection cut
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with self.lock:
            self.opened += 1
        time.sleep(self.SETTLE_S)
        with self.lock:
            self.open_now += 1
            self.max_open = max(self.max_open, self.open_now)
        answer, sent, cut = b"HTTP/1.1 200 OK" + b"K" * 100_000, 0, False
        ends = time.monotonic() + self.LIFETIME_S
        try:
            while not self.stopped.is_set() and time.monotonic() < ends:
                readable, _, _ = select.select([conn], [], [], self.trickle_s or 0.05)
                if readable and not conn.recv(65536):  # the request, then EOF: the client let go
                    cut = True
                    break
                if self.trickle_s and not readable:
                    conn.sendall(answer[sent:sent + 1])
                    sent += 1
        except OSError:  # reset by the client
            cut = True
        finally:
            conn.close()
            with self.lock:
                self.open_now -= 1
                if cut:
                    self.cut += 1
                    self.bytes_sent.append(sent)

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()


@pytest.fixture
def slow_receivers():
    made: list[SlowReceiver] = []

    def make(host: str, trickle_s: float | None = None) -> SlowReceiver:
        made.append(SlowReceiver(host, trickle_s))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def running_sender(client):
    """Start `CallbackSender(client, cfg).run` in a thread; stopped at the end of the test."""
    started: list[tuple[threading.Thread, threading.Event]] = []

    def start(cfg) -> tuple[threading.Thread, threading.Event]:
        stop = threading.Event()
        thread = threading.Thread(target=CallbackSender(client, cfg).run, args=(stop,), daemon=True)
        thread.start()
        started.append((thread, stop))
        return thread, stop

    yield start
    for thread, stop in started:
        stop.set()
        thread.join(15)


def test_a_trickling_receiver_is_cut_at_the_total_deadline(config, client, slow_receivers):
    cfg = dataclasses.replace(config, callback_timeout_s=1.0)  # each byte comes well within 1 s: no read times out
    trickler = slow_receivers("127.0.0.1", trickle_s=0.2)
    outbox = Outbox(client, cfg)
    event_id = outbox.push(trickler.url, {"event": "SUCCESS", "tracking_id": "t1"})
    stepping = threading.Thread(target=CallbackSender(client, cfg).step, kwargs={"timeout": 1}, daemon=True)
    stepping.start()
    stepping.join(10)  # a per-read timeout alone would hold it until the receiver stops (LIFETIME_S)
    assert not stepping.is_alive()
    wait_for(lambda: trickler.cut == 1, 5, message="the receiver seeing the sender let go")
    assert trickler.opened == 1 and trickler.bytes_sent[0] >= 2  # it was still trickling when cut
    [(raw, _due)] = client.zrange("callbacks:retry", 0, -1, withscores=True)
    retry = json.loads(raw)
    assert retry["payload"]["event_id"] == event_id and retry["attempt"] == 1  # retried, like any failure
    assert "DeadlineExceeded" in retry["last_error"] and "within 1 s" in retry["last_error"]


def test_slow_receivers_hold_only_their_share_and_a_healthy_one_is_served_meanwhile(
        config, client, http_server, slow_receivers, running_sender):
    cfg = dataclasses.replace(config, callback_timeout_s=3.0, callback_concurrency=6, callback_per_host=2)
    silent = slow_receivers("127.0.0.2")
    trickler = slow_receivers("127.0.0.3", trickle_s=0.2)
    http_server.routes["/cb"] = ok
    outbox = Outbox(client, cfg)
    for i in range(4):  # more than all the slots the two slow hosts could take together without a share
        outbox.push(silent.url, {"event": "STARTED", "tracking_id": f"silent{i}"})
        outbox.push(trickler.url, {"event": "STARTED", "tracking_id": f"trickle{i}"})
    healthy = outbox.push(http_server.url("/cb"), {"event": "SUCCESS", "tracking_id": "healthy"})
    running_sender(cfg)
    wait_for(lambda: http_server.requests, 10, message="the healthy receiver's callback")
    # delivered while every slow delivery is still hanging: none has reached its deadline yet
    assert (silent.cut, trickler.cut) == (0, 0)
    assert [json.loads(r.body)["event_id"] for r in http_server.requests] == [healthy]
    wait_for(lambda: silent.open_now == 2 and trickler.open_now == 2, 5, message="two deliveries to each slow host")
    # then the deadline cuts them, and each host's next events get its two slots, never more
    wait_for(lambda: silent.cut >= 2 and trickler.cut >= 2 and silent.opened >= 3 and trickler.opened >= 3, 15,
             message="the slow deliveries cut and the next ones started")
    assert silent.max_open == 2 and trickler.max_open == 2
    assert min(trickler.bytes_sent) >= 2  # cut mid-answer, by the total deadline (no read waited 3 s)


def test_a_jobs_events_keep_their_order_while_other_jobs_go_alongside(config, client, http_server, running_sender):
    # job a's and job b's first events must be under way together: one at a time, the first waits
    # its 3 s alone (within the sender's timeout, so it is not retried) and the barrier breaks
    cfg = dataclasses.replace(config, callback_concurrency=4, callback_per_host=4, callback_timeout_s=5.0)
    firsts = threading.Barrier(2, timeout=3)
    overlapped: list[bool] = []
    lock = threading.Lock()

    def receive(req):
        payload = json.loads(req.body)
        if payload["event"] == "STARTED":
            try:
                firsts.wait()
                overlapped.append(True)
            except threading.BrokenBarrierError:
                overlapped.append(False)
            time.sleep(0.3)  # slow to answer: the job's next event, were it sent alongside, would overtake
        time.sleep(0.01)
        with lock:
            received.append(payload["event_id"])
        return Response(b"", 204)

    received: list[str] = []
    http_server.routes["/cb"] = receive
    outbox = Outbox(client, cfg)
    sent: dict[str, list[str]] = {"a": [], "b": []}
    for event in ("STARTED", "PROGRESS", "PROGRESS", "PROGRESS", "SUCCESS"):
        for job in ("a", "b"):
            sent[job].append(outbox.push(http_server.url("/cb"), {"event": event, "tracking_id": job}))
    running_sender(cfg)
    wait_for(lambda: len(received) == 10, 15, message="all ten events")
    assert overlapped == [True, True]  # the two jobs were delivered side by side
    for job, ids in sent.items():
        assert [event_id for event_id in received if event_id in ids] == ids, job


def test_a_hosts_backlog_past_what_a_sender_holds_is_parked_without_an_attempt(
        config, client, slow_receivers, running_sender, monkeypatch):
    monkeypatch.setattr(callbacks, "WAITING_PER_HOST", 1)
    cfg = dataclasses.replace(config, callback_timeout_s=3.0, callback_per_host=1, callback_backoff_s=30)
    silent = slow_receivers("127.0.0.2")
    outbox = Outbox(client, cfg)
    ids = [outbox.push(silent.url, {"event": "STARTED", "tracking_id": f"job{i}"}) for i in range(3)]
    running_sender(cfg)
    wait_for(lambda: client.zcard("callbacks:retry") == 1, 5, message="the third event parked")
    [parked] = [json.loads(raw) for raw in client.zrange("callbacks:retry", 0, -1)]
    assert parked["payload"]["event_id"] == ids[2] and parked["attempt"] == 0  # not counted as an attempt
    assert silent.cut == 0 and silent.opened == 1  # while the first is still hanging, the second held
    [processing] = client.keys("callbacks:processing:*")
    assert [json.loads(raw)["payload"]["event_id"] for raw in client.lrange(processing, 0, -1)] == ids[:2]


def test_stopping_puts_the_waiting_events_back_in_order_and_ends_within_the_deadline(
        config, client, slow_receivers, running_sender):
    cfg = dataclasses.replace(config, callback_timeout_s=2.0, callback_per_host=1)
    silent = slow_receivers("127.0.0.2")
    outbox = Outbox(client, cfg)
    ids = [outbox.push(silent.url, {"event": "STARTED", "tracking_id": f"job{i}"}) for i in range(4)]
    thread, stop = running_sender(cfg)
    wait_for(lambda: silent.opened == 1 and client.llen("callbacks:queue") == 0, 5, message="one delivery, three held")
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert [json.loads(raw)["payload"]["event_id"] for raw in client.lrange("callbacks:queue", 0, -1)] == ids[1:]
    [retry] = [json.loads(raw) for raw in client.zrange("callbacks:retry", 0, -1)]  # the one under way: cut, retried
    assert retry["payload"]["event_id"] == ids[0] and retry["attempt"] == 1
    assert client.keys("callbacks:processing:*") == [] and client.keys("callbacks:alive:*") == []
