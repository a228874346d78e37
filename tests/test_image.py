"""The real Docker image: built from the Dockerfile and requirements.txt by `docker.sh rebuild` on a
private engine (tests/support/docker_engine.py), run as docker.sh runs it (DATA_FOLDER owned by the image's
uid at /data, the clone read-only at /app, .env at /etc/demo-api.env), on the host's network with
free loopback ports (`DOCKER_NETWORK=host`: the engine has no bridge). Real jobs go through the
container's nginx, results come back through X-Accel byte for byte as they lie in DATA_FOLDER, a
`docker stop -t 120` with a job in flight loses nothing, and docker.sh's commands work against it.

Cost: the first build on a machine downloads PyTorch with its CUDA wheels (several GB; see the
README's Docker section for measured times); later builds reuse the engine's cached layers.
The build's time is printed, as is the image's size. Skipped, with the reason, where the engine
cannot run.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

import pytest
import requests

from api.platform.embedded import free_port
from api.platform.storage import JOB_FILE, ZIP_NAME
from tests.support import ROOT
from tests.support.docker_engine import Engine, EngineUnavailable
from tests.support.platform import png_bytes
from tests.support.stack_helpers import port_open, wait_until

pytestmark = pytest.mark.image

IMAGE = "demo-api-test"
CONTAINER = "demo-api-test"
IMAGE_UID = 4321  # DATA_FOLDER's owner, so the image's user; docker.sh builds for it when run as root
BUILD_TIMEOUT_S = 3600  # a cold build downloads ~3 GB of wheels; a warm one takes seconds
HEALTHY_WAIT_S = 300  # Docker's first health check runs 30 s after the start (HEALTHCHECK --interval)
JOB_WAIT_S = 300
STOP_WAIT_S = 3  # WORKER_STOP_WAIT_S: the in-flight job is cut short, so it must run again after the start
DELAYED_IMAGES = 20  # dummy images of 1 s each: still running when its worker is killed (STOP_WAIT_S later)


def say(request, message: str) -> None:
    """A line on the terminal even under -q: the build's cost must be visible in CI's log."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if capture is None:  # -p no:capture: nothing to get past
        print(f"\n[image] {message}", flush=True)
        return
    with capture.global_and_fixture_disabled():
        print(f"\n[image] {message}", flush=True)


class Container:
    """The image's container as docker.sh starts it, and the HTTP door of its nginx."""

    def __init__(self, engine: Engine, base: Path):
        self.engine = engine
        self.base = base
        self.data = base / "data"
        self.data.mkdir()
        self.env_file = base / "demo-api.env"
        self.port = free_port()
        self.redis_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = requests.Session()

    def write_env(self, base_image: str) -> None:
        """Production's .env keys, plus the test's: host network, free ports, this engine's base image."""
        settings = {
            "INSTALLED_APPS": "regions,vectorization,tests.demos.dummy", "DATA_FOLDER": str(self.data),
            "DEVICE_NB": "", "DOCKER_NETWORK": "host", "DOCKER_BASE_IMAGE": base_image, "DOCKER_IMAGE": IMAGE,
            "DOCKER_CONTAINER": CONTAINER, "API_BIND": "127.0.0.1", "API_PUBLISH_PORT": str(self.port),
            "REDIS_PORT": str(self.redis_port), "GUNICORN_WORKERS": "1", "NGINX_WORKERS": "1",
            "WORKER_HEARTBEAT_S": "1", "BROKER_HEARTBEAT_TIMEOUT_S": "3", "BROKER_MAINTENANCE_CHANCE": "1000000",
            "WORKER_STOP_WAIT_S": str(STOP_WAIT_S), "PROGRESS_INTERVAL_S": "0.2",
            "REGIONS_BATCH_SIZE": "4", "INFERENCE_RUNTIME": "torch",
            "MODELS_INSTALL_DEFAULTS": "false",  # the test installs its own model
        }
        self.env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        self.env_file.chmod(0o644)

    def docker_sh(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        env = {**os.environ, **self.engine.env, "ENV_FILE": str(self.env_file)}
        return subprocess.run(["bash", str(ROOT / "docker.sh"), *args], check=False, env=env, capture_output=True,
                              text=True, timeout=timeout)

    def health(self) -> str:
        done = self.engine.docker("inspect", "--format", "{{.State.Health.Status}}", CONTAINER, check=False)
        return done.stdout.strip()

    def wait_healthy(self) -> None:
        wait_until(lambda: self.health() == "healthy", HEALTHY_WAIT_S, "Docker's health check", interval=1,
                   diagnose=self.logs)
        wait_until(lambda: self.http.get(f"{self.url}/ready", timeout=5).status_code == 200, 120,
                   "a worker (/ready)", interval=0.5, diagnose=self.logs)

    def logs(self) -> str:
        done = self.engine.docker("logs", "--tail", "150", CONTAINER, check=False)
        return f"== health: {self.health()}\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"

    def submit(self, app: str, files: list[tuple[str, bytes]], **params) -> str:
        upload = [("files", (name, data, "image/png")) for name, data in files]
        response = self.http.post(f"{self.url}/{app}/start", files=upload,
                                  data={"parameters": json.dumps(params)}, timeout=60)
        assert response.status_code == 202, response.text
        return response.json()["tracking_id"]

    def status(self, app: str, tracking_id: str) -> dict:
        return self.http.get(f"{self.url}/{app}/{tracking_id}/status", timeout=10).json()

    def on_disk(self, app: str, tracking_id: str) -> dict:
        """The job's `job.json`, as the container wrote it in DATA_FOLDER."""
        return json.loads((self.data / "results" / app / tracking_id / JOB_FILE).read_text())

    def finished(self, app: str, tracking_id: str) -> dict:
        """The ended job's status, once its `job.json` records the end too: the worker mirrors the
        end to disk just after Redis has it, so until then the folder may hold that write's temp file."""
        status = wait_until(lambda: (s := self.status(app, tracking_id))["state"] in ("SUCCESS", "FAILURE", "CANCELLED")
                            and s, JOB_WAIT_S, f"{app} job {tracking_id} to end", interval=0.5, diagnose=self.logs)
        wait_until(lambda: self.on_disk(app, tracking_id).get("finished_at"), 30,
                   f"{app} job {tracking_id}'s end on disk", interval=0.2, diagnose=self.logs)
        return status

    def gunicorn_headers(self, path: str) -> str:
        """Response headers of gunicorn itself, asked on its socket inside the container."""
        done = self.engine.docker("exec", CONTAINER, "curl", "--silent", "--dump-header", "-", "--output",
                                  "/dev/null", "--unix-socket", "/home/demo/run/gunicorn.sock", f"http://localhost{path}")
        return done.stdout


@pytest.fixture(scope="session")  # set up before the session's trained_yolo: a skip costs no training
def engine():
    try:
        started = Engine().start()
    except EngineUnavailable as exc:
        pytest.skip(f"no Docker engine: {exc}")
    yield started
    started.stop()


@pytest.fixture(scope="module")
def container(request, engine, trained_yolo):
    base = Path(tempfile.mkdtemp(prefix="img-", dir="/tmp"))
    deployed = Container(engine, base)
    try:
        engine.docker("rm", "--force", CONTAINER, check=False)  # a killed run's container, restarted by dockerd
        started = time.monotonic()
        base_image = engine.base_image()
        say(request, f"base image {base_image} ready in {time.monotonic() - started:.0f} s")
        deployed.write_env(base_image)
        models = deployed.data / "models" / "regions"
        models.mkdir(parents=True)
        shutil.copy(trained_yolo, models / "pages.pt")
        if os.getuid() == 0:
            subprocess.run(["chown", "-R", f"{IMAGE_UID}:{IMAGE_UID}", str(deployed.data)], check=True)
        started = time.monotonic()
        built = deployed.docker_sh("rebuild", timeout=BUILD_TIMEOUT_S)
        assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-8000:]
        took = time.monotonic() - started
        size = int(engine.docker("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout)
        # tag the build stage (all cached: seconds) so pruning keeps its layers for the next run
        engine.docker("build", "--quiet", "--network", "host", "--build-arg", f"BASE_IMAGE={base_image}",
                      "--target", "build", "--tag", f"{IMAGE}:build", str(ROOT), timeout=BUILD_TIMEOUT_S)
        engine.prune()
        say(request, f"docker.sh rebuild (build + start) took {took:.0f} s; "
                     f"image {IMAGE}: {size / 1e9:.2f} GB")
        deployed.wait_healthy()
        yield deployed
    finally:
        deployed.http.close()
        engine.docker("rm", "--force", CONTAINER, check=False)
        subprocess.run(["rm", "-rf", str(base)], check=False)


def assert_served_as_on_disk(c: Container, app: str, tracking_id: str) -> int:
    """Every file of the job's results folder, fetched through nginx, is the file on disk; the zip
    came by X-Accel (gunicorn answers it with a redirect only). Returns how many files."""
    folder = c.data / "results" / app / tracking_id
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != ZIP_NAME)
    assert files
    for relpath in files:
        served = c.http.get(f"{c.url}/{app}/{tracking_id}/result/{relpath}", timeout=30)
        assert served.status_code == 200, (relpath, served.status_code, served.text[:300])
        assert served.content == (folder / relpath).read_bytes(), relpath
    archive = c.http.get(f"{c.url}/{app}/{tracking_id}/result", timeout=60)
    assert archive.status_code == 200 and archive.content == (folder / ZIP_NAME).read_bytes()
    assert "X-Accel-Redirect" not in archive.headers
    assert zipfile.ZipFile(io.BytesIO(archive.content)).testzip() is None
    redirect = c.gunicorn_headers(f"/{app}/{tracking_id}/result")
    assert f"X-Accel-Redirect: /xaccel/{app}/{tracking_id}/{ZIP_NAME}" in redirect, redirect
    return len(files)


def test_the_image_runs_as_the_data_folders_owner_on_debians_python(container):
    c = container
    who = c.engine.docker("exec", CONTAINER, "bash", "-c",
                          "id -u; readlink -f \"$(command -v python)\"; python -c 'import sys; print(sys.prefix)'; "
                          "dpkg -S /usr/bin/python3.11").stdout.split()
    assert who[:3] == [str(IMAGE_UID), "/usr/bin/python3.11", "/opt/venv"]  # Debian's Python, the venv's packages
    assert who[3].startswith("python3.11")  # the interpreter belongs to a Debian package
    assert c.http.get(f"{c.url}/health", timeout=10).json()["status"] == "ok"


def test_vectorization_and_regions_jobs_through_nginx_with_results_byte_identical(container):
    from PIL import Image

    from api.demos.vectorization.synthetic import generate
    from tests.support.synthetic_pages import make_page

    c = container

    def png(image) -> bytes:
        buffer = io.BytesIO()
        (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buffer, "PNG")
        return buffer.getvalue()

    vectorization = c.submit("vectorization", [(f"diagram{i}.png", png(generate(seed, 600).image))
                                               for i, seed in enumerate((100, 101))])
    regions = c.submit("regions", [(f"page{i}.png", png(make_page(seed).image)) for i, seed in enumerate((9000, 9001))])
    for app, tracking_id in (("vectorization", vectorization), ("regions", regions)):
        status = c.finished(app, tracking_id)
        assert status["state"] == "SUCCESS" and not status.get("errors"), status
        assert assert_served_as_on_disk(c, app, tracking_id) >= 4
        owners = {p.stat().st_uid for p in (c.data / "results" / app / tracking_id).rglob("*")}
        assert owners == {IMAGE_UID}  # written by the image's user, the host's owner of DATA_FOLDER
    svg = next((c.data / "results" / "vectorization" / vectorization).rglob("*.svg")).read_text()
    assert "<svg" in svg and ("<path" in svg or "<line" in svg or "<circle" in svg)


def test_docker_stop_with_a_job_in_flight_then_start_loses_nothing(container):
    c = container
    images = [(f"img{i}.png", png_bytes((i * 20 % 256, 10, 10))) for i in range(DELAYED_IMAGES)]
    running = c.submit("dummy", images, delay=1.0)
    waiting = c.submit("dummy", images[:2])
    wait_until(lambda: c.status("dummy", running)["progress"]["done"] > 0, 120, "the first job to make progress",
               diagnose=c.logs)
    assert c.status("dummy", waiting)["state"] == "PENDING"
    stopped = c.engine.docker("stop", "-t", "120", CONTAINER, timeout=180)
    assert stopped.returncode == 0
    assert not port_open(c.port)
    assert c.on_disk("dummy", running)["state"] == "STARTED"  # cut short: its end is not written
    c.engine.docker("start", CONTAINER)
    c.wait_healthy()
    for tracking_id, count in ((running, DELAYED_IMAGES), (waiting, 2)):
        status = c.finished("dummy", tracking_id)
        assert status["state"] == "SUCCESS", status
        assert len(list((c.data / "results" / "dummy" / tracking_id).rglob("img*.json"))) == count
    assert c.on_disk("dummy", running)["attempts"] >= 2  # it ran again after the start


def test_docker_sh_status_logs_restart_and_stop_on_the_real_engine(container):
    c = container
    status = c.docker_sh("status", timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr
    assert CONTAINER in status.stdout and "RUNNING" in status.stdout and "worker-cpu" in status.stdout
    logs = c.docker_sh("logs", "--tail", "500", timeout=60)
    assert logs.returncode == 0 and "stack configuration rendered" in logs.stdout + logs.stderr
    before = c.engine.docker("inspect", "--format", "{{.Id}}", CONTAINER).stdout
    restarted = c.docker_sh("restart", timeout=300)
    assert restarted.returncode == 0, restarted.stderr
    assert f"API on http://127.0.0.1:{c.port}" in restarted.stderr
    assert c.engine.docker("inspect", "--format", "{{.Id}}", CONTAINER).stdout != before  # a new container
    c.wait_healthy()
    tracking_id = c.submit("dummy", [("one.png", png_bytes())])
    assert c.finished("dummy", tracking_id)["state"] == "SUCCESS"
    stopped = c.docker_sh("stop", timeout=300)
    assert stopped.returncode == 0 and f"stopped {CONTAINER}" in stopped.stderr
    assert c.engine.docker("ps", "--all", "--quiet", "--filter", f"name=^/{CONTAINER}$").stdout.strip() == ""
    assert not port_open(c.port)
