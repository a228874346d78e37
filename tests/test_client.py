"""The Python client (api/client.py), the `python -m api submit` command built on it, and the
back-pressure answers (Retry-After, estimated wait) it relies on.

Real API (create_app, served by werkzeug on 127.0.0.1 where the client needs HTTP), real Redis, real
dramatiq workers. Where a test needs an API *without* live events, or a stream that drops, a small
WSGI wrapper in front of the real app plays the older server or the cutting proxy.
"""
from __future__ import annotations

import ast
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from PIL import Image, ImageDraw
from werkzeug.serving import make_server

from api import client as api_client
from api import create_app
from api.client import (
    Client,
    Conflict,
    ConnectionFailed,
    InvalidInput,
    JobFailed,
    NotFound,
    QueueFull,
    Unauthorized,
    Unavailable,
)
from api.platform.config import load_config
from api.platform.embedded import free_port
from tests.support import ROOT
from tests.support.platform import json_of, platform_env, png_bytes, wait_for

CLIENT_FILE = ROOT / "api" / "client.py"
DOC = {"type": "img", "src": "http://127.0.0.1:9/a.png"}


# -- a real HTTP server for the client --------------------------------------------------------------
class Api:
    """The API on a free loopback port (werkzeug, threaded), optionally behind a WSGI `wrapper`;
    `hits` records each request's method and path."""

    def __init__(self, env: dict, wrapper: Callable | None = None):
        self.flask = create_app(load_config(env))
        self.hits: list[tuple[str, str]] = []
        inner = wrapper(self.flask.wsgi_app) if wrapper else self.flask.wsgi_app

        def recorded(environ, start_response):
            self.hits.append((environ["REQUEST_METHOD"], environ["PATH_INFO"]))
            return inner(environ, start_response)

        self.server = make_server("127.0.0.1", 0, recorded, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, suffix: str) -> int:
        return sum(1 for _, path in self.hits if path.endswith(suffix))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve(env, procs) -> Iterator[Callable[..., Api]]:
    """serve(wrapper=None, **settings) -> Api; the settings also reach workers started afterwards."""
    servers: list[Api] = []

    def start(wrapper: Callable | None = None, **settings: str) -> Api:
        env.update(settings)
        procs.env.update(settings)
        servers.append(Api(env, wrapper))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def without_events(app):
    """An API from before live events: /<app>/<id>/events is a 404 (JSON, as the API answers)."""
    def wsgi(environ, start_response):
        if environ["PATH_INFO"].endswith("/events"):
            start_response("404 NOT FOUND", [("Content-Type", "application/json")])
            return [b'{"error": {"code": "not_found", "message": "The requested URL was not found"}}']
        return app(environ, start_response)
    return wsgi


def cutting_streams(after_events: int):
    """A proxy that cuts every event stream after `after_events` events (0: before any)."""
    def wrap(app):
        def wsgi(environ, start_response):
            body = app(environ, start_response)
            if not environ["PATH_INFO"].endswith("/events"):
                return body

            def cut():
                seen = 0
                try:
                    for chunk in body:
                        if seen >= after_events and b"data:" in chunk:
                            return
                        seen += chunk.count(b"\ndata:") + chunk.startswith(b"data:")
                        yield chunk
                finally:
                    if hasattr(body, "close"):
                        body.close()
            return cut()
        return wsgi
    return wrap


def write_pngs(folder: Path, count: int) -> list[str]:
    paths = []
    for i in range(count):
        path = folder / f"page{i}.png"
        path.write_bytes(png_bytes((10 * i, 20, 30), (32 + i, 24)))
        paths.append(str(path))
    return paths


def cli(*args: str, env: dict, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m api submit ...` as a person runs it (no .env read)."""
    full = {k: v for k, v in os.environ.items() if k not in ("API_URL", "API_TOKEN")}
    full.update({"ENV_FILE": "/nonexistent", "PYTHONPATH": str(ROOT), **env})
    return subprocess.run([sys.executable, "-m", "api", "submit", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, *mentions: str) -> str:
    """Failed, and said why in one line of stderr (no traceback), naming each of `mentions`."""
    assert proc.returncode != 0, proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for text in mentions:
        assert text in lines[0], lines[0]
    return lines[0]


# -- what the client imports -----------------------------------------------------------------------
def test_the_client_is_one_file_needing_only_requests_and_tqdm(tmp_path):
    """Copied alone into a folder, it imports; neither it nor what it imports loads the platform,
    Flask, Redis, dramatiq or torch."""
    tree = ast.parse(CLIENT_FILE.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    assert not any(isinstance(node, ast.ImportFrom) and node.level for node in ast.walk(tree))
    assert imported - set(sys.stdlib_module_names) - {"__future__"} == {"requests", "tqdm"}
    shutil.copy(CLIENT_FILE, tmp_path / "client.py")
    probe = ("import json, sys; import client; c = client.Client('http://127.0.0.1:9'); "
             "print(json.dumps(sorted(sys.modules)))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert not loaded & {"api", "flask", "werkzeug", "redis", "dramatiq", "torch", "PIL", "numpy", "cv2"}
    assert {"requests", "tqdm", "client"} <= loaded


# -- a job from a script, with progress -------------------------------------------------------------
SCRIPT = """
import json, sys, zipfile
sys.path.insert(0, sys.argv[1])           # the folder where client.py was copied, nothing else of the repo
from client import Client

client = Client(sys.argv[2])
job = client.start("dummy", files=sys.argv[3:5], delay=0.3, labels=["from-a-script"])
status = job.wait()                        # tqdm bar on stderr
zip_path = job.download(sys.argv[5] + "/")     # a folder: the zip under its own name
name = sorted(n for n in zipfile.ZipFile(zip_path).namelist() if n.startswith("page0/"))[0]
one = job.download(sys.argv[5] + "/one/", file=name)
print(json.dumps({"state": status["state"], "output": job.output, "zip": str(zip_path), "one": str(one), "name": name,
                  "models": client.models("dummy"), "repr": repr(job),
                  "tracking_id": job.tracking_id}))
"""


def test_a_script_runs_a_job_with_progress_and_downloads_its_results(serve, procs, tmp_path):
    api = serve()
    procs.worker()
    folder = tmp_path / "notebook"
    folder.mkdir()
    shutil.copy(CLIENT_FILE, folder / "client.py")
    (folder / "script.py").write_text(SCRIPT)
    pages = write_pngs(tmp_path, 2)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "API_URL", "API_TOKEN")}
    done = subprocess.run([sys.executable, "script.py", str(folder), api.url, *pages, str(tmp_path / "out")],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + procs.logs()
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["state"] == "SUCCESS"
    assert result["output"]["labels"] == ["from-a-script"]
    assert sorted(result["output"]["images"]) == ["page0", "page1"]
    assert "2/2" in done.stderr  # the progress bar reached the end
    with zipfile.ZipFile(result["zip"]) as archive:
        assert Path(result["zip"]).name == f"dummy_{result['tracking_id']}.zip"
        assert archive.read(result["name"]) == Path(result["one"]).read_bytes()
        assert Path(result["one"]).parent.name == "one"
    assert result["models"] == {"v1": "2026-11-01"}
    assert "SUCCESS" in result["repr"]


def test_submit_waits_for_the_job_and_says_where_its_results_are(serve, procs, tmp_path, data_folder):
    api = serve()
    procs.worker()
    pages = write_pngs(tmp_path, 2)
    done = cli("dummy", *pages, "--wait", "--param", "delay=0.2", env={"API_URL": api.url,
                                                                      "DATA_FOLDER": str(data_folder)})
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    out = done.stdout.splitlines()
    tracking_id = out[0].split()[1]
    assert out[0] == f"job {tracking_id}  status: {api.url}/dummy/{tracking_id}/status"
    assert out[-2:] == [f"results: {api.url}/dummy/{tracking_id}/result",
                        f"on disk: {data_folder / 'results' / 'dummy' / tracking_id}"]
    assert "2/2" in done.stderr and api.count("/events") == 1
    failed = cli("dummy", pages[0], "--wait", "--param", "fail=true", env={"API_URL": api.url})
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert failed.stderr.splitlines()[-1].endswith("ended FAILURE: the model refused this job (fail=true)")


def test_wait_polls_status_when_the_api_has_no_event_stream(serve, procs, tmp_path):
    api = serve(without_events)
    procs.worker()
    seen: list[dict] = []
    job = Client(api.url).start("dummy", files=write_pngs(tmp_path, 3), delay=0.3)
    final = job.wait(progress=seen.append, interval=0.1)
    assert final["state"] == "SUCCESS" and job.output["images"]
    assert api.count("/events") == 1  # asked once, answered 404, never again
    assert api.count("/status") >= 3
    assert all("log" in update for update in seen)  # statuses, not events
    done = [update["progress"]["done"] for update in seen]
    assert done == sorted(done) and done[-1] == 3


def test_wait_falls_back_to_polling_when_streams_drop_before_any_event(serve, procs, tmp_path):
    api = serve(cutting_streams(after_events=0))
    procs.worker()
    job = Client(api.url).start("dummy", files=write_pngs(tmp_path, 2), delay=0.2)
    final = job.wait(progress=False, interval=0.1)
    assert final["state"] == "SUCCESS"
    assert api.count("/events") == 1  # one stream that brought nothing: then polling
    assert api.count("/status") >= 2


def test_wait_polls_when_every_event_stream_is_taken(serve, procs, tmp_path):
    """EVENTS_MAX_STREAMS=1 and a stream held by someone else: the stream answers 503, and wait()
    polls at once instead of waiting out Retry-After or failing."""
    api = serve(EVENTS_MAX_STREAMS="1")
    procs.worker()
    procs.worker()
    client = Client(api.url)
    other = client.start("dummy", files=write_pngs(tmp_path, 1), delay=20)  # one worker busy, its stream open
    with requests.get(f"{api.url}/dummy/{other.tracking_id}/events", stream=True, timeout=30) as held:
        assert held.status_code == 200
        job = client.start("dummy", files=write_pngs(tmp_path, 1), delay=0.2)
        began = time.monotonic()
        assert job.wait(progress=False, interval=0.1)["state"] == "SUCCESS"
        assert time.monotonic() - began < 4
        assert other.status()["state"] == "STARTED"  # the held stream was open all along
    assert api.count("/events") == 2 and api.count("/status") >= 3
    other.cancel()


def test_wait_follows_live_events_and_resumes_a_dropped_stream_without_loss(serve, procs, tmp_path):
    """Each stream is cut after one event; every reconnect sends Last-Event-ID, and the events
    seen are each of the job's events once, in order, up to the terminal one."""
    api = serve(cutting_streams(after_events=1))
    procs.worker()
    seen: list[dict] = []
    job = Client(api.url).start("dummy", files=write_pngs(tmp_path, 3), delay=0.4)
    final = job.wait(progress=seen.append)
    events = [update for update in seen if "event" in update]
    assert final["state"] == "SUCCESS", final
    names = [e["event"] for e in events]
    assert names[0] == "STARTED" and names[-1] == "SUCCESS", names
    assert len({e["event_id"] for e in events}) == len(events)  # none repeated
    done = [e["progress"]["done"] for e in events]
    assert done == sorted(done)
    assert api.count("/events") >= len(events)  # one stream per event: it resumed each time
    assert api.count("/status") == 1  # the final status only: no polling


def test_job_status_cancel_failure_and_reattach(serve, procs, tmp_path):
    api = serve()
    client = Client(api.url)
    pending = client.start("dummy", documents=[DOC])
    assert pending.status()["state"] == "PENDING"
    assert client.job("dummy", pending.tracking_id).cancel()["state"] == "CANCELLED"
    with pytest.raises(Conflict) as ended:
        pending.cancel()
    assert ended.value.status == 409 and "already ended CANCELLED" in str(ended.value)
    with pytest.raises(JobFailed) as cancelled:
        pending.wait(progress=False)
    assert cancelled.value.job_status["state"] == "CANCELLED"
    procs.worker()
    failing = client.start("dummy", files=write_pngs(tmp_path, 1), fail=True)
    with pytest.raises(JobFailed) as failed:
        failing.wait(progress=False, interval=0.1)
    assert failed.value.job_status["state"] == "FAILURE" and "fail=true" in str(failed.value)
    assert failing.output is None
    with pytest.raises(Conflict):
        failing.download(tmp_path / "nothing.zip")
    assert not (tmp_path / "nothing.zip").exists() and not list(tmp_path.glob("*.part"))


def test_wait_times_out(serve, tmp_path):
    api = serve()
    job = Client(api.url).start("dummy", documents=[DOC])  # no worker: it stays PENDING
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        job.wait(progress=False, timeout=1.0, interval=0.2)
    assert time.monotonic() - began < 5


# -- errors: typed for code, one line for people -----------------------------------------------------
def test_an_api_that_is_not_running(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(ConnectionFailed) as caught:
        Client(url).start("dummy", documents=[DOC])
    message = str(caught.value)
    assert message == (f"cannot reach the API at {url} (connection refused): is `bash run.sh serve` running? "
                       "pass Client(url=...) or set API_URL")
    assert caught.value.status is None and caught.value.code == "unreachable"
    page = write_pngs(tmp_path, 1)[0]
    assert_one_line_error(cli("dummy", page, "--wait", env={"API_URL": url}),
                          f"cannot reach the API at {url} (connection refused)", "set --api or API_URL")
    assert_one_line_error(cli("dummy", page, "--api", url, env={}), f"at {url} (connection refused)")


def test_a_token_the_api_wants(serve, tmp_path):
    api = serve(API_TOKEN="s3cret")
    with pytest.raises(Unauthorized) as caught:
        Client(api.url, token="").qsizes("dummy")
    assert caught.value.status == 401 and caught.value.code == "unauthorized"
    assert "set API_TOKEN" in str(caught.value) and "\n" not in str(caught.value)
    assert Client(api.url, token="s3cret").qsizes("dummy")["waiting"] == 0
    page = write_pngs(tmp_path, 1)[0]
    assert_one_line_error(cli("dummy", page, env={"API_URL": api.url}), "missing or wrong token", "(401 unauthorized)",
                          "set API_TOKEN")
    accepted = cli("dummy", page, env={"API_URL": api.url, "API_TOKEN": "s3cret"})
    assert accepted.returncode == 0 and accepted.stdout.startswith("job "), accepted.stderr


def test_unknown_demo_or_job_is_not_found(serve, tmp_path):
    api = serve()
    client = Client(api.url)
    with pytest.raises(NotFound) as app:
        client.start("nosuch", documents=[DOC])
    assert str(app.value) == f"no demo 'nosuch' at {api.url} (404); it serves: dummy"
    with pytest.raises(NotFound) as job:
        client.job("dummy", "0" * 32).status()
    assert job.value.status == 404 and job.value.code == "not_found" and "no job" in str(job.value)
    assert_one_line_error(cli("nosuch", write_pngs(tmp_path, 1)[0], env={"API_URL": api.url}),
                          "no demo 'nosuch'", "it serves: dummy")


def test_invalid_input_names_the_field(serve, tmp_path):
    api = serve()
    with pytest.raises(InvalidInput) as caught:
        Client(api.url).start("dummy", documents=[DOC], delay="slow")
    assert caught.value.field == "parameters.delay" and caught.value.status == 400
    assert str(caught.value).startswith("parameters.delay: ") and str(caught.value).endswith("(400 invalid_input)")
    with pytest.raises(InvalidInput) as missing:
        Client(api.url).start("dummy", files=[tmp_path / "nope.png"])
    assert missing.value.field == "files" and missing.value.status is None
    assert api.count("/start") == 1  # a missing file never reached the API
    line = assert_one_line_error(cli("dummy", write_pngs(tmp_path, 1)[0], "--param", "delay=slow",
                                     env={"API_URL": api.url}), "parameters.delay")
    assert line.endswith("(400 invalid_input)")
    assert_one_line_error(cli("dummy", str(tmp_path / "nope.png"), env={"API_URL": api.url}), "no such file")


# -- back-pressure: Retry-After and the estimated wait --------------------------------------------------
def test_queue_full_answers_retry_after_and_the_client_honours_it(serve, procs):
    """MAX_QUEUE_LENGTH=1, no worker: the 429 says Retry-After = the cap (nothing drains); the
    client waits that long between tries, then says how often it tried; once a worker drains the
    queue, a retry gets in."""
    api = serve(MAX_QUEUE_LENGTH="1", RETRY_AFTER_MAX_S="2")
    first = Client(api.url).start("dummy", documents=[DOC])
    full = requests.post(f"{api.url}/dummy/start", json={"documents": [DOC]}, timeout=10)
    assert full.status_code == 429 and full.headers["Retry-After"] == "2"
    assert full.json()["error"]["message"].endswith("try again in 2 s")
    qsizes = Client(api.url).qsizes("dummy")
    assert qsizes["waiting"] == 1 and qsizes["estimated_wait_s"] is None  # no worker to take it

    began = time.monotonic()
    with pytest.raises(QueueFull) as caught:
        Client(api.url, retries=2).start("dummy", documents=[DOC])
    elapsed = time.monotonic() - began
    assert caught.value.retry_after == 2 and caught.value.status == 429 and caught.value.code == "queue_full"
    assert 4 <= elapsed < 8, elapsed  # two waits of Retry-After, not a hammering loop
    assert str(caught.value).endswith("(tried 3 times over 4 s)")
    assert api.count("/start") == 2 + 3

    line = assert_one_line_error(cli("dummy", "http://127.0.0.1:9/a.png", "--retries", "1", env={"API_URL": api.url}),
                                 "queue is full")
    assert "(429 queue_full)" in line and line.endswith("(tried 2 times over 2 s)")

    threading.Timer(1.0, procs.worker).start()  # a worker comes while the client waits
    job = Client(api.url, retries=30).start("dummy", documents=[DOC])
    assert job.tracking_id != first.tracking_id
    assert wait_for(lambda: first.status()["state"] != "PENDING", timeout=30)


def test_the_retry_after_and_estimated_wait_follow_recent_jobs(serve, procs, tmp_path):
    """After jobs of about 1.2 s each with one worker, a job ends about every 1.2 s: /qsizes says
    so, and a full queue's Retry-After is that, rounded up."""
    api = serve(MAX_QUEUE_LENGTH="1", RETRY_AFTER_MAX_S="60")
    procs.worker()
    client = Client(api.url)
    for job in [client.start("dummy", files=write_pngs(tmp_path, 1), delay=1.2) for _ in range(2)]:
        job.wait(progress=False, interval=0.1)
    per_job = client.qsizes("dummy")["seconds_per_job"]
    assert 1.2 <= per_job < 4, per_job
    running = client.start("dummy", files=write_pngs(tmp_path, 1), delay=5)
    wait_for(lambda: running.status()["state"] == "STARTED", timeout=30)
    waiting = client.start("dummy", files=write_pngs(tmp_path, 1))
    qsizes = client.qsizes("dummy")
    assert qsizes["waiting"] == 1 and qsizes["estimated_wait_s"] == pytest.approx(qsizes["seconds_per_job"], abs=0.11)
    monitor = client.request("GET", "/dummy/monitor").json()
    assert monitor["estimated_wait_s"] == qsizes["estimated_wait_s"] and monitor["seconds_per_job"] == per_job
    full = requests.post(f"{api.url}/dummy/start", json={"documents": [DOC]}, timeout=10)
    assert full.status_code == 429
    assert int(full.headers["Retry-After"]) in {math.ceil(per_job - 0.005), math.ceil(per_job + 0.005)}  # 2 decimals
    for job in (running, waiting):
        job.cancel()


def test_503_carries_retry_after_and_is_retried(data_folder):
    env = platform_env(data_folder, f"redis://127.0.0.1:{free_port()}/0", RETRY_AFTER_MAX_S="1")
    flask_client = create_app(load_config({**env, "RETRY_AFTER_MAX_S": "120"})).test_client()
    down = flask_client.post("/dummy/start", json={"documents": [DOC]})
    assert down.status_code == 503 and down.headers["Retry-After"] == "5"
    assert json_of(down)["error"]["code"] == "unavailable"
    api = Api(env)
    try:
        began = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            Client(api.url, retries=2).start("dummy", documents=[DOC])
        assert 2 <= time.monotonic() - began < 6
        assert caught.value.retry_after == 1 and "Redis" in str(caught.value)
        assert api.count("/start") == 3
    finally:
        api.stop()


def test_a_retried_upload_sends_the_whole_file_each_time_and_starts_one_job(serve, procs, tmp_path):
    """The client rewinds files between tries and sends one Idempotency-Key per start."""
    api = serve(MAX_QUEUE_LENGTH="1", RETRY_AFTER_MAX_S="1")
    Client(api.url).start("dummy", documents=[DOC])
    payload = io.BytesIO(png_bytes((1, 2, 3)))
    threading.Timer(1.5, procs.worker).start()
    job = Client(api.url, retries=30).start("dummy", files=[("mine.png", payload)])
    assert api.count("/start") >= 3
    final = job.wait(progress=False, interval=0.1)
    assert final["output"]["images"]["mine"][0]["width"] == 32
    assert sum(api.flask.extensions["api"].store.counts("dummy").values()) == 2  # the first job and this one


def test_the_module_names_every_error_class():
    assert {name for name in api_client.__all__ if name[0].isupper()} >= {
        "ApiError", "ConnectionFailed", "InvalidInput", "Unauthorized", "NotFound", "Conflict", "QueueFull",
        "Unavailable", "JobFailed"}


def test_the_openapi_document_declares_retry_after_and_the_wait(client):
    spec = json_of(client.get("/openapi.json"))
    start = spec["paths"]["/dummy/start"]["post"]["responses"]
    assert start["429"]["headers"]["Retry-After"]["schema"]["type"] == "integer"
    assert "Retry-After" in start["503"]["headers"]
    qsizes = spec["paths"]["/dummy/qsizes"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(json_of(client.get("/dummy/qsizes"))) == set(qsizes["properties"])
    monitor = spec["paths"]["/dummy/monitor"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert {"estimated_wait_s", "seconds_per_job"} <= set(monitor["properties"]) & set(
        json_of(client.get("/dummy/monitor")))


def readme_client_block() -> str:
    section = (ROOT / "README.md").read_text().split("\n## Python client\n", 1)[1].split("\n## ", 1)[0]
    [block] = re.findall(r"```python\n(.*?)```", section, re.S)
    return block


def test_the_readme_example_runs_as_pasted(serve, procs, tmp_path):
    """README's "Python client" block, pasted into a Python process beside page.png, against a real
    API with the vectorization demo and its worker; only the address differs (API_URL)."""
    api = serve(INSTALLED_APPS="vectorization")
    procs.worker(queue="vectorization", timeout=120)
    code = readme_client_block().replace('Client("http://127.0.0.1:5000")', "Client()")
    assert code != readme_client_block()
    Image.new("RGB", (400, 300), "white").save(tmp_path / "page.png")
    draw = ImageDraw.Draw(image := Image.open(tmp_path / "page.png"))
    draw.line((20, 20, 380, 250), fill="black", width=3)
    draw.ellipse((100, 50, 250, 200), outline="black", width=3)
    image.save(tmp_path / "page.png")
    env = {**{k: v for k, v in os.environ.items() if k != "API_TOKEN"}, "PYTHONPATH": str(ROOT), "API_URL": api.url}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr + procs.logs()
    lines = done.stdout.splitlines()
    assert lines[1].startswith("SUCCESS {'line': "), lines
    zip_path, svg_path = (tmp_path / line for line in lines[2:4])
    assert zip_path.parent.name == "results" and zipfile.is_zipfile(zip_path)
    assert svg_path.name == "page.svg" and svg_path.read_text().lstrip().startswith(("<svg", "<?xml"))
    assert lines[4] == ("parameters.tolerance: must be a number (400 invalid_input) | "
                        "400 invalid_input parameters.tolerance")
    assert "100%" in done.stderr  # the progress bar
