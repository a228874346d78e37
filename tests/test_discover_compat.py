"""discover-demo, the reference front-end, switching to this API: a client of our own that makes
exactly its calls, with its payloads, against the real API (HTTP), Redis, a regions worker and the
callback sender. Document sources and callbacks live on a loopback "front" that is let through by
ALLOWED_SOURCE_HOSTS while the SSRF guard stays on (ALLOW_PRIVATE_URLS off)."""
from __future__ import annotations

import io
import json
import threading
import time
import uuid
import zipfile

import pytest
import requests
from werkzeug.serving import make_server

from api.platform.config import load_config
from tests.support.httpserver import Response
from tests.support.platform import use_regions, wait_for
from tests.support.synthetic_pages import YOLO_IMGSZ, make_page


def page_jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    make_page(seed).image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture
def front(http_server):
    """The front's media files and its notify endpoint."""
    http_server.add("/media/page1.jpg", page_jpeg(9100), "image/jpeg")
    http_server.add("/media/page2.jpg", page_jpeg(9101), "image/jpeg")
    http_server.add("/media/single.jpg", page_jpeg(9102), "image/jpeg")
    manifest = {"@context": "http://iiif.io/api/presentation/2/context.json", "@id": http_server.url("/manifest.json"),
                "@type": "sc:Manifest", "label": "witness", "sequences": [{"@type": "sc:Sequence", "canvases": [
                    {"@id": http_server.url(f"/canvas/{i}"), "@type": "sc:Canvas", "width": 1000, "height": 1400,
                     "images": [{"@type": "oa:Annotation", "motivation": "sc:painting",
                                 "on": http_server.url(f"/canvas/{i}"),
                                 "resource": {"@id": http_server.url(f"/media/page{i}.jpg"),
                                              "@type": "dctypes:Image"}}]}
                    for i in (1, 2)]}]}
    http_server.add("/manifest.json", json.dumps(manifest).encode(), "application/json")
    http_server.routes["/regions/12/notify"] = lambda request: Response(b"ok", 200, "text/plain")
    return http_server


@pytest.fixture
def compat_env(env, procs, trained_yolo):
    return use_regions(env, procs, trained_yolo, "illustrations.pt", ALLOW_PRIVATE_URLS="false",
                       ALLOWED_SOURCE_HOSTS="127.0.0.1", REGIONS_BATCH_SIZE="2", INFERENCE_RUNTIME="torch")


@pytest.fixture
def api_url(compat_env, procs):
    from api import create_app

    env = compat_env
    server = make_server("127.0.0.1", 0, create_app(load_config(env)), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    procs.worker(queue="regions", timeout=120)
    procs.sender()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def notifications(front) -> list[dict]:
    return [json.loads(r.body) for r in front.requests if r.path.startswith("/regions/12/notify")]


def test_discover_demo_calls_and_callbacks_work_unchanged(api_url, front, data_folder):
    notify_url = front.url("/regions/12/notify?token=s3cr3t")
    data = {
        "experiment_id": str(uuid.uuid4()),
        "notify_url": notify_url,
        "documents": [{"type": "iiif", "src": front.url("/manifest.json"), "uid": "wit1_man1"},
                      {"type": "img", "src": front.url("/media/single.jpg"), "uid": "wit2_img2"}],
        "parameters": {"model": "illustrations.pt", "imgsz": YOLO_IMGSZ, "conf": 0.1},
    }
    response = requests.post(f"{api_url}/regions/start", json=data, timeout=30)  # as discover-demo does
    assert response.status_code in (200, 202), response.text
    tracking_id = response.json()["tracking_id"]

    events = wait_for(lambda: (n := notifications(front)) and n[-1]["event"] in ("SUCCESS", "ERROR") and n,
                      180, message="the SUCCESS callback")
    paths = [r.path for r in front.requests if r.path.startswith("/regions/12/notify")]
    assert all(path == "/regions/12/notify?token=s3cr3t" for path in paths)  # query string kept
    kinds = [e["event"] for e in events]
    assert kinds[0] == "STARTED" and kinds[-1] == "SUCCESS" and set(kinds) <= {"STARTED", "PROGRESS", "SUCCESS"}
    output = events[-1]["output"]
    assert set(output["annotations"]) == {"wit1_man1", "wit2_img2"}  # keyed by the client's uids
    assert len(output["annotations"]["wit1_man1"]) == 2 and len(output["annotations"]["wit2_img2"]) == 1
    crops = 0
    for doc_uid, pages in output["annotations"].items():
        for page in pages:
            assert page["doc_uid"] == doc_uid and isinstance(page["source"], str)
            for crop in page["crops"]:
                crops += 1
                assert {"crop_id", "confidence"} <= set(crop)
                assert {"x1", "y1", "width", "height"} <= set(crop["relative"]) <= set(crop["absolute"]) | {"x2", "y2"}
    assert crops > 0

    # status (merged into discover-demo's own dict) and cancel with no body
    status = requests.get(f"{api_url}/regions/{tracking_id}/status", timeout=10).json()
    assert status["state"] == "SUCCESS" and status["tracking_id"] == tracking_id
    assert requests.post(f"{api_url}/regions/{tracking_id}/cancel", timeout=10).status_code == 409  # already ended

    # models, as the client formats them
    models = requests.get(f"{api_url}/regions/models", timeout=10).json()
    assert [f"{name} (last update: {date})" for name, date in models.items()] == [
        f"illustrations.pt (last update: {models['illustrations.pt']})"]
    assert requests.get(f"{api_url}/regions/models?details=1", timeout=10).json()["illustrations.pt"]["classes"]

    # the dataset: documents, their images, the zip
    dataset = requests.get(output["dataset_url"], timeout=10).json()
    assert dataset["uid"] == tracking_id and dataset["url"] == output["dataset_url"]
    by_uid = {d["uid"]: d for d in dataset["documents"]}
    assert set(by_uid) == {"wit1_man1", "wit2_img2"} and by_uid["wit1_man1"]["type"] == "iiif"
    document = requests.get(by_uid["wit1_man1"]["url"], timeout=10).json()
    assert [image["source_url"] for image in document["images"]] == [front.url("/media/page1.jpg"),
                                                                     front.url("/media/page2.jpg")]
    first = requests.get(document["images"][0]["url"], timeout=10)
    assert first.status_code == 200 and first.content == page_jpeg(9100)
    archive = zipfile.ZipFile(io.BytesIO(requests.get(by_uid["wit1_man1"]["download"], timeout=10).content))
    assert sorted(archive.namelist()) == sorted(f"{image['name']}.jpg" for image in document["images"])
    assert archive.read(f"{document['images'][1]['name']}.jpg") == page_jpeg(9101)

    # monitoring and clean-up
    monitor = requests.get(f"{api_url}/regions/monitor", timeout=10).json()
    assert monitor["total_size"] > 0 and monitor["qsizes"] == {"regions": 0}
    folder = data_folder / "results" / "regions" / tracking_id
    assert folder.is_dir()
    cleared = requests.post(f"{api_url}/regions/monitor/clear/{tracking_id}", timeout=10).json()
    assert cleared["cleared"] == 1 and cleared["bytes_freed"] > 0 and not folder.exists()
    after = requests.get(f"{api_url}/regions/monitor", timeout=10).json()
    # the job's share (its results when it ended) is taken back; bytes_freed also counts its uploads
    assert 0 <= after["total_size"] < monitor["total_size"]


def test_documents_as_a_json_string_and_as_form_fields(api_url, front, data_folder):
    documents = [{"type": "img", "src": front.url("/media/single.jpg"), "uid": "wit9_img9"}]
    as_string = requests.post(f"{api_url}/regions/start", json={
        "experiment_id": "e1", "notify_url": front.url("/regions/12/notify?token=a"),
        "documents": json.dumps(documents), "parameters": {"imgsz": YOLO_IMGSZ}}, timeout=30)
    as_form = requests.post(f"{api_url}/regions/start", data={
        "experiment_id": "e2", "notify_url": front.url("/regions/12/notify?token=b"),
        "documents": json.dumps(documents), "parameters": json.dumps({"imgsz": YOLO_IMGSZ})}, timeout=30)
    for response in (as_string, as_form):
        assert response.status_code == 202, response.text
        tracking_id = response.json()["tracking_id"]
        status_url = f"{api_url}/regions/{tracking_id}/status"
        wait_for(lambda url=status_url: requests.get(url, timeout=10).json()["state"] == "SUCCESS", 120,
                 message="the job")
        result = requests.get(f"{api_url}/regions/{tracking_id}/result/wit9_img9/annotations.json", timeout=10)
        assert result.status_code == 200 and result.json()[0]["doc_uid"] == "wit9_img9"
    # clear by age: both jobs ended, so days_before=0 removes them
    time.sleep(0.05)
    cleared = requests.post(f"{api_url}/regions/monitor/clear", data={"days_before": "0"}, timeout=10).json()
    assert cleared["cleared"] == 2
    refused = requests.post(f"{api_url}/regions/monitor/clear", data={"days_before": "soon"}, timeout=10)
    assert refused.status_code == 400


def test_a_failed_job_is_announced_as_error_with_its_message(api_url, front):
    front.add("/media/broken.jpg", b"not an image", "image/jpeg")
    response = requests.post(f"{api_url}/regions/start", json={
        "experiment_id": "e", "notify_url": front.url("/regions/12/notify?token=x"),
        "documents": [{"type": "img", "src": front.url("/media/broken.jpg"), "uid": "bad"}],
        "parameters": {}}, timeout=30)
    assert response.status_code == 202
    events = wait_for(lambda: (n := notifications(front)) and n[-1]["event"] in ("SUCCESS", "ERROR") and n,
                      120, message="the ERROR callback")
    assert events[-1]["event"] == "ERROR" and "no image could be processed" in events[-1]["error"]


def test_only_listed_private_hosts_pass_the_guard(compat_env, front):
    """127.0.0.1 is allowed by ALLOWED_SOURCE_HOSTS; `localhost` (the same machine) is not."""
    from api import create_app

    client = create_app(load_config(compat_env)).test_client()
    allowed = client.post("/regions/start", json={"documents": [{"type": "img", "src": front.url("/media/single.jpg")}],
                                                  "notify_url": front.url("/regions/12/notify")})
    assert allowed.status_code == 202, allowed.data
    for field, body in (
        ("documents[0].src", {"documents": [{"type": "img", "src": front.url("/media/single.jpg").replace(
            "127.0.0.1", "localhost")}]}),
        ("notify_url", {"documents": [{"type": "img", "src": front.url("/media/single.jpg")}],
                        "notify_url": "http://localhost:9/notify"}),
    ):
        response = client.post("/regions/start", json=body)
        assert response.status_code == 400 and response.get_json()["error"]["field"] == field, response.data
