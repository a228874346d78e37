"""The front without a browser: the callback verifier (against the API's own signer), the job
store's merge and replay rules, the /callback endpoint, forms generated from the API's real
OpenAPI spec, the result views' shapes, and the front's configuration."""
from __future__ import annotations

import json
import math
import re
import time

import pytest

from api.platform.callbacks import signature_headers, verify_signature
from front import create_app
from front.callbacks import sign_headers, verify
from front.config import FrontConfigError, load_config
from front.forms import FormError, demo_form, documents_of
from front.results import arc_path, primitive_shapes, regions_view, relpath_of, view_for
from front.store import JobStore

SECRET = "s3cret"
BODY = json.dumps({"event": "SUCCESS", "tracking_id": "a" * 32}).encode()
TID = "0123456789abcdef0123456789abcdef"


# -- the verifier ----------------------------------------------------------------------------------------
def test_the_verifier_accepts_what_the_api_signs_and_the_api_accepts_what_the_test_signer_makes():
    now = time.time()
    assert verify(SECRET, BODY, signature_headers(SECRET, BODY, now), now=now)
    assert verify_signature(SECRET, BODY, sign_headers(SECRET, BODY, now), now=now)
    lower = {k.lower(): v for k, v in signature_headers(SECRET, BODY, now).items()}
    assert verify(SECRET, BODY, lower, now=now)  # header names are case-insensitive


@pytest.mark.parametrize("case, reason", [
    ("wrong secret", "does not match"),
    ("tampered body", "does not match"),
    ("stale", "from now"),
    ("future", "from now"),
    ("no timestamp", "missing X-Signature-Timestamp"),
    ("no signature", "missing X-Signature"),
    ("no prefix", "does not start with sha256="),
    ("timestamp not a number", "not a unix time"),
    ("non-ascii signature", "does not match"),
    ("signature of another timestamp", "does not match"),
    ("empty secret", "no CALLBACK_SECRET"),
])
def test_the_verifier_refuses_with_a_reason(case, reason):
    now = 1_800_000_000
    headers = signature_headers(SECRET, BODY, now)
    secret, body, at = SECRET, BODY, now
    if case == "wrong secret":
        secret = "other"
    elif case == "tampered body":
        body = BODY.replace(b"SUCCESS", b"SUCCESs")
    elif case == "stale":
        at = now + 301
    elif case == "future":
        at = now - 301
    elif case == "no timestamp":
        del headers["X-Signature-Timestamp"]
    elif case == "no signature":
        del headers["X-Signature"]
    elif case == "no prefix":
        headers["X-Signature"] = headers["X-Signature"].removeprefix("sha256=")
    elif case == "timestamp not a number":
        headers["X-Signature-Timestamp"] = "12ab"
    elif case == "non-ascii signature":
        headers["X-Signature"] = "sha256=é" + headers["X-Signature"][8:]
    elif case == "signature of another timestamp":
        headers["X-Signature-Timestamp"] = str(now + 1)
    elif case == "empty secret":
        secret = ""
    verdict = verify(secret, body, headers, now=at, max_age_s=300)
    assert not verdict and reason in verdict.reason
    assert verify(SECRET, BODY, signature_headers(SECRET, BODY, now), now=now + 299, max_age_s=300)


# -- the store --------------------------------------------------------------------------------------------
def test_store_never_moves_an_ended_job_back_nor_progress_backwards(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    store.create(TID, "dummy", inputs=[{"uid": "a"}], parameters={"delay": 1})
    assert store.update(TID, {"state": "STARTED", "progress": {"done": 2, "total": 4}}, "callback")
    assert store.update(TID, {"state": "STARTED", "progress": {"done": 1, "total": 4}}, "callback")
    assert store.get(TID)["progress"]["done"] == 2  # an older PROGRESS arriving late
    assert store.update(TID, {"state": "SUCCESS", "progress": {"done": 4, "total": 4}, "output": {"x": 1}}, "callback")
    assert not store.update(TID, {"state": "STARTED", "progress": {"done": 3, "total": 4}}, "callback")
    assert not store.update(TID, {"state": "FAILURE", "error": "late"}, "callback")
    assert not store.update("f" * 32, {"state": "SUCCESS"}, "callback")  # not one of ours
    assert not store.update(TID, {"state": "WHATEVER"}, "callback")
    job = store.get(TID)
    assert (job["state"], job["output"], job["callbacks"], job["finished"]) == ("SUCCESS", {"x": 1}, 3, True)
    assert job["inputs"] == [{"uid": "a"}] and job["parameters"] == {"delay": 1}
    assert [j["tracking_id"] for j in store.recent()] == [TID]


def test_store_remembers_signatures_and_event_ids_once(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    assert store.remember_signature("abc", 300) and not store.remember_signature("abc", 300)
    assert store.remember_event("e1") and not store.remember_event("e1") and store.remember_event("e2")
    assert not JobStore(tmp_path / "jobs.sqlite3").remember_signature("abc", 300)  # kept on disk


# -- the /callback endpoint -----------------------------------------------------------------------------
@pytest.fixture
def front(tmp_path):
    cfg = load_config({"FRONT_ENV_FILE": "/nonexistent", "API_URL": "http://127.0.0.1:9", "CALLBACK_SECRET": SECRET,
                       "FRONT_PUBLIC_URL": "http://front.example", "FRONT_DATA_FOLDER": str(tmp_path / "front"),
                       "FRONT_STATUS_REFRESH_S": "0"})
    app = create_app(cfg)
    app.testing = True
    return app


def post_event(client, event: dict, secret: str = SECRET, now: float | None = None, headers: dict | None = None):
    body = json.dumps(event).encode()
    signed = headers if headers is not None else sign_headers(secret, body, now)
    return client.post("/callback", data=body, headers={"Content-Type": "application/json", **signed}), signed, body


def test_callback_endpoint_applies_signed_events_and_refuses_forged_stale_and_replayed(front):
    store = front.extensions["front_store"]
    store.create(TID, "dummy")
    client = front.test_client()
    event = {"event": "PROGRESS", "state": "STARTED", "tracking_id": TID, "event_id": "ev1",
             "progress": {"done": 1, "total": 3, "percent": 33.3}}
    response, headers, body = post_event(client, event)
    assert response.status_code == 200 and response.get_json()["status"] == "applied"
    assert store.get(TID)["progress"]["done"] == 1 and store.get(TID)["callbacks"] == 1
    replay = client.post("/callback", data=body, headers={"Content-Type": "application/json", **headers})
    assert replay.status_code == 409
    # the API's sender retrying the same event (new timestamp, new signature): acknowledged, applied once
    time.sleep(1.01)
    retry, _, _ = post_event(client, event)
    assert retry.status_code == 200 and retry.get_json()["status"] == "duplicate"
    assert store.get(TID)["callbacks"] == 1
    forged = {**event, "event": "SUCCESS", "state": "SUCCESS", "event_id": "ev2", "output": {"evil": 1}}
    assert post_event(client, forged, secret="not-the-secret")[0].status_code == 401
    assert post_event(client, forged, now=time.time() - 400)[0].status_code == 401
    assert post_event(client, forged, headers={})[0].status_code == 401
    assert store.get(TID)["state"] == "STARTED" and store.get(TID)["output"] is None
    done, _, _ = post_event(client, {**forged, "output": {"images": {}}})
    assert done.status_code == 200 and store.get(TID)["state"] == "SUCCESS"
    not_json, _, _ = post_event(client, ["not", "an", "event"])
    assert not_json.status_code == 400


def test_without_a_secret_the_front_takes_no_callback(tmp_path):
    app = create_app(load_config({"FRONT_ENV_FILE": "/nonexistent", "FRONT_PUBLIC_URL": "http://front.example",
                                  "FRONT_DATA_FOLDER": str(tmp_path)}))
    app.extensions["front_store"].create(TID, "dummy")
    event = {"event": "SUCCESS", "state": "SUCCESS", "tracking_id": TID, "output": {"forged": True}}
    response = app.test_client().post("/callback", json=event)
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "callbacks_off"
    assert app.extensions["front_store"].get(TID)["state"] == "PENDING"


def test_pages_say_plainly_when_the_api_cannot_be_reached(front):
    client = front.test_client()
    page = client.get("/").data.decode()
    assert "The demos cannot be listed" in page and "cannot reach the API at http://127.0.0.1:9" in page
    assert client.get("/demos/dummy").status_code == 502
    assert "cannot reach the API" in client.get("/demos/dummy").data.decode()
    assert "No job was started from this front yet" in client.get("/jobs").data.decode()
    assert client.get(f"/jobs/dummy/{TID}").status_code == 404  # not one of ours: no proxy to other jobs
    assert client.get(f"/jobs/dummy/{TID}/files/job.json").status_code == 404
    front.extensions["front_store"].create(TID, "dummy")
    state = client.get(f"/jobs/dummy/{TID}/state").get_json()
    assert state["state"] == "PENDING" and "cannot reach the API" in state["problem"]
    assert client.get(f"/jobs/dummy/{TID}/files/../../etc/passwd").status_code == 404
    csp = client.get("/").headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "http" not in csp.split("script-src")[1].split(";")[0]


def test_the_menu_marks_the_page_it_is_on(front):
    """The templates name the views by endpoint (pages.index, pages.history): a renamed view must
    not leave the menu without its current page."""
    client = front.test_client()
    demos, history = client.get("/").data.decode(), client.get("/jobs").data.decode()
    assert re.search(r'href="/"\s+aria-current="page"', demos) and 'href="/jobs" aria-current' not in demos
    assert re.search(r'href="/jobs"\s+aria-current="page"', history) and 'href="/" aria-current' not in history


# -- forms from the API's real spec ------------------------------------------------------------------------
def test_the_form_follows_the_apis_openapi_and_converts_values(client):
    spec = client.get("/openapi.json").get_json()
    form = demo_form(spec, "dummy")
    kinds = {p.name: p.kind for p in form.params}
    assert kinds == {"model": "string", "delay": "number", "fail": "boolean", "disk_full": "boolean",
                     "labels": "array", "folder": "string", **{k: v for k, v in kinds.items() if k not in (
                         "model", "delay", "fail", "disk_full", "labels", "folder")}}
    delay = next(p for p in form.params if p.name == "delay")
    assert (delay.minimum, delay.maximum, delay.default_text) == (0, 60, "0.0")
    values = {"param-delay": "0.5", "param-labels": "a, b,", "param-fail-present": "1", "param-model": " "}
    assert form.parse(values) == {"delay": 0.5, "labels": ["a", "b"], "fail": False}
    assert form.parse({**values, "param-fail": "on"})["fail"] is True
    for bad, message in (("x", "must be a number"), ("61", "at most 60"), ("-1", "at least 0")):
        with pytest.raises(FormError) as caught:
            form.parse({"param-delay": bad})
        assert caught.value.field == "delay" and message in caught.value.message
    assert demo_form(spec, "nope").params == []


def test_documents_from_the_form_get_known_uids_and_bad_urls_are_named():
    assert documents_of("https://a.org/1.jpg\n\n http://b.org/2.png ", "https://c.org/manifest.json") == [
        {"type": "img", "src": "https://a.org/1.jpg", "uid": "url-1"},
        {"type": "img", "src": "http://b.org/2.png", "uid": "url-2"},
        {"type": "iiif", "src": "https://c.org/manifest.json", "uid": "iiif"}]
    with pytest.raises(FormError, match="line 2"):
        documents_of("https://a.org/1.jpg\nfile:///etc/passwd", "")
    with pytest.raises(FormError) as caught:
        documents_of("", "javascript:alert(1)")
    assert caught.value.field == "manifest_url"


def test_the_regions_form_shows_the_preset_of_a_catalog_model_and_how_to_keep_it(front):
    """The form's placeholders are the API's plain defaults (imgsz 640, all classes), yet a job on a
    catalog model gets its preset; the page says so next to the model, from /regions/models?details=1."""
    from flask import render_template
    from markupsafe import escape

    from api.demos.regions import CATALOG
    from api.platform.openapi import spec
    from api.platform.registry import load_demos

    form = demo_form(spec(load_demos(["regions"])), "regions")
    entry = next(e for e in CATALOG if e.default)
    details = {  # as Regions.models() lists a file the catalog installed, and one copied by hand
        entry.file: {"updated": "2026-11-28", "classes": list(entry.classes), "format": "onnx", "task": "detect",
                     "catalog": entry.name, "licence": entry.licence, "preset": dict(entry.preset),
                     "description": entry.description},
        "pages.pt": {"updated": "2026-11-01", "classes": ["illustration", "diagram"], "format": "pt"}}
    hint = "this model's preset: classes [6] (Picture), imgsz 1024 — leave classes and imgsz empty to keep it"
    ours, own = form.model_options(details)
    assert (ours.hint, own.hint) == (hint, "")
    assert ours.label == f"{entry.file} — 2026-11-28 — preset: classes [6] (Picture), imgsz 1024"
    imgsz = next(p for p in form.params if p.name == "imgsz")
    assert imgsz.default_text == "640"  # what the box shows: the preset must be said elsewhere
    with front.test_request_context():
        page = render_template("demo.html", form=form, models=details, problem="", field_error="",
                               values={"param-model": entry.file})
        plain = render_template("demo.html", form=form, models={"pages.pt": "2026-11-01"}, problem="",
                                field_error="", values={})
    assert f'<li data-model="{entry.file}" class="chosen" aria-current="true">' in page
    assert str(escape(hint)) in page and "Licence: AGPL-3.0" in page and f"(catalog <code>{entry.name}</code>)" in page
    assert 'aria-describedby="param-model-help param-model-presets"' in page
    assert f'<option value="{entry.file}" selected>' in page
    assert "preset" not in plain and '<option value="pages.pt" >pages.pt — 2026-11-01</option>' in plain
    # the preset really applies to a job that leaves those boxes empty
    sent = form.parse({"param-model": entry.file, "param-classes": "", "param-imgsz": ""})
    params = load_demos(["regions"])["regions"].preset(sent["model"])
    assert sent == {"model": entry.file} and dict(params) == {"classes": [6], "imgsz": 1024}


# -- result views ------------------------------------------------------------------------------------------
def test_result_urls_become_front_urls_and_regions_pages_use_the_kept_upload():
    assert relpath_of(f"http://api:5000/regions/{TID}/result/p/crops/p-0.jpg", "regions", TID) == "p/crops/p-0.jpg"
    assert relpath_of("https://elsewhere.org/x.jpg", "regions", TID) == ""
    crop = {"crop_id": "p-0", "label": "diagram", "confidence": 0.87,
            "absolute": {"x1": 10, "y1": 20, "x2": 60, "y2": 50, "width": 50, "height": 30}}
    output = {"model": "m.pt", "annotations": {"p": [{"source": "p", "width": 100, "height": 80, "crops": [crop]}],
                                               "book": [{"source": "0001", "width": 9, "height": 9, "crops": []},
                                                        {"source": "0002", "width": 9, "height": 9, "crops": []}]}}
    job = {"app": "regions", "tracking_id": TID, "parameters": {}, "output": output}
    view = view_for("regions", job, lambda rel: f"/f/{rel}", lambda uid: f"/in/{uid}")
    assert view["kind"] == "regions" and view["boxes"] == 1
    page = view["pages"][0]
    assert (page["image"], page["image_is_preview"]) == ("/in/p", False)
    assert page["boxes"][0] == {"crop_id": "p-0", "label": "diagram", "confidence": 0.87, "x": 10, "y": 20,
                                "w": 50, "h": 30, "crop_url": "/f/p/crops/p-0.jpg"}
    assert view["pages"][1]["image"] == "/f/book/previews/0001.jpg"  # a page of a many-page document
    no_crops = regions_view({**job, "parameters": {"crops": False}}, output, lambda r: r, lambda u: "")
    assert no_crops["pages"][0]["boxes"][0]["crop_url"] == ""
    broken = view_for("regions", {**job, "output": {"annotations": {"p": [{"width": 1}]}}}, str, str)
    assert broken["kind"] == "generic" and "could not be drawn" in broken["note"]


def test_primitives_are_drawn_as_the_vectorization_demo_writes_them():
    from api.demos.vectorization.primitives import Primitive
    from api.demos.vectorization.svg import arc_path as api_arc_path

    for start, end in ((10, 100), (300, 500), (0, 360), (45, 270)):
        g = {"cx": 50.0, "cy": 40.0, "r": 20.0, "start": float(start), "end": float(end)}
        ours = [float(v) for v in arc_path(g).replace("M", "").replace("A", "").split()]
        theirs = [float(v) for v in api_arc_path(g).replace("M", "").replace("A", "").split()]
        assert all(math.isclose(a, b, abs_tol=0.01) for a, b in zip(ours, theirs, strict=True))
    data = {"primitives": [Primitive("line", {"x1": 0, "y1": 0, "x2": 5, "y2": 5}, 0.9, "l1").to_dict(),
                           Primitive("circle", {"cx": 1, "cy": 2, "r": 3}, 1.0, "c1").to_dict(),
                           {"type": "spline", "geometry": {}}]}
    shapes = primitive_shapes(data)
    assert [(s["type"], s["tag"], s["id"]) for s in shapes] == [("line", "line", "l1"), ("circle", "circle", "c1")]


def test_sorter_view_shows_photos_groups_as_rows_of_crops_and_moves():
    """The output's shape as api/demos/sorter/pipeline.py builds it (two photos of one table)."""
    base = f"http://api/sorter/{TID}/result/"
    output = {
        "coordinates": "arm", "embedding": "descriptors",
        "warnings": ["2 groups but 1 container(s): group(s) 2 have no container"],
        "images": [{"image": "1500/1500", "width": 640, "height": 480, "picture": base + "1500/1500.jpg"},
                   {"image": "1600/1600", "width": 640, "height": 480, "picture": base + "1600/1600.jpg"}],
        "contact_sheet": base + "contact_sheet.jpg",
        "detections": [{"id": 0, "image": "1500/1500", "class": "item", "score": 0.9, "box": [10, 20, 50, 40]},
                       {"id": 1, "image": "1600/1600", "class": "item", "score": 0.8, "box": [100, 100, 130, 160]},
                       {"id": 2, "image": "1500/1500", "class": "container", "score": 0.95,
                        "box": [300, 300, 400, 400]}],
        "items": [{"id": 0, "detections": [0], "group": 0, "target": 1}, {"id": 1, "detections": [1], "group": 1}],
        "containers": [{"id": 0, "detections": [2], "number": 1}],
        "groups": [{"group": 0, "items": [0], "containers": [1]}, {"group": 1, "items": [1], "containers": []}],
        "pairings": [{"item": 0, "group": 0, "container": 1, "frame": "arm", "item_position": [1500.5, 1210.25],
                      "container_position": [1450.0, 1700.0]}],
        "commands": [[[1500.5, 1210.25], [1450.0, 1700.0]]]}
    kept = {"1500": "/in/1500"}
    view = view_for("sorter", {"app": "sorter", "tracking_id": TID, "output": output}, lambda r: "/f/" + r,
                    lambda uid: kept.get(uid, ""))
    assert view["kind"] == "sorter" and view["sheet"] == "/f/contact_sheet.jpg"
    assert [p["picture"] for p in view["photos"]] == ["/f/1500/1500.jpg", "/f/1600/1600.jpg"]
    first, second = view["groups"]
    assert (first["name"], first["containers"], first["count"]) == ("1", ["C1"], 1)
    assert first["crops"][0]["href"] == "/in/1500" and first["crops"][0]["box"] == (10.0, 20.0, 40.0, 20.0)
    assert second["containers"] == [] and second["crops"][0]["href"] == "/f/1600/1600.jpg"  # no upload kept
    assert view["moves"] == [{"item": 0, "group": 1, "container": "C1", "from": "(1500.5, 1210.2)",
                              "to": "(1450.0, 1700.0)", "frame": "arm"}]
    assert view["unit"] == "servo pulse widths"
    assert (view["n_items"], view["n_containers"], view["n_detections"]) == (2, 1, 3)
    from flask import render_template

    app = create_app(load_config({"FRONT_ENV_FILE": "/nonexistent", "FRONT_DATA_FOLDER": "/tmp/front-render-test"}))
    with app.test_request_context():
        html = render_template("result.html", view={**view, "zip": "/zip"})
    assert html.count('class="crop"') == 2 and html.count("<tr>") == 2 and "no container" in html
    assert "2 items and 1 container\n    (3 detections) in 2 photos" in html


class ResultFolder:
    """Where the similarity demo's own write_results puts its files in the test below (the three
    calls of the job context it makes), so the view is built from what the demo really writes."""

    def __init__(self, folder, base: str):
        self.folder, self.base = folder, base

    def write_json(self, relpath: str, obj) -> None:
        (self.folder / relpath).parent.mkdir(parents=True, exist_ok=True)
        (self.folder / relpath).write_text(json.dumps(obj))

    def open(self, relpath: str):
        (self.folder / relpath).parent.mkdir(parents=True, exist_ok=True)
        return open(self.folder / relpath, "wb")

    def url(self, relpath: str) -> str:
        return self.base + relpath


def test_similarity_view_shows_each_best_pair_from_its_row_of_the_demos_contact_sheet(tmp_path):
    """Three books sharing two real pictures (one reprinted mirrored), compared by the demo's own code
    (api/demos/similarity: validate, Describer, compare, write_results)."""
    import io

    import numpy as np
    from flask import render_template
    from PIL import Image

    from api.demos.similarity import demo, pictures, testset
    from api.demos.similarity.degrade import Recipe, apply
    from api.demos.similarity.engine import Describer, compare
    from api.demos.similarity.job import write_results
    from front import results
    from tests.support import ROOT

    data = ROOT / "tests" / "data" / "similarity"
    daedalus, capitol = testset.load(data, "daedalus-and-ikarus.png"), testset.load(data, "capitol.png")
    books = {"bookA": {"daedalus": daedalus, "capitol": capitol, "bull": testset.load(data, "bull.png")},
             "bookB": {"daedalus": apply(daedalus, Recipe(scale=0.7, angle=3, jpeg=60), seed=1),
                       "capitol": apply(capitol, Recipe(scale=0.8, mirror=True, jpeg=60), seed=2)},
             "bookC": {"daedalus": apply(daedalus, Recipe(scale=1.2, crop=(0.05, 0.0, 0.95, 0.92),
                                                          print_like="threshold"), seed=3)}}
    sent = {"transpositions": ["none", "hflip"], "contact_pairs": 2}
    params = demo.validate(sent)
    describer = Describer(params)
    for doc, pictures_of_doc in books.items():
        for name, picture in pictures_of_doc.items():
            describer.add(picture, doc, name)
    comparison = compare(describer)
    base = f"http://api:5000/similarity/{TID}/result/"
    output = json.loads(json.dumps(write_results(ResultFolder(tmp_path, base), comparison, params)))  # as sent

    job = {"app": "similarity", "tracking_id": TID, "parameters": sent, "output": output}
    view = view_for("similarity", job, lambda rel: "/f/" + rel, lambda uid: "")
    assert view["kind"] == "similarity" and view_for("other", job, str, str)["kind"] == "similarity"  # by shape
    keys = [(p["a"]["key"], p["b"]["key"]) for p in view["pairs"]]
    assert sorted(keys) == [("bookA/capitol", "bookB/capitol"), ("bookA/daedalus", "bookB/daedalus"),
                            ("bookA/daedalus", "bookC/daedalus"), ("bookB/daedalus", "bookC/daedalus")], keys
    mirrored = [p for p in view["pairs"] if p["a"]["key"] == "bookA/capitol"][0]
    assert mirrored["transform"]["mirror"] and mirrored["inliers"] >= 12 and mirrored["a"]["doc"] == "bookA"
    assert view["sheet"] == "/f/contact_sheet.jpg" and view["pairs_json"] == "/f/pairs.json"
    assert [f["name"] for f in view["files"]] == ["bookA-bookB", "bookA-bookC", "bookB-bookC"]
    assert view["files"][0]["url"] == "/f/pairs/bookA-bookB.json" and (tmp_path / "pairs/bookA-bookB.json").is_file()
    assert sorted(map(sorted, view["clusters"])) == [["bookA/capitol", "bookB/capitol"],
                                                     ["bookA/daedalus", "bookB/daedalus", "bookC/daedalus"]]

    # the layout the front assumes is the demo's, and each row box holds that pair's two items
    assert (results.SHEET_CELL, results.SHEET_GAP, results.SHEET_TITLE) == (pictures.CELL, pictures.GAP,
                                                                          pictures.TITLE)
    sheet = Image.open(tmp_path / "contact_sheet.jpg").convert("RGB")
    assert sheet.size == (view["sheet_width"], view["sheet_height"])
    assert [p["row"] is not None for p in view["pairs"]] == [True, True, False, False]
    items = {item.key: item for item in comparison.items}
    for pair in view["pairs"][:2]:
        x, y, w, h = pair["row"]
        row = sheet.crop((x, y, x + w, y + h))
        for c, side in enumerate(("a", "b")):
            thumb = Image.open(io.BytesIO(items[pair[side]["key"]].thumb)).convert("L")
            left = pictures.GAP + c * (pictures.CELL + pictures.GAP) + (pictures.CELL - thumb.width) // 2
            top = pictures.TITLE + (pictures.CELL - thumb.height) // 2
            drawn = np.asarray(row.crop((left, top, left + thumb.width, top + thumb.height)).convert("L"), float)
            assert np.median(np.abs(drawn - np.asarray(thumb, float))) < 8, (pair[side]["key"], c)

    app = create_app(load_config({"FRONT_ENV_FILE": "/nonexistent", "FRONT_DATA_FOLDER": str(tmp_path / "front")}))
    with app.test_request_context():
        html = render_template("_similarity.html", view=view)
    assert html.count('class="pair-sheet"') == 2 and html.count('class="pair-row"') == 4
    assert html.count('class="pair-file"') == 3 and html.count("mirrored</strong>") == 1
    assert 'viewBox="0 16 688 342"' in html and 'href="/f/contact_sheet.jpg"' in html
    assert "4 pairs and 2 clusters among 6 items of 3 documents" in html
    empty = view_for("similarity", {**job, "output": {**output, "pairs": [], "clusters": []}}, str, str)
    with app.test_request_context():
        assert "No pair above the threshold" in render_template("_similarity.html", view=empty)


# -- configuration --------------------------------------------------------------------------------------------
def test_config_reads_its_own_env_file_and_the_environment_wins(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text("API_URL=http://10.0.0.1:8001/\nAPI_TOKEN=from-file\nFRONT_PORT=8111\n"
                        "FRONT_PUBLIC_URL=https://front.example.org/\nCALLBACK_SECRET=k\n")
    monkeypatch.setenv("FRONT_ENV_FILE", str(env_file))
    monkeypatch.setenv("API_TOKEN", "from-env")
    cfg = load_config()
    assert (cfg.api_url, cfg.api_token, cfg.port) == ("http://10.0.0.1:8001", "from-env", 8111)
    assert cfg.callback_url == "https://front.example.org/callback"
    assert load_config({"FRONT_ENV_FILE": "/nonexistent"}).callback_url == ""
    no_secret = load_config({"FRONT_ENV_FILE": "/nonexistent", "FRONT_PUBLIC_URL": "http://front.example"})
    assert no_secret.callback_url == ""  # unsigned callbacks could be forged: none is asked for
    with pytest.raises(FrontConfigError, match="API_URL"):
        load_config({"FRONT_ENV_FILE": "/nonexistent", "API_URL": "127.0.0.1:5000"})
    with pytest.raises(FrontConfigError, match="FRONT_PORT"):
        load_config({"FRONT_ENV_FILE": "/nonexistent", "FRONT_PORT": "eighty"})


def test_the_front_imports_nothing_from_the_api():
    import subprocess
    import sys

    from tests.support import ROOT

    code = ("import sys, front; front.create_app(front.load_config({'FRONT_ENV_FILE': '/nonexistent', "
            "'FRONT_DATA_FOLDER': sys.argv[1]})); import front.pages, front.proxy, front.receiver, front.results; "
            "print(sorted(m for m in sys.modules if m == 'api' or m.startswith('api.')))")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / ".pytest_cache" / "front-imports")], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_starting_through_the_real_api_keeps_the_token_server_side_and_survives_a_refused_callback_url(
        env, tmp_path):
    """An API that refuses loopback callback URLs (ALLOW_PRIVATE_URLS off) still gets the job; the
    front then follows it by asking the API, and says so on the page."""
    from api import create_app as create_api
    from api.platform.config import load_config as load_api_config
    from tests.support.front_stack import ServerThread
    from tests.support.platform import png_bytes

    env.update(API_TOKEN="tok-123", ALLOW_PRIVATE_URLS="0")
    with ServerThread(create_api(load_api_config(env))) as api_server:
        app = create_app(load_config({"FRONT_ENV_FILE": "/nonexistent", "API_URL": api_server.url,
                                      "API_TOKEN": "tok-123", "FRONT_PUBLIC_URL": "http://127.0.0.1:1",
                                      "CALLBACK_SECRET": SECRET,
                                      "FRONT_DATA_FOLDER": str(tmp_path / "front")}))
        client = app.test_client()
        form = client.get("/demos/dummy").data.decode()
        assert 'id="param-delay"' in form and 'type="checkbox" id="param-fail"' in form and "tok-123" not in form
        import io

        response = client.post("/demos/dummy", content_type="multipart/form-data", data={
            "files": [(io.BytesIO(png_bytes()), "My page (1).png")], "param-delay": "0.1"})
        assert response.status_code == 303, response.data
        tracking_id = response.headers["Location"].rstrip("/").split("/")[-1]
        job = app.extensions["front_store"].get(tracking_id)
        assert job["notify"] == 0 and "refused to call this front back" in job["note"]
        assert job["inputs"] == [{"uid": "My_page_1", "name": "My page (1).png", "kept": "My_page_1.png"}]
        page = client.get(f"/jobs/dummy/{tracking_id}").data.decode()
        assert "the page asks the API instead" in page and "tok-123" not in page
        state = client.get(f"/jobs/dummy/{tracking_id}/state").get_json()
        assert state["state"] == "PENDING" and state["source"] == "api" and state["problem"] == ""
        assert client.get(f"/jobs/dummy/{tracking_id}/input/My_page_1").data == png_bytes()
        job_json = env_data(env) / "results" / "dummy" / tracking_id / "job.json"
        documents = json.loads(job_json.read_text())["documents"]
        assert [d["uid"] for d in documents] == ["My_page_1"]  # the API kept the front's uid
        zip_early = client.get(f"/jobs/dummy/{tracking_id}/zip")
        assert zip_early.status_code == 409  # not finished: the API's word, passed on


def env_data(env: dict):
    from pathlib import Path

    return Path(env["DATA_FOLDER"])


def test_python_m_front_with_a_filled_in_env_template_lists_the_apis_demos(env, tmp_path):
    """The README's path: copy front/.env.template to a .env, fill it in, run `python -m front`."""
    import os
    import subprocess
    import sys

    import requests

    from api import create_app as create_api
    from api.platform.config import load_config as load_api_config
    from api.platform.embedded import free_port
    from tests.support import ROOT
    from tests.support.front_stack import ServerThread
    from tests.support.platform import wait_for

    env.update(API_TOKEN="tok-456")
    with ServerThread(create_api(load_api_config(env))) as api_server:
        port = free_port()
        settings = {"API_URL": api_server.url, "API_TOKEN": "tok-456", "CALLBACK_SECRET": "k",
                    "FRONT_PUBLIC_URL": f"http://127.0.0.1:{port}", "FRONT_DATA_FOLDER": str(tmp_path / "data"),
                    "FRONT_PORT": str(port)}
        lines = []
        for line in (ROOT / "front" / ".env.template").read_text().splitlines():
            name = line.split("=", 1)[0]
            lines.append(f"{name}={settings[name]}" if name in settings else line)
        assert not set(settings) - {line.split("=", 1)[0] for line in lines}  # the template names them all
        (tmp_path / ".env").write_text("\n".join(lines) + "\n")
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "FRONT_", "CALLBACK_"))}
        front = subprocess.Popen([sys.executable, "-m", "front"], cwd=ROOT, env={
            **clean, "FRONT_ENV_FILE": str(tmp_path / ".env"), "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            def page():
                try:
                    return requests.get(f"http://127.0.0.1:{port}/", timeout=2)
                except (requests.ConnectionError, requests.Timeout):  # not up yet, or slow to answer while starting
                    assert front.poll() is None, front.stdout.read().decode()
                    return None

            response = wait_for(page, 30, 0.2, message="python -m front to answer")
            assert response.status_code == 200
            assert "Mean colour — a test demo" in response.text and "/demos/dummy" in response.text
            assert "tok-456" not in response.text
            assert (tmp_path / "data" / "front.sqlite3").is_file()
        finally:
            front.terminate()
            front.wait(10)
