"""aikon-demo, aikon-api's front, switching to this API: a client of our own that makes its calls, with
its payloads, and reads the answers as its code reads them, against the real API (HTTP), Redis, a
regions worker and the callback sender (the setting of tests/test_discover_compat.py, reused).

Written from Aikon-platform/aikon-demo at 2b3047b (front/), with aikon-api at 2ad5f62 (its `api`
submodule) for what the answers were:

- models: GET {API_URL}/region_extraction/models, read as {stem: {name, model, desc}} and offered as
  (info["model"], "name (desc)") (tasking/models.py:386-400; aikon-api region_extraction/routes.py:146-148,
  shared/utils/fileutils.py:479-510). `regions` is called `region_extraction` (tasking/models.py:453-460).
- start: POST .../region_extraction/start, JSON {experiment_id, notify_url, parameters: {model: <stem>,
  postprocess: {squarify, h_margin, v_margin}}, documents: [{type, src, uid}]}, the uid being
  sanitize_str(src), e.g. `127001PORT^manifestjson` (tasking/models.py:466-511, regions/forms.py:59-68,
  datasets/models.py:65-75 and 354-355, datasets/utils.py:87-96); only `tracking_id` is read (501-502).
- callbacks: POST <front>/regions/<pk>/watch?token=<uuid5> (tasking/models.py:216-220, regions/urls.py,
  tasking/views.py:228-249); STARTED, SUCCESS and ERROR are acted on, the rest ignored (tasking/models.py:288-302).
- SUCCESS: output.annotations, then each output.results_url[].result_url fetched and filed under the
  URL's last segment, the boxes being every value's pages summed (regions/models.py:36-90 and 123-129;
  aikon-api region_extraction.py:156-172); output.dataset_url kept (tasking/models.py:560-578), then
  GET it and, per document of its uid, download `download` and unzip it keeping .json and images
  (datasets/models.py:357-391 and 134-149, datasets/utils.py:31-84); images from `images.json`, else
  `images/` (datasets/models.py:180-189); crops cut from `relative` boxes, found by doc_uid and
  `source` (datasets/models.py:510-615); ERROR: `error` written to the task's log (tasking/models.py:257-271).
- progress: GET .../region_extraction/<tracking_id>/status merged as {"status": <front's>, **body}; its
  `log` object's `infos` appended to the task log, `progress` and `errors` shown (tasking/models.py:538-558,
  tasking/views.py:179-197, interface/src/shared/components/ProgressTracker.svelte:5-9, 18, 59-77; aikon-api
  shared/routes.py:173-194 and shared/utils/logging.py:388-422).
- cancel: POST .../<tracking_id>/cancel, answer not read (tasking/models.py:513-536).
- monitoring: GET .../monitor; POST .../monitor/clear (form days_before); POST .../monitor/clear/<tracking_id>
  (tasking/models.py:580-642).
- delete: POST {API_URL}/regions/<doc_ref>/delete[?model_name=] is aikon's call (Aikon-platform/aikon
  front/app/regions/tasks.py:16-20), aikon-api's route under region_extraction too (routes.py:163-180);
  GET /datasets/dataset/<uid> is aikon-api's dataset route (shared/dataset/routes.py:19-25).
- similarity (front/similarity/models.py, its Similarity being regions/models.py:AbstractAPITaskOnCrops,
  similarity/forms.py:118-150): POST {API_URL}/similarity/start, JSON {experiment_id, notify_url,
  parameters: {feat_net, use_transpositions, algorithm, transpositions?}, documents, crops: <the regions
  task's bounding boxes>} (tasking/models.py:455-495, regions/models.py:194-199; aikon-api
  shared/routes.py:58-135 reads `crops`, similarity/routes.py:80-105 the parameters). SUCCESS: the
  output.results_url entry whose doc_pair is "dataset" fetched as {index, pairs} (similarity/models.py
  :26-49; aikon-api similarity.py get_results_url and store: one {doc_pair: "<a>-<b>"} per pair of
  documents besides it), dataset_url kept, the crops cut again, then index.images given the URLs of
  the front's crops by (doc_uid, id) and pairs read as (index a, index b, score, *transpositions)
  (similarity/models.py:98-141, datasets/models.py:415-488). Not replayed: the form's model list and
  the progress poll, whose paths (/similarity/models, /similarity/<id>/status) this API's own clients
  read in their shape; `feat_net` is sent as `local`, the local-features entry of /similarity/models.
"""
from __future__ import annotations

import io
import json
import re
import threading
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from PIL import Image as PImage
from werkzeug.serving import make_server

from api.platform.aikon import client_uid, mint_uid
from api.platform.config import load_config
from tests.support.httpserver import Request, Response
from tests.support.platform import wait_for
from tests.support.synthetic_pages import make_page
from tests.test_discover_compat import api_url, compat_env  # noqa: F401 - the API, worker and sender they start

MODEL_STEM = "illustrations"  # compat_env installs illustrations.pt
SECRET_KEY = "aikon-demo-test-secret"
IMG_EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".tiff"}  # datasets/utils.py:12
SHEET = 4  # pages a side


def sheet(seed: int, cell: int = 200 * SHEET) -> bytes:
    """A scan of SHEET x SHEET synthetic pages. aikon-demo sends no input size, so regions runs at its
    default, 640 = SHEET x the 160 the test detector was trained at: each page is seen at its size."""
    image = PImage.new("RGB", (SHEET * cell, SHEET * cell), (236, 228, 210))
    for k in range(SHEET * SHEET):
        page = make_page(seed * 100 + k).image
        scale = cell / max(page.size)
        image.paste(page.resize((int(page.width * scale), int(page.height * scale))), ((k % SHEET) * cell,
                                                                                      (k // SHEET) * cell))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def manifest(server, name: str, pages: list[str]) -> str:
    canvases = [{"@id": server.url(f"/canvas/{name}/{i}"), "@type": "sc:Canvas", "width": 1000, "height": 1400,
                 "images": [{"@type": "oa:Annotation", "motivation": "sc:painting",
                             "on": server.url(f"/canvas/{name}/{i}"),
                             "resource": {"@id": server.url(page), "@type": "dctypes:Image"}}]}
                for i, page in enumerate(pages)]
    body = {"@context": "http://iiif.io/api/presentation/2/context.json", "@id": server.url(f"/{name}.json"),
            "@type": "sc:Manifest", "label": name, "sequences": [{"@type": "sc:Sequence", "canvases": canvases}]}
    return server.add(f"/{name}.json", json.dumps(body).encode(), "application/json")


@pytest.fixture
def aikon_front(http_server):
    """The front's media: two IIIF manifests, of two pages and of one."""
    for seed, name in ((92, "page1"), (93, "page2"), (94, "single")):
        http_server.add(f"/media/aikon/{name}.jpg", sheet(seed), "image/jpeg")
    http_server.manifests = [manifest(http_server, "manifest1", ["/media/aikon/page1.jpg", "/media/aikon/page2.jpg"]),
                             manifest(http_server, "manifest2", ["/media/aikon/single.jpg"])]
    return http_server


# -- aikon-demo, replayed -----------------------------------------------------------------------------------
def sanitize_str(string: str) -> str:
    """datasets/utils.py:87-96."""
    return re.sub(r"^https?\:\/\/|www\.|\.|:|%|\s", "", string.strip()).replace("/", "^").replace(" ", "_")


@dataclass
class Image:
    id: str
    src: str
    path: Path


@dataclass
class Document:
    """datasets/models.py:58-189 (an IIIF document of a dataset)."""

    dtype: str
    src: str
    data_dir: Path

    @property
    def uid(self) -> str:
        return sanitize_str(self.src)

    @property
    def path(self) -> Path:
        return self.data_dir / "documents" / self.uid

    def to_dict(self) -> dict:
        return {"type": self.dtype, "src": str(self.src), "uid": str(self.uid)}

    def is_extracted(self) -> bool:
        if not self.path.exists():
            self.path.mkdir(parents=True, exist_ok=True)
            return False
        return (self.path / "extracted").exists()

    def extract_from_zip(self, source_zip: str) -> None:
        """unzip_on_the_fly (datasets/utils.py:31-84) unzips while downloading: a stored entry is only
        readable so if its sizes are in its local header (no data descriptor, flag bit 3)."""
        if self.is_extracted():
            return
        response = requests.get(source_zip, timeout=30)
        response.raise_for_status()
        extracted = []
        with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
            for info in archive.infolist():
                assert not info.flag_bits & 0x08, f"{info.filename}: sizes after the data (data descriptor)"
                path = self.path / info.filename
                if "/." in "/" + info.filename or path.suffix.lower() not in {".json", *IMG_EXTENSIONS}:
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(archive.read(info))
                extracted.append(path)
        if not extracted:
            raise Exception("No files were extracted")
        (self.path / "extracted").touch()

    @property
    def images(self) -> list[Image]:
        info = self.path / "images.json"
        if info.exists():
            return [Image(im["id"], im["src"], self.path / im["path"]) for im in json.loads(info.read_text())]
        return [Image(str(p.relative_to(self.path / "images")), str(p.relative_to(self.path / "images")), p)
                for p in (self.path / "images").rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS]


@dataclass
class RegionsTask:
    """regions.models.Regions on an IIIF dataset, with the fields tasking/models.py gives it."""

    documents: list[Document]
    parameters: dict
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    status: str = "PENDING"
    is_finished: bool = False
    api_tracking_id: str | None = None
    regions: dict | None = None
    dataset_api_url: str | None = None
    full_log: str = ""
    notifications: list[dict] = field(default_factory=list)


class AikonDemo:
    """The code of aikon-demo that talks to the API (see the module docstring for where each part is)."""

    def __init__(self, api: str, server, data_dir: Path):
        self.api_endpoint_prefix = f"{api}/region_extraction"
        self.server = server
        self.data_dir = data_dir
        self.crops_path = data_dir / "crops"
        self.failures: list[str] = []

    # tasking/models.py
    def get_available_models(self) -> list[tuple[str, str]]:
        response = requests.get(f"{self.api_endpoint_prefix}/models", timeout=10)
        response.raise_for_status()
        models = response.json()
        return [(info["model"], f"{info['name']} ({info['desc']})") for info in models.values()]

    def get_token(self, task: RegionsTask) -> str:
        return uuid.uuid5(uuid.NAMESPACE_URL, SECRET_KEY[:10] + str(task.id)).hex

    def get_notify_url(self, task: RegionsTask) -> str:
        return self.server.url(f"/regions/{task.id}/watch?token={self.get_token(task)}")

    def start_task(self, task: RegionsTask) -> requests.Response:
        self.server.routes[f"/regions/{task.id}/watch"] = lambda request: self.watch(task, request)
        data = {"experiment_id": str(task.id), "notify_url": self.get_notify_url(task),
                "parameters": task.parameters, "documents": [doc.to_dict() for doc in task.documents]}
        api_query = requests.post(f"{self.api_endpoint_prefix}/start", json=data, files=None, timeout=30)
        try:
            task.api_tracking_id = api_query.json()["tracking_id"]
        except Exception as e:  # noqa: BLE001 - aikon-demo's own catch
            task.full_log += f"Request for task failed with {api_query.status_code}: {api_query.text}\n{e!r}\n"
            task.status = "ERROR"
            task.is_finished = True
        return api_query

    def cancel_task(self, task: RegionsTask) -> None:
        requests.post(f"{self.api_endpoint_prefix}/{task.api_tracking_id}/cancel", timeout=10)

    def get_progress(self, task: RegionsTask) -> dict:
        api_res = requests.get(f"{self.api_endpoint_prefix}/{task.api_tracking_id}/status", timeout=10)
        return {"status": task.status, **api_res.json()}

    def progress_view(self, task: RegionsTask) -> dict:
        """tasking/views.py:179-197 (the tracker polls it every second)."""
        progress_data = self.get_progress(task)
        progress_logs = progress_data.get("log", {})
        if progress_logs:
            if progress_info := progress_logs.get("infos", []):
                for info in progress_info:
                    if info not in task.full_log:
                        task.full_log += f"{info}\n"
        return {"is_finished": task.is_finished, **progress_data}

    def get_api_monitoring(self) -> dict:
        return requests.get(f"{self.api_endpoint_prefix}/monitor", timeout=10).json()

    def clear_api_old_tasks(self, days_before: int = 30) -> dict:
        return requests.post(f"{self.api_endpoint_prefix}/monitor/clear", data={"days_before": days_before},
                             timeout=10).json()

    def clear_api_task(self, tracking_id: str) -> dict:
        return requests.post(f"{self.api_endpoint_prefix}/monitor/clear/{tracking_id}", timeout=10).json()

    # tasking/views.py:228-249, tasking/models.py:288-302
    def watch(self, task: RegionsTask, request: Request) -> Response:
        token = dict(part.split("=", 1) for part in request.path.partition("?")[2].split("&") if "=" in part)
        if token.get("token") != self.get_token(task):
            return Response(json.dumps({"success": False, "error": "Invalid token"}).encode(), 200, "application/json")
        data = json.loads(request.body.decode("utf-8"))
        assert "event" in data
        task.notifications.append(data)
        try:
            self.receive_notification(task, data)
        except Exception as exc:  # noqa: BLE001 - Django answers 500; the sender sends it again
            self.failures.append(repr(exc))
            return Response(b"server error", 500, "text/plain")
        return Response(json.dumps({"success": True}).encode(), 200, "application/json")

    def receive_notification(self, task: RegionsTask, data: dict) -> None:
        event = data["event"]
        if event == "STARTED":
            task.status = "PROGRESS"
        elif event == "SUCCESS":
            self.on_task_success(task, data)
        elif event == "ERROR":
            self.on_task_error(task, data)

    def on_task_error(self, task: RegionsTask, data: dict) -> None:
        self.terminate_task(task, "ERROR", data.get("error", "Unknown error"))

    def terminate_task(self, task: RegionsTask, status: str = "SUCCESS", error: str | None = None) -> None:
        task.status = status
        if error:
            task.full_log += error
        task.is_finished = True

    # regions/models.py:36-90
    def on_task_success(self, task: RegionsTask, data: dict) -> None:
        task.status = "PROCESSING RESULTS"
        task.regions = {}
        output = data.get("output", {})
        if not output:
            self.on_task_error(task, {"error": f"Incorrect output data:\n{data}"})
            return
        task.regions = output.get("annotations", {})
        for doc_results in output.get("results_url", []):
            annotation_url = doc_results.get("result_url")
            try:
                response = requests.get(annotation_url, stream=True, timeout=10)
                response.raise_for_status()
                extraction_ref = annotation_url.split("/")[-1]
                task.regions[extraction_ref] = response.json()
            except Exception:  # noqa: BLE001 - aikon-demo's own catch
                continue
        task.dataset_api_url = output.get("dataset_url")  # prepare_dataset_from_api
        result = self.apply_cropping(task, self.get_bounding_boxes(task))
        if "error" in result:
            self.on_task_error(task, result)
            return
        self.terminate_task(task, "SUCCESS")

    def get_bounding_boxes(self, task: RegionsTask) -> list[dict]:
        return [] if task.regions is None else sum(task.regions.values(), [])

    def get_bounding_boxes_for_display(self, task: RegionsTask) -> list[dict]:
        doc_image_map = self.get_doc_image_mapping(task)
        shown = []
        for image in self.get_bounding_boxes(task):
            source_img = doc_image_map.get(image.get("doc_uid"), {}).get(image.get("source", ""))
            shown.append({"image": source_img, "crops": [
                {"x": c["relative"]["x1"] * 100, "y": c["relative"]["y1"] * 100,
                 "width": c["relative"]["width"] * 100, "height": c["relative"]["height"] * 100,
                 "path": self.crops_path / image["doc_uid"] / f"{c['crop_id']}.jpg"} for c in image.get("crops", [])]})
        return shown

    # datasets/models.py:357-455 and 510-615
    def get_doc_image_mapping(self, task: RegionsTask) -> dict[str, dict[str, Image]]:
        need_extraction = {doc.uid: doc for doc in task.documents if not doc.is_extracted()}
        if need_extraction:
            api_info = requests.get(task.dataset_api_url, timeout=10).json()
            for doc in api_info.get("documents", []):
                if doc["uid"] not in need_extraction:
                    continue
                need_extraction[doc["uid"]].extract_from_zip(doc["download"])
                del need_extraction[doc["uid"]]
        return {doc.uid: {im.id: im for im in doc.images} for doc in task.documents}

    def apply_cropping(self, task: RegionsTask, crops: list[dict]) -> dict:
        try:
            docs = self.get_doc_image_mapping(task)
        except Exception as e:  # noqa: BLE001 - aikon-demo's own catch
            return {"error": f"Error extracting images:\n{e!r}"}
        extracted = 0
        for image in crops:
            img_name, page_crops = image.get("source", ""), image.get("crops", [])
            doc_uid = image.get("doc_uid", None)
            imgs = docs.get(doc_uid, None)
            if imgs is None:
                return {"error": f"Document {doc_uid} not found"}
            img = imgs.get(img_name, None)
            if img is None:
                return {"error": f"Image {img_name} not found in document {doc_uid}"}
            crops_path = self.crops_path / doc_uid
            crops_path.mkdir(parents=True, exist_ok=True)
            with PImage.open(img.path) as picture:
                for idx, crop in enumerate(page_crops):
                    crop_id = crop.get("crop_id", "") or f"{Path(img_name).stem}_crop_{idx + 1}"
                    bbox = crop["relative"]
                    cropped = picture.crop((bbox["x1"] * picture.size[0], bbox["y1"] * picture.size[1],
                                            bbox["x2"] * picture.size[0], bbox["y2"] * picture.size[1])).convert("RGB")
                    if cropped.size[0] == 0 or cropped.size[1] == 0:
                        continue
                    cropped.save(crops_path / f"{crop_id}.jpg", "JPEG")
                    extracted += 1
        if extracted == 0:
            return {"error": f"No regions were successfully processed in:\n{crops}"}
        return {"success": "Regions processed successfully"}


# -- the tests --------------------------------------------------------------------------------------------
def test_aikon_demo_extracts_regions_through_the_alias(api_url, aikon_front, tmp_path, data_folder):  # noqa: F811
    front = AikonDemo(api_url, aikon_front, tmp_path / "front")
    documents = [Document("iiif", src, front.data_dir) for src in aikon_front.manifests]
    assert all("^" in doc.uid for doc in documents)  # not file names here: minted, and given back

    # the model form: aikon's shape at region_extraction, discover's unchanged at regions
    choices = front.get_available_models()
    assert [model for model, _ in choices] == [MODEL_STEM] and choices[0][1].startswith(f"{MODEL_STEM} (")
    discover_models = requests.get(f"{api_url}/regions/models", timeout=10).json()
    assert list(discover_models) == [f"{MODEL_STEM}.pt"] and isinstance(discover_models[f"{MODEL_STEM}.pt"], str)

    task = RegionsTask(documents, {"model": choices[0][0],  # regions/forms.py:59-68, the form's defaults
                                   "postprocess": {"squarify": False, "h_margin": 0 / 100.0, "v_margin": 0 / 100.0}})
    started = front.start_task(task)
    assert started.status_code == 200 and task.api_tracking_id and task.status == "PENDING", started.text

    seen_running: list[dict] = []

    def finished():
        progress = front.progress_view(task)
        assert isinstance(progress["log"], dict)
        if progress["log"].get("progress"):
            seen_running.append(progress["log"])
        return task.is_finished

    wait_for(finished, 180, 0.2, message="aikon-demo's task to finish")
    assert not front.failures and task.status == "SUCCESS", (task.status, task.full_log, front.failures)
    assert "Processing images" in [p["context"] for log in seen_running for p in log["progress"]] or not seen_running
    assert all(isinstance(p["current"], int) and p["total"] == 3 for log in seen_running for p in log["progress"])
    assert f"document {mint_uid(documents[0].uid)}: 2 image(s)" in task.full_log  # log.infos, appended
    body = requests.get(f"{api_url}/region_extraction/{task.api_tracking_id}/status", timeout=10).json()
    assert "status" not in body  # merged under the front's own status, which it must not replace

    # the SUCCESS: discover's fields, and results_url whose last segments are the annotations' keys
    success = task.notifications[-1]
    output = success["output"]
    assert {"annotations", "dataset_url", "results_url"} <= set(output)
    minted = {mint_uid(doc.uid) for doc in documents}
    assert set(output["annotations"]) == minted
    assert [r["doc_id"] for r in output["results_url"]] == list(output["annotations"])
    assert set(task.regions) == minted  # each document once: no page counted twice
    pages = front.get_bounding_boxes(task)
    assert len(pages) == 3 and {p["doc_uid"] for p in pages} == {doc.uid for doc in documents}
    boxes = sum(len(p["crops"]) for p in pages)
    assert boxes > 0

    # crops cut by the front from the images the dataset's zips gave it
    crops = sorted(front.crops_path.rglob("*.jpg"))
    assert len(crops) == boxes and {c.parent.name for c in crops} <= {doc.uid for doc in documents}
    for doc in documents:
        assert json.loads((doc.path / "images.json").read_text()) and (doc.path / "extracted").exists()
    assert [len(doc.images) for doc in documents] == [2, 1]
    assert documents[0].images[0].path.read_bytes() == sheet(92)  # the bytes the front served
    display = front.get_bounding_boxes_for_display(task)
    assert all(item["image"] is not None for item in display) and all(
        crop["path"].is_file() for item in display for crop in item["crops"])

    # the status once ended, as the tracker reads it
    log = front.progress_view(task)["log"]
    assert log["status"] == "SUCCESS" and "progress" not in log and all(isinstance(i, str) for i in log["infos"])
    assert not log.get("errors")

    # aikon-api's dataset route: its shape, the client's uids, aikon zips
    dataset = requests.get(f"{api_url}/datasets/dataset/{task.api_tracking_id}", timeout=10).json()
    assert dataset["uid"] == task.api_tracking_id
    assert [d["uid"] for d in dataset["documents"]] == [doc.uid for doc in documents]
    assert all(d["download"].endswith("/images.zip") for d in dataset["documents"])

    # cancel (read by nobody), monitoring
    front.cancel_task(task)
    monitor = front.get_api_monitoring()
    assert monitor["total_size"] > 0 and "qsizes" in monitor

    # aikon's delete: the annotations of one model, then the document's record
    first = documents[0].uid
    assert requests.post(f"{api_url}/regions/{first}/delete", params={"model_name": "other"},
                         timeout=10).json() == {"cleared_annotations": 0}
    cleared = requests.post(f"{api_url}/region_extraction/{first}/delete", params={"model_name": MODEL_STEM},
                            timeout=10)
    assert cleared.status_code == 200 and cleared.json() == {"cleared_annotations": 1}, cleared.text
    gone = requests.get(output["results_url"][0]["result_url"], timeout=10)
    assert gone.status_code == 404
    assert requests.get(output["results_url"][1]["result_url"], timeout=10).status_code == 200
    assert requests.post(f"{api_url}/regions/{first}/delete", timeout=10).json() == {"cleared_document": 1}
    assert requests.post(f"{api_url}/regions/{first}/delete", timeout=10).status_code == 404

    assert front.clear_api_task(task.api_tracking_id)["cleared"] == 1
    assert front.clear_api_old_tasks()["cleared"] == 0


def test_aikon_demo_sees_a_refused_start_and_a_failed_job(api_url, aikon_front, tmp_path):  # noqa: F811
    front = AikonDemo(api_url, aikon_front, tmp_path / "front")
    squarify = {"squarify": True, "h_margin": 0.05, "v_margin": 0.05}
    squarified = RegionsTask([Document("iiif", aikon_front.manifests[1], front.data_dir)],
                             {"model": MODEL_STEM, "postprocess": squarify})
    front.start_task(squarified)
    assert squarified.status == "ERROR" and "parameters.postprocess" in squarified.full_log

    aikon_front.add("/media/aikon/broken.jpg", b"not an image", "image/jpeg")
    broken = RegionsTask([Document("iiif", manifest(aikon_front, "broken", ["/media/aikon/broken.jpg"]),
                                   front.data_dir)], {"model": MODEL_STEM, "postprocess": {}})
    front.start_task(broken)
    wait_for(lambda: broken.is_finished, 120, message="the ERROR callback")
    assert broken.status == "ERROR" and "no image could be processed" in broken.full_log, broken.full_log
    log = front.progress_view(broken)["log"]
    assert log["status"] == "ERROR" and any("no image could be processed" in e for e in log["errors"])
    assert all(isinstance(e, str) for e in log["errors"])


def test_discover_answers_stay_as_they_were(compat_env, aikon_front):  # noqa: F811
    """The alias adds routes; /regions/* answers as before: status's `log` a list, start 202."""
    from api import create_app

    client = create_app(load_config(compat_env)).test_client()
    body = {"documents": [{"type": "iiif", "src": aikon_front.manifests[1], "uid": "wit1_man1"}],
            "parameters": {"model": f"{MODEL_STEM}.pt"}}
    started = client.post("/regions/start", json=body)
    assert started.status_code == 202
    status = client.get(f"/regions/{started.get_json()['tracking_id']}/status").get_json()
    assert isinstance(status["log"], list)
    alias = client.get(f"/region_extraction/{started.get_json()['tracking_id']}/status").get_json()
    assert alias["tracking_id"] == status["tracking_id"] and alias["log"]["status"] == "PENDING"
    # the rest of /regions/* is there under region_extraction too
    assert client.get("/region_extraction/qsizes").get_json()["queue"] == "regions"
    refused = client.post("/regions/start", json={**body, "parameters": {"model": MODEL_STEM}})
    assert refused.status_code == 400  # stems are aikon's: /regions/start still wants the file


@pytest.mark.parametrize("uid", ["127001PORT^manifestjson", "a.b^c", "x..5e^", "wit1_man1", "gallicabnffr^ark^é"])
def test_minted_uids_are_file_names_and_give_the_client_uid_back(uid):
    from api.platform.inputs.names import SAFE_NAME

    minted = mint_uid(uid)
    assert SAFE_NAME.match(minted) and client_uid(minted) == uid
    assert (minted == uid) == bool(SAFE_NAME.match(uid))


# -- similarity on the crops of a regions task, as aikon-demo chains them -----------------------------------
@pytest.fixture
def similarity_api(compat_env, procs):  # noqa: F811
    """The API with regions and similarity, a worker for each, and the callback sender."""
    from api import create_app

    env = compat_env
    for target in (env, procs.env):
        target["INSTALLED_APPS"] = "regions,similarity"
    server = make_server("127.0.0.1", 0, create_app(load_config(env)), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    procs.worker(queue="regions", timeout=120)
    procs.worker(queue="similarity", timeout=120)
    procs.sender()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def reprinted_front(http_server):
    """Two books, each an IIIF manifest of one scan: the second a smaller, recompressed copy of the
    first (the same pictures reprinted elsewhere)."""
    original = PImage.open(io.BytesIO(sheet(95)))
    copy = original.resize((original.width * 9 // 10, original.height * 9 // 10), PImage.Resampling.LANCZOS)
    buffer = io.BytesIO()
    copy.save(buffer, "JPEG", quality=70)
    http_server.add("/media/aikon/first.jpg", sheet(95), "image/jpeg")
    http_server.add("/media/aikon/reprint.jpg", buffer.getvalue(), "image/jpeg")
    http_server.manifests = [manifest(http_server, "book1", ["/media/aikon/first.jpg"]),
                             manifest(http_server, "book2", ["/media/aikon/reprint.jpg"])]
    return http_server


@dataclass
class SimilarityTask(RegionsTask):
    """similarity.models.Similarity: a task on a dataset, with `crops` a regions task (or None)."""

    crops: RegionsTask | None = None
    similarity: dict | None = None
    index: dict | None = None
    pairs: list | None = None


class AikonSimilarity(AikonDemo):
    """aikon-demo's similarity task, over the same data folder as its regions tasks (one dataset)."""

    def __init__(self, api: str, server, data_dir: Path):
        super().__init__(api, server, data_dir)
        self.api_endpoint_prefix = f"{api}/similarity"

    def get_notify_url(self, task) -> str:
        return self.server.url(f"/similarity/{task.id}/watch?token={self.get_token(task)}")

    def start_task(self, task) -> requests.Response:  # tasking/models.py:455-495 with get_task_kwargs
        self.server.routes[f"/similarity/{task.id}/watch"] = lambda request: self.watch(task, request)
        kwargs = {"parameters": task.parameters, "documents": [doc.to_dict() for doc in task.documents]}
        if task.crops:
            kwargs["crops"] = self.get_bounding_boxes(task.crops)
        data = {"experiment_id": str(task.id), "notify_url": self.get_notify_url(task), **kwargs}
        api_query = requests.post(f"{self.api_endpoint_prefix}/start", json=data, files=None, timeout=30)
        try:
            task.api_tracking_id = api_query.json()["tracking_id"]
        except Exception as e:  # noqa: BLE001 - aikon-demo's own catch
            task.full_log += f"Request for task failed with {api_query.status_code}: {api_query.text}\n{e!r}\n"
            task.status = "ERROR"
            task.is_finished = True
        return api_query

    def on_task_success(self, task, data: dict) -> None:  # similarity/models.py:62-87
        task.status = "PROCESSING RESULTS"
        output = data.get("output", {})
        if not output:
            self.on_task_error(task, {"error": "No output data"})
            return
        self.save_similarity(task, output)
        task.dataset_api_url = output.get("dataset_url")  # prepare_dataset_from_api
        if task.crops:
            result = self.apply_cropping(task, self.get_bounding_boxes(task.crops))
            if "error" in result:
                self.on_task_error(task, {"error": f"Could not crop images from {task.crops}:\n{result}"})
                return
        self.prepare_sim_browser(task)
        self.terminate_task(task, "SUCCESS")

    def save_similarity(self, task, output: dict) -> None:
        similarity = output.get("annotations", {})
        for result in output.get("results_url", []):
            if result.get("doc_pair") != "dataset":
                continue
            response = requests.get(result.get("result_url", ""), stream=True, timeout=10)
            response.raise_for_status()
            similarity = response.json()
        task.similarity = similarity

    def prepare_sim_browser(self, task) -> None:
        task.index = task.similarity.get("index", {})
        task.pairs = task.similarity.get("pairs", [])
        for im in task.index.get("images", []):  # datasets/models.py:473-488, crops: get_url_for_crop
            im["url"] = self.crops_path / im["doc_uid"] / f"{im['id']}.jpg"

    def get_similarity_matrix_for_display(self, task) -> list[dict]:
        images = task.index.get("images", [])
        similarities: dict = {}
        for q_idx, s_idx, score, *_tr in task.pairs:
            for img1, img2 in [(images[q_idx], images[s_idx]), (images[s_idx], images[q_idx])]:
                if img1["id"] not in similarities:
                    similarities[img1["id"]] = {"query": img1.copy(), "sim": []}
                sim_img = img2.copy()
                sim_img["score"] = float(score)
                similarities[img1["id"]]["sim"].append(sim_img)
        return list(similarities.values())


def test_aikon_demo_compares_the_crops_of_its_regions_task(similarity_api, reprinted_front, tmp_path):
    api = similarity_api
    regions = AikonDemo(api, reprinted_front, tmp_path / "front")
    documents = [Document("iiif", src, regions.data_dir) for src in reprinted_front.manifests]
    extraction = RegionsTask(documents, {"model": MODEL_STEM, "postprocess": {"squarify": False, "h_margin": 0.0,
                                                                              "v_margin": 0.0}})
    regions.start_task(extraction)
    wait_for(lambda: extraction.is_finished, 180, 0.2, message="the regions task")
    assert extraction.status == "SUCCESS", (extraction.full_log, regions.failures)
    boxes = regions.get_bounding_boxes(extraction)
    n_crops = sum(len(page["crops"]) for page in boxes)
    assert n_crops >= 4 and {page["doc_uid"] for page in boxes} == {doc.uid for doc in documents}

    # similarity/forms.py: the cosine form with transpositions, on the regions task's crops
    front = AikonSimilarity(api, reprinted_front, regions.data_dir)
    task = SimilarityTask(documents, {"feat_net": "local", "use_transpositions": True, "algorithm": "cosine",
                                      "transpositions": ["none", "rot90", "rot270", "hflip", "vflip"]},
                          crops=extraction)
    started = front.start_task(task)
    assert started.status_code == 200 and task.api_tracking_id, started.text
    wait_for(lambda: task.is_finished, 240, 0.2, message="the similarity task")
    assert not front.failures and task.status == "SUCCESS", (task.status, task.full_log, front.failures)

    # SUCCESS: the demo's own output, and results_url as aikon-api gave it
    output = task.notifications[-1]["output"]
    assert {"pairs", "clusters", "per_document", "pairs_url", "contact_sheet", "dataset_url"} <= set(output)
    assert output["summary"]["items"] == n_crops and output["summary"]["documents"] == 2  # the crops, not pages
    names = [r["doc_pair"] for r in output["results_url"]]
    assert names == [*sorted(output["per_document"]), "dataset"]
    across = "-".join(sorted(mint_uid(doc.uid) for doc in documents))
    assert across in names, names  # the reprinted pictures: pairs between the two books
    per_pair = requests.get(output["results_url"][names.index(across)]["result_url"], timeout=10).json()
    assert "-".join((per_pair["doc_a"], per_pair["doc_b"])) == across and per_pair["pairs"]

    # what aikon-demo keeps: every image of the index is a crop it cut, every pair indexes two of them
    images = task.index["images"]
    assert len(images) == n_crops and all(im["url"].is_file() for im in images)
    assert {im["doc_uid"] for im in images} == {doc.uid for doc in documents}
    assert task.pairs and all(0 <= a < len(images) and 0 <= b < len(images) and 0 < score <= 1
                              for a, b, score, *_ in task.pairs)
    transpositions = task.index["transpositions"]
    assert transpositions == task.parameters["transpositions"]
    assert all(len(pair) == 5 and {pair[3], pair[4]} <= set(range(len(transpositions))) for pair in task.pairs)
    crossing = [(images[a]["doc_uid"], images[b]["doc_uid"]) for a, b, *_ in task.pairs]
    assert sum(da != db for da, db in crossing) >= n_crops // 4, crossing
    shown = front.get_similarity_matrix_for_display(task)
    assert {entry["query"]["id"] for entry in shown} <= {im["id"] for im in images} and shown

    # refused as aikon-api would not have run them: crops no regions job here cut, a backbone not installed
    other = SimilarityTask(documents, {"feat_net": "local", "algorithm": "cosine"}, crops=RegionsTask(
        documents, {}, regions={"x": [{"doc_uid": documents[0].uid, "source": "p", "crops": [
            {"crop_id": "nowhere-0", "relative": {"x1": 0.1, "y1": 0.1, "x2": 0.5, "y2": 0.5}}]}]}))
    front.start_task(other)
    assert other.status == "ERROR" and "crops" in other.full_log and "regions" in other.full_log, other.full_log
    missing = SimilarityTask(documents, {"feat_net": "resnet34", "algorithm": "segswap", "segswap_n": 5})
    refused = front.start_task(missing)
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "parameters.feat_net"

    # this API's own similarity clients: the same route, answered as before
    native = requests.post(f"{api}/similarity/start", timeout=30,
                           json={"parameters": {"regions_job": extraction.api_tracking_id, "feature": "local"}})
    assert native.status_code == 202, native.text
    unknown = requests.post(f"{api}/similarity/start", timeout=30,
                            json={"documents": [documents[0].to_dict()], "parameters": {"bogus": 1}})
    assert unknown.status_code == 400 and unknown.json()["error"]["field"] == "parameters.bogus"
