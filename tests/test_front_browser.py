"""The front page in a real browser (the distribution's chromium, headless, through Selenium)
against the real API, Redis, a dramatiq worker and the callback sender, all on loopback.

A person's path: open the page, pick a demo, give images and settings, start; watch progress
reach 100 % (driven by the API's signed callbacks to the front); see the result drawn — boxes
for regions, primitives for vectorization — and download the zip. With FRONT_SCREENSHOTS=docs
each result view is saved as docs/front-<view>.png.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import zipfile

import pytest
import redis
import requests

from api.platform.config import load_config as load_api_config
from api.platform.embedded import free_port
from tests.support.front_stack import ServerThread, Stack, chromium, screenshot, wait_download
from tests.support.platform import Processes, platform_env, wait_for

pytestmark = pytest.mark.browser

SECRET = "front-callback-secret"
TOKEN = "front-test-token"
# The sorter's view needs a locator trained here (minutes on 2 cores): opt in with FRONT_SORTER_TEST=1.
WITH_SORTER = os.environ.get("FRONT_SORTER_TEST", "") not in ("", "0")
APPS = "tests.demos.dummy,vectorization,regions" + (",sorter" if WITH_SORTER else "")
QUEUES = "dummy=front,vectorization=front,regions=front" + (",sorter=front" if WITH_SORTER else "")


def _browser_available() -> bool:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return False
    from tests.support.front_stack import CHROMEDRIVER, CHROMIUM

    return shutil.which(CHROMIUM) is not None and shutil.which(CHROMEDRIVER) is not None


if not _browser_available():  # pragma: no cover - the test command installs both
    pytest.skip("chromium, chromedriver or selenium missing (tools/install-system-packages.sh, requirements-dev.txt)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def stack(redis_server, tmp_path_factory):
    from api import create_app as create_api
    from front import create_app as create_front
    from front.config import load_config as load_front_config

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    root = tmp_path_factory.mktemp("front-stack")
    data, front_data, logs = root / "data", root / "front-data", root / "logs"
    for folder in (data, front_data, logs):
        folder.mkdir()
    env = platform_env(data, redis_server.url, INSTALLED_APPS=APPS, API_TOKEN=TOKEN, CALLBACK_SECRET=SECRET,
                       DEMO_QUEUES=QUEUES, REGIONS_BATCH_SIZE="2",
                       PROGRESS_INTERVAL_S="0.1")
    procs = Processes(env, logs)
    api_server = ServerThread(create_api(load_api_config(env)))
    front_port = free_port()
    front_cfg = load_front_config({
        "FRONT_ENV_FILE": "/nonexistent", "API_URL": api_server.url, "API_TOKEN": TOKEN,
        "CALLBACK_SECRET": SECRET, "FRONT_PUBLIC_URL": f"http://127.0.0.1:{front_port}",
        "FRONT_DATA_FOLDER": str(front_data), "FRONT_POLL_INTERVAL_S": "0.25",
        # long enough that progress on the page can only come from callbacks while a job runs
        "FRONT_STATUS_REFRESH_S": "60"})
    front_app = create_front(front_cfg)
    front_server = ServerThread(front_app, port=front_port)
    with api_server, front_server:
        try:
            procs.worker(queue="front", timeout=120)
            procs.sender()
            yield Stack(api_server.url, front_server.url, front_app, TOKEN, SECRET, data, front_data), procs
        finally:
            procs.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    downloads = tmp_path_factory.mktemp("downloads")
    driver = chromium(downloads)
    driver.downloads = downloads
    yield driver
    driver.quit()


def by_css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def one(driver, selector: str):
    found = by_css(driver, selector)
    assert found, f"nothing matches {selector!r} on {driver.current_url}"
    return found[0]


def text_of(driver, selector: str) -> str:
    """The element's text, or "" while the page is being replaced."""
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        found = by_css(driver, selector)
        return found[0].text if found else ""
    except StaleElementReferenceException:
        return ""


def fill(driver, field_id: str, value: str) -> None:
    element = one(driver, f"#{field_id}")
    element.clear()
    element.send_keys(value)


def submit_form(driver, stack: Stack, app: str, files: list, params: dict[str, str] | None = None,
                checks: dict[str, bool] | None = None) -> str:
    """Open the demo's page from the front page, fill it in as a person would, start; the job's id."""
    driver.get(stack.front_url + "/")
    link = wait_for(lambda: [a for a in by_css(driver, ".card h2 a")
                             if a.get_attribute("href").endswith(f"/demos/{app}")],
                    10, message=f"a link to the {app} demo")
    link[0].click()
    wait_for(lambda: by_css(driver, "#start-form"), 10, message="the start form")
    if files:
        one(driver, "#files").send_keys("\n".join(str(f) for f in files))
    for name, value in (params or {}).items():
        fill(driver, f"param-{name}", value)
    for name, on in (checks or {}).items():
        box = one(driver, f"#param-{name}")
        if box.is_selected() != on:
            box.click()
    one(driver, "#start-button").click()
    wait_for(lambda: "/jobs/" in driver.current_url, 30, message="the job page")
    return driver.current_url.rstrip("/").split("/")[-1]


def watch_progress(driver, timeout: float = 120) -> list[float]:
    """The progress bar's values seen until the job ends; returns them."""
    from selenium.common.exceptions import StaleElementReferenceException

    seen: list[float] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            finished = one(driver, "#job").get_attribute("data-finished") == "true"
            seen.append(float(one(driver, "#progress").get_attribute("value")))
        except (StaleElementReferenceException, AssertionError):  # the page is being (re)loaded
            time.sleep(0.1)
            continue
        if finished:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"the job did not end in {timeout} s; progress seen {seen[-5:]}")


def wait_view(driver, kind: str, timeout: float = 30):
    return wait_for(lambda: by_css(driver, f'[data-view="{kind}"]'), timeout, message=f"the {kind} view")[0]


def png_file(folder, name: str, colour, size=(48, 32)):
    from PIL import Image

    path = folder / name
    Image.new("RGB", size, colour).save(path)
    return path


# -- the tests --------------------------------------------------------------------------------------------
def test_a_job_started_from_the_page_shows_progress_from_callbacks_and_its_zip_downloads(stack, browser, tmp_path):
    stack, procs = stack
    files = [png_file(tmp_path, f"photo {i}.png", (40 * i, 90, 200)) for i in range(4)]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n but not an image")
    tracking_id = submit_form(browser, stack, "dummy", files + [broken], params={"delay": "0.8"})
    seen = watch_progress(browser)
    assert one(browser, "#state-words").text == "Done", procs.logs()
    assert seen[-1] == 100.0 and any(0 < v < 100 for v in seen), seen  # it moved, then reached 100 %
    assert one(browser, "#percent").text == "100 %"
    assert one(browser, "#progress-words").text.startswith("5 of 5 images")
    [error] = [li.text for li in by_css(browser, "#image-error-list li")]  # the unreadable one, in words
    assert error.startswith("broken/") and one(browser, "#image-errors").is_displayed()
    job = stack.store.get(tracking_id)
    assert job["callbacks"] >= 3, job  # STARTED, PROGRESS…, SUCCESS reached the front, signed
    view = wait_view(browser, "generic")
    output = json.loads(view.find_element("css selector", "pre").text)
    assert sorted(output["images"]) == ["photo_0", "photo_1", "photo_2", "photo_3"]
    assert output["images"]["photo_1"][0]["mean"] == [40.0, 90.0, 200.0]

    one(browser, "#zip-link").click()
    archive = zipfile.ZipFile(wait_download(browser.downloads, ".zip"))
    assert "job.json" in archive.namelist()
    assert json.loads(archive.read("job.json"))["tracking_id"] == tracking_id
    screenshot(browser, "generic")

    browser.get(stack.front_url + "/jobs")
    row = wait_for(lambda: [r for r in by_css(browser, "table.jobs tbody tr")
                            if tracking_id in r.get_attribute("innerHTML")],
                   10, message="the job in the history")[0]
    assert "Done" in row.text and "5 inputs" in row.text


def resources(driver) -> list[str]:
    """The URLs the page fetched (scripts, fetch(), EventSource), as Resource Timing lists them."""
    return driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")


def test_the_job_page_follows_its_job_from_live_events_without_polling(stack, browser, tmp_path):
    stack, procs = stack
    files = [png_file(tmp_path, f"live {i}.png", (30 * i, 60, 90)) for i in range(5)]
    tracking_id = submit_form(browser, stack, "dummy", files, params={"delay": "0.6"})
    assert one(browser, "#job").get_attribute("data-live") == "events"
    seen = watch_progress(browser)
    assert one(browser, "#state-words").text == "Done", procs.logs()
    assert seen[-1] == 100.0 and len({v for v in seen if 0 < v < 100}) >= 2, seen  # it moved, step by step
    assert one(browser, "#progress-words").text.startswith("5 of 5 images")
    wait_view(browser, "generic")
    fetched = resources(browser)
    assert [u for u in fetched if u.endswith(f"/jobs/dummy/{tracking_id}/events")], fetched
    assert not [u for u in fetched if u.endswith("/state")], fetched  # every update came from the events
    assert one(browser, "#job").get_attribute("data-live") == "events"


def test_the_job_page_polls_when_the_front_refuses_a_live_stream(stack, browser, tmp_path):
    stack, procs = stack
    from front.proxy import event_slots

    slots = event_slots(stack.front_app)
    taken = 0
    while slots.acquire(blocking=False):  # every live stream of this front in use
        taken += 1
    try:
        tracking_id = submit_form(browser, stack, "dummy", [png_file(tmp_path, "busy.png", (9, 9, 9))],
                                  params={"delay": "0.5"})
        seen = watch_progress(browser)
    finally:
        for _ in range(taken):
            slots.release()
    assert one(browser, "#state-words").text == "Done" and seen[-1] == 100.0, procs.logs()
    assert one(browser, "#job").get_attribute("data-live") == "poll"
    assert [u for u in resources(browser) if u.endswith(f"/jobs/dummy/{tracking_id}/state")]


def test_a_running_job_can_be_cancelled_from_its_page(stack, browser, tmp_path):
    stack, _ = stack
    files = [png_file(tmp_path, f"p{i}.png", (i, i, i)) for i in range(6)]
    submit_form(browser, stack, "dummy", files, params={"delay": "1"})
    wait_for(lambda: float(one(browser, "#progress").get_attribute("value")) > 0, 30, message="a first image done")
    job_page = browser.current_url
    one(browser, "#cancel-form button").click()  # a form post, answered by the job page again
    wait_for(lambda: browser.current_url == job_page and text_of(browser, "#state-words") == "Cancelled", 30,
             message="the job to read Cancelled")
    assert not one(browser, "#cancel-form").is_displayed() and not by_css(browser, "[data-view]")
    assert float(one(browser, "#progress").get_attribute("value")) < 100


def test_a_failing_job_says_why_in_plain_words(stack, browser, tmp_path):
    stack, _ = stack
    submit_form(browser, stack, "dummy", [png_file(tmp_path, "a.png", (1, 2, 3))], checks={"fail": True})
    watch_progress(browser, 60)
    assert one(browser, "#state-words").text == "Failed"
    failure = one(browser, "#failure")
    assert failure.is_displayed() and failure.get_attribute("role") == "alert"
    assert failure.text == "The job failed: the model refused this job (fail=true)"
    assert not by_css(browser, "[data-view]") and not one(browser, "#cancel-form").is_displayed()


def test_bad_input_is_shown_on_the_form_naming_the_field(stack, browser):
    stack, _ = stack
    browser.get(stack.front_url + "/demos/dummy")
    unlabelled = browser.execute_script(
        "return Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))"
        ".filter(e => !e.labels || e.labels.length === 0).map(e => e.id || e.name)")
    assert unlabelled == []  # every control has its label, for screen readers and bigger click targets
    assert [e.get_attribute("name") for e in by_css(browser, "[aria-describedby]") if not by_css(
        browser, "#" + e.get_attribute("aria-describedby").split()[0])] == []
    fill(browser, "image_urls", "ftp://example.org/page.jpg")
    one(browser, "#start-button").click()
    problem = wait_for(lambda: by_css(browser, "#form-problem"), 10, message="the form's problem")[0]
    assert "image_urls" in problem.text and "not an http(s) URL" in problem.text
    assert one(browser, "#image_urls").get_attribute("aria-invalid") == "true"
    # the API's own refusal (a value it does not accept) comes back on the form too
    browser.get(stack.front_url + "/demos/dummy")
    fill(browser, "image_urls", "http://127.0.0.1:9/page.jpg")
    fill(browser, "param-delay", "61")
    browser.execute_script("document.getElementById('param-delay').removeAttribute('max')")
    one(browser, "#start-button").click()
    problem = wait_for(lambda: by_css(browser, "#form-problem"), 10, message="the form's problem")[0]
    assert "delay" in problem.text and "at most 60" in problem.text


def test_a_callback_with_a_bad_signature_or_replayed_is_refused(stack):
    stack, _ = stack
    from front.callbacks import sign_headers

    tracking_id = next(j["tracking_id"] for j in stack.store.recent() if j["state"] == "SUCCESS")
    before = stack.store.get(tracking_id)
    body = json.dumps({"event": "ERROR", "state": "FAILURE", "tracking_id": tracking_id,
                       "event_id": "forged-1", "error": "forged"}).encode()
    url = stack.front_url + "/callback"
    post = lambda headers, data=body: requests.post(url, data=data, timeout=10,  # noqa: E731
                                                    headers={"Content-Type": "application/json", **headers})
    assert post({}).status_code == 401
    assert post(sign_headers("wrong-secret", body)).status_code == 401
    assert post(sign_headers(SECRET, body, now=time.time() - 3600)).status_code == 401  # stale
    tampered = post(sign_headers(SECRET, body), data=body.replace(b"forged", b"forgeD"))
    assert tampered.status_code == 401 and tampered.json()["error"]["code"] == "bad_signature"
    after = stack.store.get(tracking_id)
    fields = ("state", "error", "callbacks")
    assert [after[k] for k in fields] == [before[k] for k in fields]

    # a genuine (signed) event is taken once; the very same signed message again is a replay
    running = json.dumps({"event": "PROGRESS", "state": "STARTED", "tracking_id": "0" * 32, "event_id": "e1",
                          "progress": {"done": 1, "total": 2}}).encode()
    headers = sign_headers(SECRET, running)
    assert post(headers, running).status_code == 200
    replay = post(headers, running)
    assert replay.status_code == 409 and replay.json()["error"]["code"] == "replay"


def test_vectorization_view_draws_every_primitive_with_toggles_and_downloads(stack, browser, tmp_path):
    stack, procs = stack
    from PIL import Image

    from api.demos.vectorization.synthetic import generate

    diagram = generate(3, size=600)
    path = tmp_path / "diagram.png"
    Image.fromarray(diagram.image).save(path)
    tracking_id = submit_form(browser, stack, "vectorization", [path])
    assert by_css(browser, "#state-words")  # the job page, following the job
    watch_progress(browser, 120)
    assert one(browser, "#state-words").text == "Done", procs.logs()
    wait_view(browser, "vectorization")
    status = stack.api_get(f"/vectorization/{tracking_id}/status").json()
    [entry] = status["output"]["documents"]["diagram"]
    result = stack.api_get(f"/vectorization/{tracking_id}/result/diagram/{entry['image']}.json")
    primitives = result.json()["primitives"]
    assert len(primitives) >= 5
    drawn = by_css(browser, "svg.vector .prim")
    assert len(drawn) == len(primitives)
    for kind in ("line", "circle", "arc"):
        expected = sum(p["type"] == kind for p in primitives)
        assert len(by_css(browser, f"svg.vector .prim-{kind} .prim")) == expected == entry["counts"][kind]
    screenshot(browser, "vectorization")
    lines = by_css(browser, "svg.vector .prim-line .prim")
    assert lines and lines[0].is_displayed()
    one(browser, '.toggle-type[value="line"]').click()
    assert not lines[0].is_displayed()
    assert any(p.is_displayed() for p in by_css(browser, "svg.vector .prim-circle .prim, svg.vector .prim-arc .prim"))
    one(browser, '.toggle-type[value="line"]').click()
    assert lines[0].is_displayed()
    svg_link = [a for a in by_css(browser, "figcaption a") if a.text == "SVG"][0]
    svg = requests.get(svg_link.get_attribute("href"), timeout=10)
    assert svg.status_code == 200 and svg.headers["Content-Disposition"].startswith("attachment")
    assert svg.content.count(b'data-confidence=') == len(primitives)


def test_a_iiif_manifest_url_from_the_form_is_vectorized_page_by_page(stack, browser, http_server):
    stack, procs = stack
    import io

    from PIL import Image

    from api.demos.vectorization.synthetic import generate
    from tests.test_inputs import manifest_v2

    for i in range(2):
        buffer = io.BytesIO()
        Image.fromarray(generate(10 + i, size=400).image).save(buffer, "JPEG", quality=92)
        http_server.add(f"/v2/p{i}.jpg", buffer.getvalue(), "image/jpeg")
    url = http_server.add("/v2/manifest.json", json.dumps(manifest_v2(http_server, service=False)), "application/json")
    browser.get(stack.front_url + "/demos/vectorization")
    fill(browser, "manifest_url", url)
    one(browser, "#start-button").click()
    wait_for(lambda: "/jobs/" in browser.current_url, 30, message="the job page")
    tracking_id = browser.current_url.rstrip("/").split("/")[-1]
    watch_progress(browser, 120)
    assert text_of(browser, "#state-words") == "Done", procs.logs()
    wait_view(browser, "vectorization")
    entries = stack.api_get(f"/vectorization/{tracking_id}/status").json()["output"]["documents"]["iiif"]
    drawings = by_css(browser, "figure.drawing")
    assert len(drawings) == len(entries) == 2
    for drawing, entry in zip(drawings, entries, strict=True):
        assert len(drawing.find_elements("css selector", ".prim")) == sum(entry["counts"].values()) > 0
        # no upload to draw over: the API's preview of the page, through the front
        href = drawing.find_element("css selector", "image.under").get_attribute("href")
        assert href.startswith(f"/jobs/vectorization/{tracking_id}/files/iiif/") and href.endswith(".png")


def test_regions_view_draws_each_box_with_label_and_confidence_and_a_crop_gallery(stack, browser, tmp_path,
                                                                                 trained_yolo):
    stack, procs = stack
    from tests.support.synthetic_pages import make_page

    models = stack.data_folder / "models" / "regions"
    models.mkdir(parents=True, exist_ok=True)
    shutil.copy(trained_yolo, models / "pages.pt")
    files = []
    for seed in (9100, 9101):
        path = tmp_path / f"page{seed}.png"
        make_page(seed).image.save(path)
        files.append(path)
    tracking_id = submit_form(browser, stack, "regions", files, params={"imgsz": "160", "conf": "0.25"})
    watch_progress(browser, 180)
    assert one(browser, "#state-words").text == "Done", procs.logs()
    wait_view(browser, "regions")
    annotations = stack.api_get(f"/regions/{tracking_id}/status").json()["output"]["annotations"]
    crops = [c for records in annotations.values() for r in records for c in r["crops"]]
    assert len(crops) >= 2
    boxes = by_css(browser, ".regions-view svg .box")
    assert len(boxes) == len(crops)
    assert len(by_css(browser, ".regions-view .gallery img")) == len(crops)
    labels = [t.text for t in by_css(browser, ".regions-view .box-label")]
    expected = sorted(f"{c['label']} {c['confidence']:.2f}" for c in crops)
    assert sorted(labels) == expected
    # the page under the boxes is the image the person uploaded, kept by the front
    images = by_css(browser, ".regions-view svg image")
    assert all("/input/" in i.get_attribute("href") for i in images)
    screenshot(browser, "regions")
    for image in by_css(browser, ".regions-view .gallery img"):  # every crop is served (lazy: scroll to it)
        browser.execute_script("arguments[0].scrollIntoView()", image)
        wait_for(lambda image=image: browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth",
                                                           image),
                 10, message="a crop to load")
    one(browser, ".toggle-labels").click()
    assert not one(browser, ".box-label").is_displayed()


@pytest.fixture(scope="module")
def sorter_locator(tmp_path_factory):
    """A locator trained on generated table scenes, as tests/test_sorter.py trains it; or the one
    already trained so in FRONT_SORTER_LOCATOR (a folder holding locator.pt and locator.json)."""
    from pathlib import Path

    if os.environ.get("FRONT_SORTER_LOCATOR"):
        return Path(os.environ["FRONT_SORTER_LOCATOR"])
    import numpy as np
    import torch

    from api.demos.sorter.synthetic import make_scenes
    from api.demos.sorter.train import save_trained, train_locator

    torch.set_num_threads(2)
    folder = tmp_path_factory.mktemp("sorter-locator")
    samples = [(s.image, s.boxes.astype(np.float32), s.labels.astype(np.int64)) for s in make_scenes(60, seed=1)]
    model = train_locator(samples, iterations=200, batch_size=2, size=320, lr=0.02, seed=0, log=lambda m: None)
    save_trained(model, folder / "locator.pt", "front tests: 60 synthetic scenes, 200 iterations")
    return folder


@pytest.mark.skipif(not WITH_SORTER, reason="trains a locator for minutes: FRONT_SORTER_TEST=1 runs it")
def test_sorter_view_shows_annotated_photos_groups_of_crops_and_moves(stack, browser, tmp_path, sorter_locator):
    stack, procs = stack
    from api.demos.sorter.synthetic import make_scene

    target = stack.data_folder / "models" / "sorter"
    target.mkdir(parents=True, exist_ok=True)
    for path in sorter_locator.iterdir():
        shutil.copy(path, target / path.name)
    files = []
    for i in range(2):
        path = tmp_path / f"table{i}.png"
        make_scene(4242 + i, 480, 360, n_containers=3, n_items=9, kinds=[0, 1, 2]).image.save(path)
        files.append(path)
    tracking_id = submit_form(browser, stack, "sorter", files, params={"n_groups": "3"})
    watch_progress(browser, 300)
    assert text_of(browser, "#state-words") == "Done", procs.logs()
    wait_view(browser, "sorter")
    output = stack.api_get(f"/sorter/{tracking_id}/status").json()["output"]
    assert len(by_css(browser, ".sorter-view figure.photo img")) == len(output["images"]) == 2
    rows = by_css(browser, ".sorter-view .group-row")
    assert len(rows) == len(output["groups"]) == 3
    assert len(by_css(browser, ".sorter-view svg.crop")) == sum(len(g["items"]) for g in output["groups"])
    assert len(by_css(browser, ".sorter-view table.moves tbody tr")) == len(output["pairings"]) > 0
    screenshot(browser, "sorter")
