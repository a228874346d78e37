"""Live events (GET /<app>/<id>/events, Server-Sent Events) against a real Redis, a real dramatiq
worker, the real callback sender and the API on a real HTTP server; one test through the stack's
nginx and gunicorn. What is checked: every event in order with its callback's payload, resume with
Last-Event-ID after a dropped connection, the end (close, 204, the synthetic event once expired),
keep-alives, one blocking Redis read for many clients, the per-process stream limit, the front's
proxy of the stream, and the nginx location that lets it through unbuffered."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import requests

from api import create_app
from api.platform import keys
from api.platform.config import load_config
from api.platform.embedded import free_port
from tests.support import ROOT
from tests.support.front_stack import ServerThread
from tests.support.httpserver import Response
from tests.support.platform import png_bytes, wait_for
from tests.support.stack_helpers import CONFS, Stack, wait_until

TOKEN = "events-token"
TERMINAL = ("SUCCESS", "ERROR", "CANCELLED")


# -- an SSE client, as a browser's EventSource reads the stream -------------------------------------------
@dataclass
class Event:
    id: str
    event: str
    data: dict


@dataclass
class Reading:
    """What one connection received: its events, its comment lines, and whether the server closed it."""

    events: list[Event] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry_ms: int | None = None
    closed_by_server: bool = False


def parse(lines: Iterator[str], reading: Reading, stop_after: int | None = None) -> Reading:
    """Fill `reading` from SSE lines (the format of the HTML standard: fields up to a blank line)."""
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "data" in fields:
                reading.events.append(Event(fields.get("id", ""), fields.get("event", "message"),
                                            json.loads(fields["data"])))
                if stop_after is not None and len(reading.events) >= stop_after:
                    return reading
            fields = {}
            continue
        if line.startswith(":"):
            reading.comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "retry":
            reading.retry_ms = int(value)
        elif name == "data" and "data" in fields:
            fields["data"] += "\n" + value
        else:
            fields[name] = value
    reading.closed_by_server = True
    return reading


def lines_of(response: requests.Response) -> Iterator[str]:
    """The body's lines as they arrive (no buffering beyond what the server sent)."""
    pending = b""
    for chunk in response.iter_content(chunk_size=None):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.decode()


def open_stream(url: str, last_event_id: str = "", token: str = "", timeout: float = 30) -> requests.Response:
    headers = {"Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.get(url, headers=headers, stream=True, timeout=(5, timeout))


def read_stream(url: str, last_event_id: str = "", stop_after: int | None = None, token: str = "",
                timeout: float = 30) -> Reading:
    """Read `url` to its end (or `stop_after` events, then drop the connection)."""
    with open_stream(url, last_event_id, token, timeout) as response:
        assert response.status_code == 200, (response.status_code, response.text)
        assert response.headers["Content-Type"].startswith("text/event-stream")
        return parse(lines_of(response), Reading(), stop_after)


# -- the platform under test ------------------------------------------------------------------------------
@dataclass
class Api:
    url: str
    redis: redis.Redis
    app: object = None

    def start(self, images: int = 3, token: str = "", **fields) -> str:
        files = [("files", (f"img{i}.png", png_bytes((i * 50 % 256, 20, 20)), "image/png")) for i in range(images)]
        data = {"parameters": json.dumps(fields.pop("parameters", {})), **fields}
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = requests.post(f"{self.url}/dummy/start", files=files, data=data, headers=headers, timeout=30)
        assert response.status_code == 202, response.text
        return response.json()["tracking_id"]

    def status(self, tracking_id: str) -> dict:
        return requests.get(f"{self.url}/dummy/{tracking_id}/status", timeout=10).json()

    def ended(self, tracking_id: str, timeout: float = 60) -> dict:
        return wait_for(lambda: (s := self.status(tracking_id))["state"] in ("SUCCESS", "FAILURE", "CANCELLED") and s,
                        timeout, message=f"job {tracking_id} to end")

    def events_url(self, tracking_id: str) -> str:
        return f"{self.url}/dummy/{tracking_id}/events"

    def recorded(self, tracking_id: str) -> list[str]:
        """The event ids of the job's stream in Redis, in order."""
        return [keys.text(fields[b"id"]) for _, fields in self.redis.xrange(keys.job_events(tracking_id))]


@pytest.fixture
def api(env, redis_url):
    env.update(EVENTS_MAX_STREAMS="64", EVENTS_KEEPALIVE_S="0.3", PROGRESS_INTERVAL_S="0.05")
    client = redis.Redis.from_url(redis_url)
    app = create_app(load_config(env))
    with ServerThread(app) as server:
        yield Api(server.url, client, app)
    client.close()


def blocked_xreads(api: Api) -> list[str]:
    """The names of this API's connections blocked in an XREAD now (earlier tests' APIs, in this
    process too, may still be blocked on their own, under other names)."""
    hub = api.app.extensions.get("api_event_hub")
    return [c["name"] for c in api.redis.client_list()
            if c.get("cmd") == "xread" and "b" in c.get("flags", "") and hub and c.get("name") == hub.name]


# -- the tests ----------------------------------------------------------------------------------------------
def test_a_client_receives_every_event_in_order_with_its_callbacks_payload_then_the_stream_closes(
        api, procs, http_server):
    http_server.routes["/cb"] = lambda req: Response(b"ok", 200, "text/plain")
    procs.worker()
    procs.sender()
    tracking_id = api.start(images=4, notify_url=http_server.url("/cb"), parameters={"delay": 0.2})
    reading = read_stream(api.events_url(tracking_id))  # from PENDING to the end

    names = [e.event for e in reading.events]
    assert names[0] == "STARTED" and names[-1] == "SUCCESS" and "PROGRESS" in names, names
    assert set(names[1:-1]) == {"PROGRESS"}
    assert reading.closed_by_server and reading.retry_ms == 2000
    ids = [e.id for e in reading.events]
    assert ids == api.recorded(tracking_id) and len(set(ids)) == len(ids)
    assert all(e.data["event_id"] == e.id and e.data["event"] == e.event for e in reading.events)
    done = [e.data["progress"]["done"] for e in reading.events]
    assert done == sorted(done) and done[-1] == 4
    assert reading.events[-1].data["output"] == api.status(tracking_id)["output"]

    # the callbacks carry the very same events, payload for payload, in the same order
    wait_for(lambda: len(http_server.requests) >= len(ids), 30, message="every callback")
    assert [json.loads(r.body) for r in http_server.requests] == [e.data for e in reading.events]


def test_a_dropped_connection_resumes_with_last_event_id_without_losing_or_repeating_an_event(api, procs):
    procs.worker()
    tracking_id = api.start(images=6, parameters={"delay": 0.3})
    first = read_stream(api.events_url(tracking_id), stop_after=2)  # then the connection drops
    assert [e.event for e in first.events] == ["STARTED", "PROGRESS"] and not first.closed_by_server
    wait_for(lambda: api.status(tracking_id)["progress"]["done"] >= 4, 30, message="events while away")

    rest = read_stream(api.events_url(tracking_id), last_event_id=first.events[-1].id)
    assert rest.closed_by_server and rest.events[-1].event == "SUCCESS"
    ids = [e.id for e in first.events + rest.events]
    assert ids == api.recorded(tracking_id)  # every event, once, in order
    assert len(ids) >= 6

    # EventSource reconnects when a stream ends: after the terminal event it is told to stop (204)
    after_end = open_stream(api.events_url(tracking_id), last_event_id=ids[-1])
    assert after_end.status_code == 204 and after_end.content == b""
    # resuming an ended job from the middle replays the rest, and closes
    middle = read_stream(api.events_url(tracking_id), last_event_id=ids[2])
    assert [e.id for e in middle.events] == ids[3:] and middle.closed_by_server
    # an id the stream does not hold (trimmed, or not this job's) replays every kept event
    unknown = read_stream(api.events_url(tracking_id), last_event_id="not-an-event")
    assert [e.id for e in unknown.events] == ids


def test_an_ended_job_replays_its_events_and_once_they_expired_sends_one_synthetic_terminal_event(api, procs):
    procs.worker()
    tracking_id = api.start(images=2)  # no notify_url: its events are recorded all the same
    status = api.ended(tracking_id)
    assert status["state"] == "SUCCESS"
    replay = read_stream(api.events_url(tracking_id))
    assert [e.event for e in replay.events][0::len(replay.events) - 1] == ["STARTED", "SUCCESS"]
    assert replay.closed_by_server

    api.redis.delete(keys.job_events(tracking_id))  # as when the stream's TTL (the job's) ran out
    [synthetic] = read_stream(api.events_url(tracking_id)).events
    assert synthetic.id == f"end-{tracking_id}" and synthetic.event == "SUCCESS"
    assert synthetic.data["state"] == "SUCCESS" and synthetic.data["output"] == status["output"]
    assert synthetic.data["progress"] == status["progress"] and synthetic.data["timestamp"] == status["finished_at"]
    assert open_stream(api.events_url(tracking_id), last_event_id=synthetic.id).status_code == 204

    api.redis.delete(keys.job(tracking_id), keys.job_errors(tracking_id), keys.job_log(tracking_id))
    [from_disk] = read_stream(api.events_url(tracking_id)).events  # Redis forgot it: job.json answers
    assert from_disk.id == synthetic.id and from_disk.data["output"] == status["output"]

    failed = api.start(images=1, parameters={"fail": True})
    events = read_stream(api.events_url(failed)).events
    assert [e.event for e in events][-1] == "ERROR" and events[-1].data["state"] == "FAILURE"
    assert "fail=true" in events[-1].data["error"]


def test_an_idle_stream_sends_keep_alives_and_a_cancel_ends_it(api):
    tracking_id = api.start(images=1)  # no worker: it stays PENDING
    reading = Reading()
    with open_stream(api.events_url(tracking_id)) as response:
        lines = lines_of(response)
        deadline = time.monotonic() + 1.2
        while time.monotonic() < deadline:
            line = next(lines)
            if line.startswith(":"):
                reading.comments.append(line)
        assert len(reading.comments) >= 2 and set(reading.comments) == {": keep-alive"}, reading.comments
        cancelled = requests.post(f"{api.url}/dummy/{tracking_id}/cancel", timeout=10)
        assert cancelled.status_code == 202
        parse(lines, reading)
    assert [e.event for e in reading.events] == ["CANCELLED"] and reading.closed_by_server
    assert reading.events[0].data["state"] == "CANCELLED"


def test_unknown_jobs_are_404_and_the_token_is_needed_as_on_every_route(env, redis_url):
    env.update(API_TOKEN=TOKEN, EVENTS_KEEPALIVE_S="0.3")
    client = redis.Redis.from_url(redis_url)
    with ServerThread(create_app(load_config(env))) as server:
        api = Api(server.url, client)
        tracking_id = api.start(images=1, token=TOKEN)
        refused = open_stream(api.events_url(tracking_id))
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
        for unknown in ("0" * 32, "not-an-id"):
            missing = open_stream(api.events_url(unknown), token=TOKEN)
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        with open_stream(api.events_url(tracking_id), token=TOKEN) as allowed:
            assert allowed.status_code == 200 and next(lines_of(allowed)) == "retry: 2000"
    client.close()


def test_many_clients_of_many_jobs_cost_one_blocking_redis_read_and_each_gets_every_event(api, procs):
    jobs = [api.start(images=3, parameters={"delay": 0.1}) for _ in range(2)]  # PENDING: no worker yet
    clients = 30
    with ThreadPoolExecutor(clients) as pool:
        readings = [pool.submit(read_stream, api.events_url(jobs[i % 2])) for i in range(clients)]
        try:
            # the hub is made at the first stream the server opens, which may come after this first look
            wait_for(lambda: (hub := api.app.extensions.get("api_event_hub")) and hub.open_streams == clients, 10,
                     message="every client connected")
            assert len(blocked_xreads(api)) == 1
        finally:
            procs.worker()  # the clients' streams end with their jobs
        results = [r.result(timeout=60) for r in readings]
    wait_for(lambda: not blocked_xreads(api), 5, message="no blocked read once nobody follows a job")
    for i, reading in enumerate(results):
        assert [e.id for e in reading.events] == api.recorded(jobs[i % 2]) and reading.closed_by_server
        assert reading.events[-1].event == "SUCCESS"


def test_past_events_max_streams_a_stream_is_refused_with_503_and_retry_after(env, redis_url):
    env.update(EVENTS_MAX_STREAMS="2", EVENTS_KEEPALIVE_S="0.2")
    client = redis.Redis.from_url(redis_url)
    with ServerThread(create_app(load_config(env))) as server:
        api = Api(server.url, client)
        tracking_id = api.start(images=1)
        first, second = open_stream(api.events_url(tracking_id)), open_stream(api.events_url(tracking_id))
        assert first.status_code == second.status_code == 200
        third = open_stream(api.events_url(tracking_id))
        assert third.status_code == 503 and third.headers["Retry-After"] == "5"
        assert third.json()["error"]["code"] == "busy" and "EVENTS_MAX_STREAMS" in third.json()["error"]["message"]
        first.close()  # its slot is given back once the server notices (at its next keep-alive)
        wait_for(lambda: (r := open_stream(api.events_url(tracking_id))).status_code == 200 and r, 10,
                 message="a freed slot").close()
        second.close()
    client.close()


def test_the_front_streams_its_jobs_state_from_the_apis_events(api, procs, tmp_path):
    from front import create_app as create_front
    from front.config import load_config as load_front_config

    front = create_front(load_front_config({"FRONT_ENV_FILE": "/nonexistent", "API_URL": api.url,
                                            "FRONT_DATA_FOLDER": str(tmp_path / "front")}))
    procs.worker()
    tracking_id = api.start(images=3, parameters={"delay": 0.2})
    front.extensions["front_store"].create(tracking_id, "dummy")
    with ServerThread(front) as server:
        url = f"{server.url}/jobs/dummy/{tracking_id}/events"
        reading = read_stream(url)
        assert reading.closed_by_server and reading.events, reading
        states = [e.data for e in reading.events]
        assert {e.event for e in reading.events} == {"state"}
        assert states[-1]["state"] == "SUCCESS" and states[-1]["finished"] and states[-1]["percent"] == 100.0
        assert any(s["state"] == "STARTED" for s in states) and states[-1]["source"] in ("events", "api")
        # the ids are the API's: the browser's Last-Event-ID resumes the API's stream through the front
        assert [e.id for e in reading.events][-1] == api.recorded(tracking_id)[-1]
        assert requests.get(url, headers={"Last-Event-ID": reading.events[-1].id}, timeout=10).status_code == 204
        assert requests.get(f"{server.url}/jobs/dummy/{'f' * 32}/events", timeout=10).status_code == 404
    stored = front.extensions["front_store"].get(tracking_id)
    assert stored["state"] == "SUCCESS" and stored["progress"]["done"] == 3


# -- the stack: nginx's events location -------------------------------------------------------------------
def render(tmp: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {"ENV_FILE": "/nonexistent", "PYTHONPATH": str(ROOT), "DATA_FOLDER": str(tmp / "data"),
               "RUN_FOLDER": str(tmp / "run"), "INSTALLED_APPS": "tests.demos.dummy", "PATH": "/usr/bin:/bin", **env}
    return subprocess.run([sys.executable, str(CONFS / "render.py")], cwd=ROOT, env=environ, capture_output=True,
                          text=True, timeout=60)


def test_the_stack_renders_an_unbuffered_events_location_served_by_its_own_gunicorn(tmp_path):
    done = render(tmp_path, EVENTS_THREADS="40")
    assert done.returncode == 0, done.stderr
    nginx = (tmp_path / "run" / "nginx.conf").read_text()
    location = nginx.split('location ~ "^/[^/]+/[0-9a-f]{32}/events$" {')[1].split("}")[0]
    for line in ("proxy_pass http://api_events;", "proxy_buffering off;", "proxy_cache off;",
                 "proxy_read_timeout 3600s;", "proxy_http_version 1.1;"):
        assert line in location, (line, location)
    assert f"server unix:{tmp_path}/run/events.sock" in nginx
    supervisor = (tmp_path / "run" / "supervisord.conf").read_text()
    events = supervisor.split("[program:api-events]")[1].split("\n\n")[0]
    assert "--threads 40" in events and f"unix:{tmp_path}/run/events.sock" in events
    assert 'EVENTS_MAX_STREAMS="39"' in events and "--workers 1" in events
    assert render(tmp_path, EVENTS_THREADS="1").returncode == 2  # a stream needs a thread besides the refusals


STACK_NEEDS = ("nginx", "redis-server", "supervisord", "supervisorctl")


@pytest.fixture(scope="module")
def stack():
    if not all(shutil.which(p, path="/usr/sbin:/usr/bin:/bin") for p in STACK_NEEDS):
        pytest.skip("nginx, redis-server or supervisor missing (tools/install-system-packages.sh)")
    base = Path(tempfile.mkdtemp(prefix="sse-", dir="/tmp"))  # short: unix socket paths stay < 108 bytes
    nginx_port, redis_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "CUDA_VISIBLE_DEVICES", "DEVICE_NB", "WORKER_GPUS", "STACK_ROLE")}
    env.update({"ENV_FILE": "/nonexistent", "PYTHONPATH": str(ROOT), "STACK_PYTHON": sys.executable,
                "DATA_FOLDER": str(base / "data"), "RUN_FOLDER": str(base / "run"),
                "INSTALLED_APPS": "tests.demos.dummy", "NGINX_LISTEN": f"127.0.0.1:{nginx_port}",
                "REDIS_PORT": str(redis_port), "GUNICORN_WORKERS": "1", "GUNICORN_THREADS": "4",
                "NGINX_WORKERS": "1", "WORKER_STOP_WAIT_S": "5", "PROGRESS_INTERVAL_S": "0.1",
                "WORKER_HEARTBEAT_S": "1", "EVENTS_THREADS": "8", "EVENTS_KEEPALIVE_S": "1"})
    deployed = Stack(env, base / "run", base / "stack.log").start()
    url = f"http://127.0.0.1:{nginx_port}"
    try:
        wait_until(lambda: requests.get(f"{url}/ready", timeout=5).status_code == 200, 120, "the stack ready",
                   diagnose=deployed.logs)
        yield url, redis.Redis(port=redis_port), deployed
    finally:
        deployed.stop()
        subprocess.run(["rm", "-rf", str(base)], check=False)


@pytest.mark.stack
def test_events_through_the_stacks_nginx_arrive_as_they_happen_and_resume(stack):
    url, client, deployed = stack
    api = Api(url, client)
    tracking_id = api.start(images=6, parameters={"delay": 0.5})
    seen: list[tuple[Event, str]] = []  # each event with the job's state when it arrived
    reading = Reading()
    with open_stream(api.events_url(tracking_id)) as response:
        assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers.get("X-Accel-Buffering") is None  # nginx's, not passed on
        lines = lines_of(response)
        while len(reading.events) < 3:
            parse(lines, reading, stop_after=len(reading.events) + 1)
            seen.append((reading.events[-1], api.status(tracking_id)["state"]))
    # unbuffered: the first events reached us while the job was still running
    assert [(e.event, state) for e, state in seen][:2] == [("STARTED", "STARTED"), ("PROGRESS", "STARTED")], seen
    rest = read_stream(api.events_url(tracking_id), last_event_id=reading.events[-1].id)
    assert rest.closed_by_server and rest.events[-1].event == "SUCCESS"
    assert [e.id for e in reading.events + rest.events] == api.recorded(tracking_id)
    # the streams are the events server's: with more of them open than the API has threads
    # (GUNICORN_THREADS=4), on a job that waits, the API still answers
    deployed.ctl("stop", "workers:*")
    try:
        waiting = api.start(images=1)
        streams = [open_stream(api.events_url(waiting)) for _ in range(6)]
        assert all(s.status_code == 200 for s in streams)
        assert api.status(waiting)["state"] == "PENDING"  # within its 10 s timeout: no thread of the API is held
    finally:
        deployed.ctl("start", "workers:*")
    for response in streams:
        with response:
            assert parse(lines_of(response), Reading()).events[-1].event == "SUCCESS"
