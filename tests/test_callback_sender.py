"""Callback signatures, the Redis outbox and the sender, against a real Redis and a local receiver."""
from __future__ import annotations

import dataclasses
import json
import threading
import time

import redis

from api.platform.callbacks import (CallbackSender, Outbox, signature_headers, verify_signature)
from tests.conftest import wait_for
from tests.httpserver import Response

SECRET = "s3cret"


def test_signature_round_trip_and_refusals():
    body = b'{"event": "SUCCESS"}'
    headers = signature_headers(SECRET, body, now=1_000_000)
    assert verify_signature(SECRET, body, headers, now=1_000_010)
    assert verify_signature(SECRET, body, {k.lower(): v for k, v in headers.items()}, now=1_000_010)
    assert not verify_signature("other", body, headers, now=1_000_010)
    assert not verify_signature(SECRET, body + b" ", headers, now=1_000_010)
    assert not verify_signature(SECRET, body, headers, now=1_000_000 + 301)  # stale
    assert not verify_signature(SECRET, body, {}, now=1_000_000)
    forged = dict(headers, **{"X-Signature-Timestamp": "1000005"})  # a fresh time on an old signature
    assert not verify_signature(SECRET, body, forged, now=1_000_010)


def drain(sender: CallbackSender, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sender.step(timeout=0.05)


def test_delivery_keeps_query_string_and_is_signed(config, redis_url, http_server):
    cfg = dataclasses.replace(config, callback_secret=SECRET)
    client = redis.Redis.from_url(redis_url)
    http_server.routes["/notify"] = lambda req: Response(b"", 204)
    outbox = Outbox(client, cfg)
    event_id = outbox.push(http_server.url("/notify?token=a%20b&x=1"), {"event": "SUCCESS", "tracking_id": "t"})
    assert CallbackSender(client, cfg).step(timeout=1)
    [req] = http_server.requests
    assert req.path == "/notify?token=a%20b&x=1"
    assert req.headers["Content-Type"] == "application/json"
    assert verify_signature(SECRET, req.body, req.headers)
    payload = json.loads(req.body)
    assert payload["event_id"] == event_id and payload["event"] == "SUCCESS" and "timestamp" in payload
    assert outbox.pending() == 0


def test_receiver_failing_then_answering_gets_one_delivery_after_backoff(config, redis_url, http_server):
    client = redis.Redis.from_url(redis_url)
    attempts: list[float] = []

    def flaky(req):
        attempts.append(time.monotonic())
        return Response(b"busy", 503) if len(attempts) <= 2 else Response(b"ok", 200)

    http_server.routes["/cb"] = flaky
    Outbox(client, config).push(http_server.url("/cb"), {"event": "SUCCESS"})
    sender = CallbackSender(client, config)
    drain(sender, 2.5)
    assert len(attempts) == 3
    first_gap, second_gap = attempts[1] - attempts[0], attempts[2] - attempts[1]
    assert first_gap >= 0.18 and second_gap >= 0.38  # backoff 0.2 s, then 0.4 s
    assert Outbox(client, config).pending() == 0 and Outbox(client, config).dead() == []


def test_attempts_exhausted_land_in_dead_and_sender_goes_on(config, redis_url, http_server):
    cfg = dataclasses.replace(config, callback_max_attempts=2)
    client = redis.Redis.from_url(redis_url)
    http_server.routes["/down"] = lambda req: Response(b"", 500)
    http_server.routes["/up"] = lambda req: Response(b"", 200)
    outbox = Outbox(client, cfg)
    outbox.push(http_server.url("/down"), {"event": "ERROR"})
    outbox.push(http_server.url("/up"), {"event": "SUCCESS"})
    drain(CallbackSender(client, cfg), 1.0)
    assert http_server.hits("/down") == 2 and http_server.hits("/up") == 1
    [dead] = outbox.dead()
    assert dead["payload"]["event"] == "ERROR" and "HTTP 500" in dead["last_error"]


def test_ssrf_guard_refuses_loopback_without_sending(config, redis_url, http_server):
    cfg = dataclasses.replace(config, allow_private_urls=False)
    client = redis.Redis.from_url(redis_url)
    http_server.routes["/cb"] = lambda req: Response(b"", 200)
    outbox = Outbox(client, cfg)
    for host in ("127.0.0.1", "localhost"):
        outbox.push(f"http://{host}:{http_server.port}/cb", {"event": "SUCCESS"})
    drain(CallbackSender(client, cfg), 0.5)
    assert http_server.hits("/cb") == 0
    assert len(outbox.dead()) == 2 and all("refused" in d["last_error"] for d in outbox.dead())


def test_two_senders_deliver_each_event_exactly_once(config, redis_url, http_server):
    client = redis.Redis.from_url(redis_url)
    http_server.routes["/cb"] = lambda req: Response(b"", 200)
    outbox = Outbox(client, config)
    for i in range(40):
        outbox.push(http_server.url("/cb"), {"event": "PROGRESS", "n": i})
    stop = threading.Event()
    senders = [threading.Thread(target=CallbackSender(redis.Redis.from_url(redis_url), config).run, args=(stop,))
               for _ in range(2)]
    for thread in senders:
        thread.start()
    wait_for(lambda: http_server.hits("/cb") >= 40 and outbox.pending() == 0, 20, message="40 deliveries")
    time.sleep(0.3)
    stop.set()
    for thread in senders:
        thread.join(5)
        assert not thread.is_alive()  # run() returns once stop is set
    numbers = sorted(json.loads(r.body)["n"] for r in http_server.requests)
    assert numbers == list(range(40))


def test_sender_restarted_mid_delivery_loses_nothing(config, redis_url, http_server):
    """An event a sender took but never finished (killed) is sent by the next sender."""
    client = redis.Redis.from_url(redis_url)
    http_server.routes["/cb"] = lambda req: Response(b"", 200)
    Outbox(client, config).push(http_server.url("/cb"), {"event": "SUCCESS"})
    client.lmove("callbacks:queue", "callbacks:processing:dead-sender", "LEFT", "RIGHT")  # what a kill leaves
    stop = threading.Event()
    thread = threading.Thread(target=CallbackSender(client, config).run, args=(stop,))
    thread.start()
    wait_for(lambda: http_server.hits("/cb") == 1, 10, message="the orphaned event delivered")
    stop.set()
    thread.join(5)
