"""Storage and datasets: what is served inline, datasets of jobs that share file names, upload
names the filesystem takes, and the results' size count under clears and races. Real API app,
real Redis, real dummy-demo workers."""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import replace

import pytest
import redis

from api.platform import keys
from api.platform.errors import Conflict
from api.platform.inputs.names import MAX_FILE_NAME_BYTES, safe_filename
from api.platform.jobs import CANCELLED, Job, JobStore
from api.platform.storage import (
    JOB_FILE,
    TEMP_PREFIX,
    clear_job_files,
    count_results,
    serve_data_file,
    serve_file,
)
from tests.support.platform import json_of, png_bytes, wait_for

SCRIPT = b"<html><body><script>alert(document.domain)</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
XHTML = b'<html xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></html>'


def start_with_uploads(client, files: list[tuple[bytes, str]]) -> str:
    response = client.post("/dummy/start", data={"files": [(io.BytesIO(data), name) for data, name in files]},
                           content_type="multipart/form-data")
    assert response.status_code == 202, response.data
    return json_of(response)["tracking_id"]


def succeeded(client, tracking_id: str) -> dict:
    status = wait_for(lambda: (s := json_of(client.get(f"/dummy/{tracking_id}/status")))["state"]
                      in ("SUCCESS", "FAILURE", "CANCELLED") and s, 60, message=f"job {tracking_id}")
    assert status["state"] == "SUCCESS", status
    return status


def local(url: str) -> str:
    """The path of an absolute URL the app gave (the test client's host is `localhost`)."""
    return url.split("localhost", 1)[1]


def documents_of(client, tracking_id: str) -> dict[str, dict]:
    """The job's dataset documents by uid, each with its listing (images and their URLs)."""
    dataset = json_of(client.get(f"/datasets/{tracking_id}"))
    return {d["uid"]: json_of(client.get(local(d["url"]))) for d in dataset["documents"]}


# -- 8: what a dataset records and how it is served ------------------------------------------------
def test_uploaded_html_svg_xhtml_are_not_recorded_and_images_go_by_their_bytes(client, procs):
    procs.worker()
    tracking_id = start_with_uploads(client, [
        (png_bytes(), "scan.png"), (SCRIPT, "page.html"), (SVG, "drawing.svg"), (XHTML, "page.xhtml"),
        (SCRIPT, "trick.png"), (png_bytes((1, 2, 3)), "looks.html")])
    succeeded(client, tracking_id)
    documents = documents_of(client, tracking_id)
    assert set(documents) == {"scan", "page", "drawing", "page-2", "trick", "looks"}
    for uid in ("page", "drawing", "page-2", "trick"):  # script, whatever the name says
        assert documents[uid]["images"] == [], uid
    for uid in ("scan", "looks"):  # images, whatever the name says
        [image] = documents[uid]["images"]
        response = client.get(local(image["url"]))
        assert response.status_code == 200 and response.data.startswith(b"\x89PNG")
        assert response.headers["Content-Type"] == "image/png"
        assert response.headers["Content-Disposition"] == f'inline; filename="{image["name"]}.png"'
        assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("xaccel", [False, True])
def test_files_of_unknown_or_scriptable_types_are_attachments_on_both_paths(app, xaccel):
    """Flask's send_file and the X-Accel answer (whose Content-Type and Content-Disposition nginx
    keeps) say the same: inline only for known-safe types, nosniff always."""
    cfg = replace(app.extensions["api"].cfg, use_xaccel=xaccel)
    tracking_id = "a" * 32
    folder = cfg.results_folder / "dummy" / tracking_id
    folder.mkdir(parents=True)
    for name, data in (("page.html", SCRIPT), ("drawing.svg", SVG), ("page.xht", XHTML), ("page.xhtml", XHTML),
                       ("noext", SCRIPT), ("page été.shtml", SCRIPT), ("ok.json", b"{}"), ("crop.png", png_bytes())):
        (folder / name).write_bytes(data)
    upload = cfg.uploads_folder / tracking_id / "0000" / "page.html"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(SCRIPT)
    with app.test_request_context():
        answers = {name: serve_file(cfg, "dummy", tracking_id, name)
                   for name in ("page.html", "drawing.svg", "page.xht", "page.xhtml", "noext", "page été.shtml",
                                "ok.json", "crop.png")}
        answers["dataset"] = serve_data_file(cfg, upload, "page.html")
    for name, response in answers.items():
        assert response.headers["X-Content-Type-Options"] == "nosniff", name
        response.headers["Content-Disposition"].encode("latin-1")  # a header nginx and WSGI can carry
        assert ("X-Accel-Redirect" in response.headers) == xaccel, name
        inline = name in ("ok.json", "crop.png")
        assert response.headers["Content-Disposition"].startswith("inline;" if inline else "attachment;"), name
    assert answers["page été.shtml"].headers["Content-Disposition"] == (
        "attachment; filename=\"page _t_.shtml\"; filename*=UTF-8''page%20%C3%A9t%C3%A9.shtml")
    assert answers["crop.png"].headers["Content-Type"] == "image/png"
    assert answers["ok.json"].headers["Content-Type"] == "application/json"
    if xaccel:
        assert answers["dataset"].headers["X-Accel-Redirect"] == f"/xaccel/_data/uploads/{tracking_id}/0000/page.html"
        assert answers["page été.shtml"].headers["X-Accel-Redirect"] == (
            f"/xaccel/dummy/{tracking_id}/page%20%C3%A9t%C3%A9.shtml")
    for response in answers.values():
        response.close()


# -- 9: datasets of different jobs ------------------------------------------------------------------
def test_two_jobs_uploading_scan_png_each_serve_their_own_bytes(client, procs):
    procs.worker()
    first, second = png_bytes((250, 0, 0)), png_bytes((0, 0, 250), size=(20, 30))
    job_a = start_with_uploads(client, [(first, "scan.png")])
    succeeded(client, job_a)
    job_b = start_with_uploads(client, [(second, "scan.png")])
    succeeded(client, job_b)
    for tracking_id, data in ((job_a, first), (job_b, second)):
        dataset = json_of(client.get(f"/datasets/{tracking_id}"))
        [doc] = dataset["documents"]
        assert doc["uid"] == "scan"  # the client's uid (the front keys results by it)
        listing = json_of(client.get(local(doc["url"])))
        assert listing["uid"] == "scan"
        [image] = listing["images"]
        assert client.get(local(image["url"])).data == data, tracking_id
        archive = zipfile.ZipFile(io.BytesIO(client.get(local(doc["download"])).data))
        assert [archive.read(n) for n in archive.namelist()] == [data], tracking_id
    urls = {json_of(client.get(f"/datasets/{t}"))["documents"][0]["url"] for t in (job_a, job_b)}
    assert len(urls) == 2


def test_jobs_reading_the_same_url_share_the_client_uid_as_document_url(client, procs, http_server):
    """A URL's images are shared through the cache, so the document keeps the client's uid as its
    URL for every job (discover-demo's uids name the same witness across its jobs)."""
    http_server.add("/page.png", png_bytes((9, 9, 9)), "image/png")
    procs.worker()
    body = {"documents": [{"type": "img", "src": http_server.url("/page.png"), "uid": "wit1_img1"}]}
    jobs = [json_of(client.post("/dummy/start", json=body))["tracking_id"] for _ in range(2)]
    for tracking_id in jobs:
        succeeded(client, tracking_id)
    urls = {json_of(client.get(f"/datasets/{t}"))["documents"][0]["url"] for t in jobs}
    assert [local(url) for url in urls] == ["/datasets/document/img/wit1_img1"]


# -- 11: upload names the filesystem takes ----------------------------------------------------------
@pytest.mark.parametrize("name", ["a" * 300 + ".png", "é" * 300 + ".jpeg", "页" * 200 + ".tif",
                                  "x" * 254 + "é.png"])
def test_an_over_long_upload_name_is_cut_to_what_the_filesystem_takes(tmp_path, name):
    taken: set[str] = set()
    first, second = safe_filename(name, "upload", taken), safe_filename(name, "upload", taken)
    for saved in (first, second):
        assert len(saved.encode()) <= MAX_FILE_NAME_BYTES
        assert saved.endswith(name[name.rindex("."):]) and saved[0] == name[0]
        (tmp_path / saved).write_bytes(b"x")  # the filesystem takes it
    assert first != second and taken == {first, second}


@pytest.mark.parametrize("name, expected", [("../../etc/passwd", "passwd"), ("C:\\docs\\scan 1.PNG", "scan_1.png"),
                                            (".hidden", "hidden"), (".tmp-x", "tmp-x"), ("...", "upload"),
                                            ("-rf", "rf"), ("a\x00b\u202e.png", "a_b.png")])
def test_an_upload_name_is_one_safe_component(name, expected):
    assert safe_filename(name, "upload") == expected


# -- 16: the results' size, clears and a job's end --------------------------------------------------
@pytest.fixture
def store(config, redis_url):
    client = redis.Redis.from_url(redis_url)
    yield JobStore(client, config)
    client.close()


def ended_job(store: JobStore, config, tracking_id: str, result_bytes: int, upload_bytes: int = 0) -> Job:
    job = Job(tracking_id=tracking_id, app="dummy")
    store.create(job)
    store.transition(job, CANCELLED, error="test")
    (config.results_folder / "dummy" / tracking_id / "out.bin").write_bytes(b"r" * result_bytes)
    if upload_bytes:
        (config.uploads_folder / tracking_id / "0000").mkdir(parents=True)
        (config.uploads_folder / tracking_id / "0000" / "scan.png").write_bytes(b"u" * upload_bytes)
    return job


def total(store: JobStore) -> int:
    return int(store.redis.get(keys.disk("dummy")) or 0)


def test_the_size_count_takes_back_what_it_counted_and_never_goes_negative(store, config):
    a, b = "a" * 32, "b" * 32
    ended_job(store, config, a, 1000, upload_bytes=5000)  # uploads are not results: never counted
    ended_job(store, config, b, 3000)
    added = count_results(store.redis, "dummy", a, config.results_folder / "dummy" / a)
    assert count_results(store.redis, "dummy", a, config.results_folder / "dummy" / a) == 0  # once per job
    count_results(store.redis, "dummy", b, config.results_folder / "dummy" / b)
    before = total(store)
    (config.results_folder / "dummy" / a / "late.bin").write_bytes(b"l" * 700)  # written after the count
    freed = clear_job_files(config, "dummy", a, store.redis)
    assert freed >= 1000 + 700 + 5000 and not (config.uploads_folder / a).exists()
    assert total(store) == before - added  # exactly its share, neither uploads nor late files
    clear_job_files(config, "dummy", b, store.redis)
    assert total(store) == 0
    clear_job_files(config, "dummy", b, store.redis)  # twice: nothing left to take back
    assert total(store) == 0
    # a job counted before shares were kept (or never counted) takes back what it measures, clamped
    ended_job(store, config, "c" * 32, 4000, upload_bytes=9000)
    store.redis.set(keys.disk("dummy"), 100)
    clear_job_files(config, "dummy", "c" * 32, store.redis)
    assert total(store) == 0
    assert not [p for p in (config.results_folder / "dummy").iterdir()]  # no folder, no trash left


def test_a_clear_racing_a_jobs_end_leaves_no_half_folder(store, config):
    """The end is written to Redis first, then to job.json: a clear in between is refused, since
    the mirror would otherwise recreate a folder holding only job.json."""
    tracking_id = "d" * 32
    job = Job(tracking_id=tracking_id, app="dummy")
    store.create(job)
    folder = config.results_folder / "dummy" / tracking_id
    (folder / "out.bin").write_bytes(b"r" * 10)
    mirror_before_the_end = (folder / JOB_FILE).read_bytes()
    assert store.transition(job, CANCELLED, error="test")
    (folder / JOB_FILE).write_bytes(mirror_before_the_end)  # Redis ended it; the mirror is on its way
    with pytest.raises(Conflict):
        clear_job_files(config, "dummy", tracking_id, store.redis)
    assert (folder / "out.bin").is_file()
    store.write_snapshot(job)  # the mirror arrives
    clear_job_files(config, "dummy", tracking_id, store.redis)
    assert not folder.exists() and not list(folder.parent.iterdir())


def test_a_job_redis_forgot_before_it_ended_can_be_cleared(store, config):
    tracking_id = "e" * 32
    store.create(Job(tracking_id=tracking_id, app="dummy"))
    store.redis.delete(store.key(tracking_id))  # lost: nothing will ever write its end
    clear_job_files(config, "dummy", tracking_id, store.redis)
    assert not (config.results_folder / "dummy" / tracking_id).exists()


def test_results_served_as_json_keep_their_type_through_the_app(client, data_folder):
    """A regression guard for inline-safe results: JSON stays application/json, inline."""
    tracking_id = "f" * 32
    folder = data_folder / "results" / "dummy" / tracking_id
    folder.mkdir(parents=True)
    (folder / JOB_FILE).write_text(json.dumps({"tracking_id": tracking_id, "app": "dummy", "state": "SUCCESS",
                                               "finished_at": 1.0}))
    (folder / "a.json").write_text("[]")
    response = client.get(f"/dummy/{tracking_id}/result/a.json")
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    assert response.headers["Content-Disposition"] == 'inline; filename="a.json"'


def test_a_job_ended_in_redis_but_not_yet_mirrored_can_be_chained_on_at_once(store, config):
    """A client that saw SUCCESS may start a chained job at once (as the regions → similarity
    chain did under load): the job.json mirror may still be on its way, Redis already knows."""
    from api.platform.demo import Demo
    from api.platform.jobs import STARTED, SUCCESS, read_finished

    tracking_id = "f" * 32
    job = Job(tracking_id=tracking_id, app="dummy")
    store.create(job)
    folder = config.results_folder / "dummy" / tracking_id
    (folder / "doc" / "crops").mkdir(parents=True)
    (folder / "doc" / "crops" / "0.png").write_bytes(png_bytes())
    assert store.transition(job, STARTED)
    mirror_before_the_end = (folder / JOB_FILE).read_bytes()
    assert store.transition(job, SUCCESS, output={"files": {}})
    (folder / JOB_FILE).write_bytes(mirror_before_the_end)  # Redis ended it; the mirror is on its way
    assert read_finished(config, "dummy", tracking_id) is None  # the disk alone does not know yet
    assert read_finished(config, "dummy", tracking_id, store.redis).succeeded
    assert read_finished(config, "other", tracking_id, store.redis) is None  # another app's id is not it

    class Chained(Demo):
        name = "chained"

    demo = Chained()
    demo.configure(config)
    [document] = demo.documents_of("dummy", tracking_id, field="parameters.job", subfolder="crops", purpose="crops")
    assert document.uid == "doc" and document.type == "dir"


def test_a_large_upload_is_spooled_in_the_uploads_folder_and_kept_without_a_copy(client, config, procs):
    """Werkzeug's spool file is made beside the uploads, so saving it is a hard link (one write of
    the bytes, not two); it is gone after the request, and the job reads the upload as before."""
    import os
    import tempfile

    from api.platform.upload_streams import save_upload

    big = png_bytes() + os.urandom(2 * 2**20)  # over the 500 KB kept in memory: spooled to a file
    procs.worker()
    tracking_id = start_with_uploads(client, [(big, "scan.png"), (png_bytes(), "small.png")])
    saved = {p.name: p for p in (config.uploads_folder / tracking_id).rglob("*") if p.is_file()}
    assert saved["scan.png"].read_bytes() == big and saved["scan.png"].stat().st_nlink == 1
    assert [p.name for p in config.uploads_folder.iterdir()] == [tracking_id]  # no spool file left
    succeeded(client, tracking_id)

    class Spooled:  # what werkzeug hands over for a spooled upload
        stream = tempfile.NamedTemporaryFile("w+b", prefix=TEMP_PREFIX, dir=config.uploads_folder)

        def save(self, dst):
            raise AssertionError("copied instead of linked")

    Spooled.stream.write(b"bytes")
    target = config.uploads_folder / "x" / "0000" / "a.png"
    target.parent.mkdir(parents=True)
    save_upload(Spooled(), target)
    assert os.path.samefile(Spooled.stream.name, target) and target.read_bytes() == b"bytes"
    Spooled.stream.close()
    assert target.read_bytes() == b"bytes"
