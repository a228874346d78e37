"""Hostile and unlucky requests: each gets a JSON error with the right status, never a 500, and
leaves nothing behind (no upload folder, no Idempotency-Key bound to a job that never existed).

Through the Flask app against the session's real Redis, through a real gunicorn where the server
matters (a chunked body; a full disk), and against a real redis-server that refuses writes.
"""
from __future__ import annotations

import errno
import io
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis
import requests

from api import create_app
from api.platform.clientjson import MAX_JSON_BYTES, MAX_JSON_DEPTH
from api.platform.config import load_config
from api.platform.embedded import EmbeddedRedis, free_port
from api.platform.errors import storage_failure
from tests.support import ROOT
from tests.support.platform import json_of, png_bytes, wait_for
from tests.test_api import assert_error, start

DOC = {"type": "img", "src": "http://127.0.0.1:9/a.png"}
DEEP = 100_000


def deep_list(depth: int) -> str:
    return "[" * depth + "]" * depth


def upload(client, files: list[tuple[bytes, str]], key: str = "", **fields):
    return client.post("/dummy/start", data={**fields, "files": [(io.BytesIO(b), name) for b, name in files]},
                       content_type="multipart/form-data", headers={"Idempotency-Key": key} if key else {})


def uploads_left(data_folder: Path) -> list[Path]:
    folder = data_folder / "uploads"
    return sorted(folder.iterdir()) if folder.is_dir() else []


# -- a real gunicorn -----------------------------------------------------------------------------------
class Gunicorn:
    """`gunicorn api:create_app()` on a free loopback port, as `python -m api serve` runs it;
    `wrapper` runs it inside another command (e.g. a mount namespace)."""

    def __init__(self, env: dict, folder: Path, wrapper: list[str] = ()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "gunicorn.log"
        command = [*wrapper, sys.executable, "-m", "gunicorn", "--workers", "1", "--worker-class", "gthread",
                   "--threads", "4", "--bind", f"127.0.0.1:{self.port}", "--control-socket",
                   str(folder / "gunicorn.ctl"), "api:create_app()"]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
                                            start_new_session=True)
        wait_for(self._answers, timeout=60, message=f"gunicorn on {self.url}")

    def _answers(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        try:
            return requests.get(f"{self.url}/health", timeout=2).status_code == 200
        except (requests.ConnectionError, requests.Timeout):  # not up yet, or slow to answer while starting
            return False

    def path_inside(self, path: Path) -> Path:
        """`path` as gunicorn sees it (its own mount namespace, if the wrapper made one)."""
        return Path(f"/proc/{self.process.pid}/root") / path.relative_to("/")

    def stop(self) -> None:
        os.killpg(self.process.pid, 15)
        self.process.wait(15)


@pytest.fixture
def gunicorn(env, tmp_path):
    servers: list[Gunicorn] = []

    def serve(wrapper: list[str] = (), **settings: str) -> Gunicorn:
        servers.append(Gunicorn({**env, **settings}, tmp_path, wrapper))
        return servers[-1]

    yield serve
    for server in servers:
        server.stop()


# -- #10 Idempotency-Key and upload folders ----------------------------------------------------------
def test_a_300_character_file_name_is_saved_and_its_retry_replays_the_job(client, app, data_folder):
    name = "p" * 296 + ".png"
    first = upload(client, [(png_bytes(), name)], key="long-name")
    assert first.status_code == 202, first.data
    tracking_id = json_of(first)["tracking_id"]
    [document] = app.extensions["api"].store.get("dummy", tracking_id).documents
    saved = Path(document["path"])
    assert saved.is_file() and saved.suffix == ".png" and len(saved.name) <= 128
    assert saved.read_bytes() == png_bytes()
    again = upload(client, [(png_bytes(), name)], key="long-name")
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert json_of(again)["tracking_id"] == tracking_id
    assert [p.name for p in uploads_left(data_folder)] == [tracking_id]


def test_idempotency_fingerprint_includes_the_uploaded_contents(client):
    assert upload(client, [(png_bytes((1, 2, 3)), "page.png")], key="k").status_code == 202
    assert_error(upload(client, [(png_bytes((9, 9, 9)), "page.png")], key="k"), 409,
                 mentions="different request")


def test_an_upload_that_cannot_be_saved_is_400_naming_it_and_frees_the_key(client, data_folder):
    (data_folder / "uploads").write_text("a file where the uploads folder should be")
    failed = upload(client, [(png_bytes(), "scan.png")], key="retry-me")
    assert_error(failed, 400, "invalid_input", mentions="'scan.png' could not be saved")
    assert json_of(failed)["error"]["field"] == "files"
    (data_folder / "uploads").unlink()
    retried = upload(client, [(png_bytes(), "scan.png")], key="retry-me")
    assert retried.status_code == 202, retried.data  # not 409 "still being handled" for 7 days
    assert "Idempotent-Replayed" not in retried.headers


def test_a_refused_start_removes_its_saved_uploads_and_frees_the_key(env, data_folder):
    """The queue is checked once the uploads are saved (so a replay is answered even when it is
    full): a 429 then removes them, and frees the key for the retry."""
    full = create_app(load_config({**env, "MAX_QUEUE_LENGTH": "1"})).test_client()
    assert start(full).status_code == 202
    files = [(png_bytes(), "a.png"), (png_bytes(), "b.png")]
    assert_error(upload(full, files, key="full"), 429, "queue_full")
    assert uploads_left(data_folder) == []
    roomier = create_app(load_config({**env, "MAX_QUEUE_LENGTH": "2"})).test_client()
    retried = upload(roomier, files, key="full")
    assert retried.status_code == 202, retried.data
    assert "Idempotent-Replayed" not in retried.headers
    assert len(uploads_left(data_folder)) == 1


# -- #11 JSON nested 100,000 deep, and bodies that are not objects -------------------------------------
@pytest.mark.parametrize("field", ["parameters", "documents", "experiment_id"])
def test_json_body_nested_deep_is_400(client, field):
    body = f'{{"{field}": {deep_list(DEEP)}}}'
    assert_error(client.post("/dummy/start", data=body, content_type="application/json"), 400, "invalid_input",
                 mentions=f"nested deeper than {MAX_JSON_DEPTH}")


def test_json_nested_just_within_the_limit_is_read(client):
    labels = deep_list(MAX_JSON_DEPTH - 2)  # body object > parameters object > the lists
    body = f'{{"documents": [{json.dumps(DOC)}], "parameters": {{"labels": {labels}}}}}'
    response = client.post("/dummy/start", data=body, content_type="application/json")
    assert_error(response, 400, mentions="parameters.labels[0]")  # read, then refused for its type


@pytest.mark.parametrize("field", ["parameters", "labels"])
def test_json_strings_in_a_form_nested_deep_are_400(client, field):
    value = deep_list(DEEP)
    data = {"documents": '[{"type": "img", "src": "http://127.0.0.1:9/a.png"}]',
            "parameters": value if field == "parameters" else json.dumps({"labels": value})}
    response = client.post("/dummy/start", data=data)
    assert_error(response, 400, "invalid_input", mentions="nested deeper than")
    assert json_of(response)["error"]["field"] == ("parameters" if field == "parameters" else "parameters.labels")


def test_documents_string_nested_deep_is_400(client):
    assert_error(client.post("/dummy/start", data={"documents": deep_list(DEEP)}), 400, mentions="documents")


@pytest.mark.parametrize("body", ["[1]", '"days"', "3", "null", deep_list(DEEP)])
def test_monitor_clear_with_a_body_that_is_not_an_object_is_400(client, body):
    assert_error(client.post("/dummy/monitor/clear", data=body, content_type="application/json"), 400,
                 "invalid_input")


def test_monitor_clear_reads_json_and_form(client):
    assert json_of(client.post("/dummy/monitor/clear", json={"days_before": 1}))["cleared"] == 0
    assert json_of(client.post("/dummy/monitor/clear", data={"days_before": "2"}))["days_before"] == 2.0


# -- #12 null parameters ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["model", "delay", "fail", "disk_full", "labels", "folder"])
def test_null_parameter_is_400_naming_it(client, name):
    response = start(client, {"documents": [DOC], "parameters": {name: None}})
    assert_error(response, 400, "invalid_input", mentions="not null")
    assert json_of(response)["error"]["field"] == f"parameters.{name}"


def test_null_item_of_a_list_parameter_is_400_naming_it(client):
    response = start(client, {"documents": [DOC], "parameters": {"labels": ["a", None]}})
    assert_error(response, 400, mentions="parameters.labels[1]")


def test_regions_job_null_is_400_in_vectorization(env):
    client = create_app(load_config({**env, "INSTALLED_APPS": "vectorization"})).test_client()
    response = client.post("/vectorization/start", json={"documents": [DOC], "parameters": {"regions_job": None}})
    assert_error(response, 400, "invalid_input")
    assert json_of(response)["error"]["field"] == "parameters.regions_job"


def test_nullable_parameter_accepts_null():
    from api.platform.demo import Param

    assert Param(str, "x", nullable=True).coerce("p", None) is None
    assert Param(int, nullable=True).json_schema()["type"] == ["integer", "null"]


# -- #13 a chunked JSON body stops being read at the JSON limit ---------------------------------------
def test_chunked_json_body_is_413_while_the_client_is_still_sending(gunicorn):
    """The client sends an endless chunked body; the answer (413) must come back while it is still
    sending, so the server stopped reading (before: read up to MAX_UPLOAD_BYTES, then a 400)."""
    server = gunicorn()
    chunk = b"a" * 16384
    frame = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /dummy/start HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" + b'10\r\n{"documents": "a\r\n')
        try:
            while not select.select([sock], [], [], 0)[0]:
                assert sent < 64 * MAX_JSON_BYTES, "64 MiB sent and no answer: the server reads on"
                sock.sendall(frame)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed; the answer is in our receive buffer
        answer = receive_all(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b'"code":"too_large"' in body and b"JSON body larger than" in body


def receive_all(sock: socket.socket) -> bytes:
    sock.settimeout(30)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_json_body_with_a_length_over_the_limit_is_413_unread(client):
    response = client.post("/dummy/start", data=b"{" + b" " * MAX_JSON_BYTES + b"}", content_type="application/json")
    assert_error(response, 413, "too_large", mentions="JSON body larger than")


# -- #16 the queue limit holds under concurrent starts ------------------------------------------------
def test_queue_limit_holds_for_concurrent_starts(env, redis_url):
    """Eight starts pass every check while Redis holds writes back (CLIENT PAUSE WRITE), then run
    on together: at most MAX_QUEUE_LENGTH may be queued (before: all eight, as the probe's 109/100)."""
    app = create_app(load_config({**env, "MAX_QUEUE_LENGTH": "2"}))
    control = redis.Redis.from_url(redis_url)
    statuses: list[int] = []

    def post():
        statuses.append(start(app.test_client()).status_code)

    threads = [threading.Thread(target=post) for _ in range(8)]
    already = control.info("clients")["blocked_clients"]
    control.client_pause(60_000, all=False)
    try:
        for thread in threads:
            thread.start()
        wait_for(lambda: control.info("clients")["blocked_clients"] >= already + 8, message="8 starts held back")
    finally:
        control.client_unpause()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [202, 202, 429, 429, 429, 429, 429, 429]
    assert app.extensions["api"].platform.queue_size("dummy") == 2
    assert control.zcard("admitting:dummy") == 0  # every admission let go


def test_demo_folder_parameter_does_not_reveal_directories_outside_data_folder(client, data_folder):
    (data_folder / "crops").mkdir()
    assert start(client, {"parameters": {"folder": "crops"}}).status_code == 202
    answers = set()
    for folder in ("nope", "/etc", "/nonexistent", "../" + data_folder.name, "crops/../../..", "."):
        response = start(client, {"parameters": {"folder": folder}})
        assert_error(response, 400)
        answers.add(response.data)
    assert len(answers) == 1, answers  # one answer, whether the directory exists or not


# -- B5 storage full: 503, not 500 ------------------------------------------------------------------
def test_redis_refusing_writes_misconf_is_503(env, tmp_path):
    """A real redis-server whose snapshot failed (its folder is gone) answers MISCONF to writes."""
    folder = tmp_path / "redis-misconf"
    with EmbeddedRedis(folder, appendonly=False, port=0) as server:
        broken = redis.Redis.from_url(server.url)
        broken.config_set("save", "3600 1")
        shutil.rmtree(folder)
        broken.bgsave()
        wait_for(lambda: broken.info("persistence")["rdb_last_bgsave_status"] == "err", message="a failed BGSAVE")
        with pytest.raises(redis.ResponseError, match="^MISCONF"):
            broken.set("probe", 1)
        with pytest.raises(redis.ResponseError) as refused_in_a_script:  # as the admission's Lua script gets it
            broken.eval("return redis.call('SET', KEYS[1], 1)", 1, "probe")
        assert storage_failure(refused_in_a_script.value) is not None, str(refused_in_a_script.value)
        client = create_app(load_config({**env, "REDIS_URL": server.url})).test_client()
        response = start(client, headers={"Idempotency-Key": "k"})
        assert_error(response, 503, "unavailable", mentions="refuses writes")
        assert_error(start(client), 503, "unavailable")
        assert_error(client.post("/dummy/" + "a" * 32 + "/cancel"), 404)  # reads still work


def mount_namespace_available(folder: Path) -> bool:
    probe = subprocess.run(["unshare", "--map-root-user", "--mount", "sh", "-c",
                            f"mount -t tmpfs -o size=64k tmpfs {folder}"], capture_output=True, check=False)
    return probe.returncode == 0


def test_disk_full_while_saving_uploads_is_503_and_leaves_nothing(gunicorn, data_folder, tmp_path):
    """gunicorn runs in its own mount namespace with DATA_FOLDER/uploads on a 256 KiB tmpfs: a
    second upload that does not fit fails with a real ENOSPC."""
    if shutil.which("unshare") is None or not mount_namespace_available(tmp_path):
        pytest.skip("no user+mount namespace here to mount a small tmpfs (ENOSPC tested by mapping only)")
    uploads = data_folder / "uploads"
    uploads.mkdir()
    server = gunicorn(wrapper=["unshare", "--map-root-user", "--mount", "sh", "-c",
                               'mount -t tmpfs -o size=256k tmpfs "$0" && exec "$@"', str(uploads)])
    files = {"a": ("a.png", png_bytes()), "b": ("b.png", os.urandom(512 * 1024))}
    response = requests.post(f"{server.url}/dummy/start", files=files, headers={"Idempotency-Key": "disk"},
                             timeout=30)
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "unavailable"
    assert "disk is full" in response.json()["error"]["message"]
    assert list(server.path_inside(uploads).iterdir()) == []  # the first file, saved, was removed
    smaller = {"a": ("a.png", png_bytes())}
    retried = requests.post(f"{server.url}/dummy/start", files=smaller, headers={"Idempotency-Key": "disk"},
                            timeout=30)
    assert retried.status_code == 202, retried.text  # the key was freed; a new job, not a 409


@pytest.mark.parametrize("exc, unavailable", [
    (OSError(errno.ENOSPC, "No space left on device"), True),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), True),
    (OSError(errno.ENOENT, "No such file"), False),
    (redis.ReadOnlyError("You can't write against a read only replica."), True),
    (redis.ResponseError("Command # 1 (HSET job:x a 1) of pipeline caused error: MISCONF Redis is configured"),
     True),
    (redis.ResponseError("ERR unknown command"), False),
    (ValueError("x"), False),
])
def test_storage_failure_mapping(exc, unavailable):
    assert (storage_failure(exc) is not None) is unavailable


def test_a_document_uid_of_null_is_400_naming_it(client):
    response = client.post("/dummy/start", json={"documents": [{"type": "img", "src": "https://example.org/a.png",
                                                                "uid": None}]})
    assert_error(response, 400, "invalid_input", mentions="1-128 characters")
    assert json_of(response)["error"]["field"] == "documents[0].uid"


def test_a_form_part_without_a_readable_name_is_400(client):
    body = (b'--B\r\nContent-Disposition: form-data; name="U\\"\r\n\r\n3000\r\n'
            b'--B\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n--B--\r\n')
    response = client.post("/dummy/start", data=body, content_type="multipart/form-data; boundary=B")
    assert_error(response, 400, "invalid_input", mentions="without a (readable) name")
