"""The HTTP contract, through the Flask app against a real Redis (no worker needed here)."""
from __future__ import annotations

import io
import json
import zipfile

import pytest
import redis

from api import create_app
from api.platform.config import ConfigError, load_config
from api.platform.demo import Param
from api.platform.errors import InputError
from tests.support.platform import json_of, platform_env, png_bytes


def start(client, body=None, **kwargs):
    return client.post("/dummy/start", json=body if body is not None else {
        "documents": [{"type": "img", "src": "http://127.0.0.1:9/a.png"}]}, **kwargs)


def assert_error(response, status: int, code: str | None = None, mentions: str | None = None):
    assert response.status_code == status, response.data
    assert response.mimetype == "application/json"
    error = json_of(response)["error"]
    assert set(error) <= {"code", "message", "field"} and error.get("field", "x")
    if code == "invalid_input":
        assert error["message"].startswith(f"{error['field']}: ")
    assert "Traceback" not in error["message"]
    if code:
        assert error["code"] == code
    if mentions:
        assert mentions in error["message"], error["message"]


def test_start_returns_ids_and_urls_then_status_reads_pending(client):
    response = start(client, {"experiment_id": "exp-1", "documents": [{"type": "img", "src": "http://127.0.0.1:9/a.png"}],
                              "parameters": {"delay": 0.5, "labels": ["a", "b"]}})
    assert response.status_code == 202
    body = json_of(response)
    assert set(body) >= {"tracking_id", "experiment_id", "status_url", "result_url"}
    assert body["experiment_id"] == "exp-1"
    assert body["status_url"].endswith(f"/dummy/{body['tracking_id']}/status")
    status = json_of(client.get(f"/dummy/{body['tracking_id']}/status"))
    assert status["state"] == "PENDING"
    assert status["progress"] == {"done": 0, "total": 0, "percent": 0.0, "eta_s": None}
    assert status["result_url"] == body["result_url"]
    assert set(status) >= {"tracking_id", "experiment_id", "state", "progress", "error", "log", "result_url", "timings"}


def test_unknown_app_and_unknown_or_malformed_id_are_404(client):
    assert_error(client.post("/nosuchapp/start", json={}), 404)
    assert_error(client.get("/dummy/" + "0" * 32 + "/status"), 404, "not_found")
    assert_error(client.get("/dummy/not-an-id/status"), 404)
    assert_error(client.post("/dummy/" + "0" * 32 + "/cancel"), 404)
    assert_error(client.get("/dummy/" + "0" * 32 + "/result"), 404)


@pytest.mark.parametrize("body, mentions", [
    ({"documents": [{"type": "img", "src": "http://127.0.0.1:9/a.png"}], "parameters": {"nope": 1}}, "parameters.nope"),
    ({"documents": [{"type": "img", "src": "http://127.0.0.1:9/a.png"}], "parameters": {"delay": "slow"}},
     "parameters.delay"),
    ({"documents": [{"type": "img", "src": "http://127.0.0.1:9/a.png"}], "parameters": {"delay": -1}},
     "parameters.delay"),
    ({"documents": [{"type": "img", "src": "http://127.0.0.1:9/a.png"}], "parameters": {"fail": "maybe"}},
     "parameters.fail"),
    ({"documents": [{"type": "img", "src": "http://127.0.0.1:9/a.png"}], "parameters": [1]}, "parameters"),
    ({"documents": [{"type": "img", "src": "http://127.0.0.1:9/a.png"}], "colour": "red"}, "colour"),
    ({"documents": [{"type": "video", "src": "http://127.0.0.1:9/a.mp4"}]}, "documents[0].type"),
    ({"documents": [{"type": "img", "src": "file:///etc/passwd"}]}, "documents[0].src"),
    ({"documents": []}, "documents"),
    ({"documents": [{"type": "img", "src": "http://127.0.0.1:9/a.png"}], "notify_url": "ftp://x/"}, "notify_url"),
])
def test_bad_input_is_400_naming_the_field(client, body, mentions):
    assert_error(start(client, body), 400, mentions=mentions)


def test_body_that_is_not_json_or_not_an_object(client):
    assert_error(client.post("/dummy/start", data="{oops", content_type="application/json"), 400)
    assert_error(client.post("/dummy/start", json=[1, 2]), 400)
    assert_error(client.post("/dummy/start", data="x", content_type="text/plain"), 415)


def test_documents_as_json_string_and_form_fields_like_discover_demo(client):
    docs = json.dumps([{"type": "img", "src": "http://127.0.0.1:9/a.png", "uid": "wit12_img"}])
    assert start(client, {"documents": docs}).status_code == 202
    response = client.post("/dummy/start", data={"documents": docs, "parameters": json.dumps({"delay": 0}),
                                                 "experiment_id": "e"})
    assert response.status_code == 202, response.data
    job = json_of(client.get(json_of(response)["status_url"].split("localhost")[-1]))
    assert job["experiment_id"] == "e"


def test_multipart_upload_becomes_documents(client, app):
    response = client.post("/dummy/start", data={
        "files": [(io.BytesIO(png_bytes()), "page one.png"), (io.BytesIO(png_bytes()), "../../evil.png")]},
        content_type="multipart/form-data")
    assert response.status_code == 202, response.data
    tracking_id = json_of(response)["tracking_id"]
    store = app.extensions["api"].store
    job = store.get("dummy", tracking_id)
    assert [d["type"] for d in job.documents] == ["img", "img"]
    for doc in job.documents:
        assert doc["path"].startswith(str(app.extensions["api"].cfg.uploads_folder / tracking_id))
        assert ".." not in doc["path"]


def test_a_demo_can_add_documents_from_its_parameters(client, app, data_folder):
    (data_folder / "crops").mkdir()
    response = client.post("/dummy/start", json={"parameters": {"folder": "crops"}})
    assert response.status_code == 202, response.data
    job = app.extensions["api"].store.get("dummy", json_of(response)["tracking_id"])
    assert job.documents == [{"type": "dir", "uid": "folder", "path": str(data_folder / "crops")}]
    response = client.post("/dummy/start", json={"parameters": {"folder": "nope"}})
    assert response.status_code == 400 and json_of(response)["error"]["field"] == "parameters.folder"


def test_auth_required_everywhere_but_health(env):
    app = create_app(load_config({**env, "API_TOKEN": "t0ken"}))
    client = app.test_client()
    assert client.get("/health").status_code == 200
    assert_error(client.get("/dummy/qsizes"), 401, "unauthorized")
    assert_error(client.get("/ready", headers={"Authorization": "Bearer wrong"}), 401)
    assert_error(client.get("/metrics", headers={"Authorization": "Basic t0ken"}), 401)
    assert client.get("/dummy/qsizes", headers={"Authorization": "Bearer t0ken"}).status_code == 200
    assert start(client, headers={"Authorization": "Bearer t0ken"}).status_code == 202


def test_idempotency_key_returns_the_same_job(client, app):
    body = {"documents": [{"type": "img", "src": "http://127.0.0.1:9/a.png"}]}
    first = start(client, body, headers={"Idempotency-Key": "k-1"})
    again = start(client, body, headers={"Idempotency-Key": "k-1"})
    other = start(client, body, headers={"Idempotency-Key": "k-2"})
    assert first.status_code == again.status_code == 202
    assert json_of(first)["tracking_id"] == json_of(again)["tracking_id"] != json_of(other)["tracking_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert app.extensions["api"].platform.queue_size("dummy") == 2  # the replay enqueued nothing
    changed = start(client, {**body, "parameters": {"delay": 1}}, headers={"Idempotency-Key": "k-1"})
    assert_error(changed, 409)


def test_queue_full_is_429(env):
    client = create_app(load_config({**env, "MAX_QUEUE_LENGTH": "2"})).test_client()
    assert start(client).status_code == 202
    assert start(client).status_code == 202
    assert_error(start(client), 429, "queue_full")


def test_cancel_pending_job_then_cancel_again_is_409(client, app):
    tracking_id = json_of(start(client))["tracking_id"]
    response = client.post(f"/dummy/{tracking_id}/cancel")
    assert response.status_code == 202
    assert json_of(response)["state"] == "CANCELLED"
    assert json_of(client.get(f"/dummy/{tracking_id}/status"))["state"] == "CANCELLED"
    assert_error(client.post(f"/dummy/{tracking_id}/cancel"), 409)
    assert json_of(client.get("/dummy/monitor"))["jobs"]["CANCELLED"] == 1


def test_result_before_success_is_409_and_paths_are_confined(client):
    tracking_id = json_of(start(client))["tracking_id"]
    assert_error(client.get(f"/dummy/{tracking_id}/result"), 409)
    assert client.get(f"/dummy/{tracking_id}/result/job.json").status_code == 200
    for bad in ("../../../etc/passwd", "..%2F..%2Fjob.json", "%2Fetc%2Fpasswd", "a/../../x"):
        response = client.get(f"/dummy/{tracking_id}/result/{bad}")
        assert response.status_code in (400, 404), bad
        assert response.mimetype == "application/json"


def test_state_outlives_redis_through_job_json(client, app, redis_url):
    tracking_id = json_of(start(client))["tracking_id"]
    client.post(f"/dummy/{tracking_id}/cancel")
    redis.Redis.from_url(redis_url).flushall()
    status = json_of(client.get(f"/dummy/{tracking_id}/status"))
    assert status["state"] == "CANCELLED"
    assert status["error"] == "cancelled by the client"


def test_unfinished_job_that_redis_lost_is_reported_lost_not_pending_forever(client, redis_url):
    tracking_id = json_of(start(client))["tracking_id"]
    redis.Redis.from_url(redis_url).flushall()
    status = json_of(client.get(f"/dummy/{tracking_id}/status"))
    assert status["state"] == "FAILURE"
    assert "lost this job" in status["error"]


def test_xaccel_hands_the_file_to_nginx(env):
    app = create_app(load_config({**env, "USE_XACCEL": "1"}))
    client = app.test_client()
    tracking_id = json_of(start(client))["tracking_id"]
    response = client.get(f"/dummy/{tracking_id}/result/job.json")
    assert response.status_code == 200
    assert response.headers["X-Accel-Redirect"] == f"/xaccel/dummy/{tracking_id}/job.json"
    assert response.data == b""


def test_redis_down_is_503(data_folder):
    from api.platform.embedded import free_port

    env = platform_env(data_folder, f"redis://127.0.0.1:{free_port()}/0")
    client = create_app(load_config(env)).test_client()
    assert_error(start(client), 503, "unavailable")
    assert_error(client.get("/dummy/" + "a" * 32 + "/status"), 503)
    ready = client.get("/ready")
    assert ready.status_code == 503 and json_of(ready)["redis"] is False


def test_upload_too_large_is_413(env):
    client = create_app(load_config({**env, "MAX_UPLOAD_BYTES": "1000"})).test_client()
    response = client.post("/dummy/start", data={"files": [(io.BytesIO(b"x" * 5000), "big.png")]},
                           content_type="multipart/form-data")
    assert_error(response, 413, "too_large")


def test_unknown_installed_app_stops_startup_naming_it(env):
    with pytest.raises(ConfigError, match="nosuchdemo"):
        create_app(load_config({**env, "INSTALLED_APPS": "tests.demos.dummy,nosuchdemo"}))


def test_ready_needs_a_worker_heartbeat(client):
    response = client.get("/ready")
    assert response.status_code == 503
    assert json_of(response) == {"ready": False, "redis": True, "workers": 0, "reason": "no worker heartbeat"}


def test_models_monitor_qsizes_openapi_docs_metrics(client):
    assert json_of(client.get("/dummy/models")) == {"v1": "2026-11-01"}
    assert json_of(client.get("/dummy/models?details=1"))["v1"]["source"] == "built in"
    start(client)
    assert json_of(client.get("/dummy/qsizes"))["queues"] == {"dummy": 1}
    monitor = json_of(client.get("/dummy/monitor"))
    assert monitor["jobs"]["PENDING"] == 1 and monitor["queues"]["dummy"]["waiting"] == 1
    assert set(monitor) >= {"workers", "disk", "dead_letters", "total_size", "callbacks"}
    spec = json_of(client.get("/openapi.json"))
    assert "/dummy/start" in spec["paths"]
    params = spec["paths"]["/dummy/start"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert params["properties"]["parameters"]["properties"]["delay"]["minimum"] == 0
    from openapi_spec_validator import validate

    validate(spec)
    assert b"/dummy/start" in client.get("/docs").data
    text = client.get("/metrics").data.decode()
    assert 'api_jobs{app="dummy",state="PENDING"} 1.0' in text
    assert 'api_queue_messages{kind="waiting",queue="dummy"} 1.0' in text


def test_a_demo_adds_its_own_routes_under_its_prefix(client):
    assert json_of(client.get("/dummy/channels")) == {"channels": ["red", "green", "blue"]}


def test_param_coercion():
    assert Param(int).coerce("n", "3") == 3
    assert Param(float).coerce("x", 1) == 1.0
    assert Param(bool).coerce("b", "false") is False
    assert Param(list, items=int).coerce("l", "1,2") == [1, 2]
    assert Param(list).coerce("l", '["a", "b"]') == ["a", "b"]
    for param, value in ((Param(int), 1.5), (Param(int), True), (Param(float), "nan"), (Param(str), 3),
                         (Param(str, choices=("a",)), "b"), (Param(list, items=int), ["x"])):
        with pytest.raises(InputError):
            param.coerce("p", value)


def test_zip_of_results_is_only_whole_files(tmp_path):
    from api.platform.storage import TEMP_PREFIX, atomic_write, build_zip

    atomic_write(tmp_path / "a" / "x.json", "{}")
    (tmp_path / f"{TEMP_PREFIX}half").write_bytes(b"partial")
    with pytest.raises(RuntimeError):
        from api.platform.storage import atomic_open

        with atomic_open(tmp_path / "b.bin") as handle:
            handle.write(b"half")
            raise RuntimeError("killed mid-write")
    assert not (tmp_path / "b.bin").exists()
    names = zipfile.ZipFile(build_zip(tmp_path)).namelist()
    assert names == ["a/x.json"]
