"""Shared fixtures: a real redis-server, a fresh DATA_FOLDER, a local HTTP server."""
from __future__ import annotations

import pytest
import redis

from api.platform.config import load_config
from api.platform.embedded import EmbeddedRedis
from tests.httpserver import LocalServer


def pytest_configure(config):
    config.addinivalue_line("markers", "stack: the deployment stack (nginx, supervisord, redis-server, spiped) on loopback")
    config.addinivalue_line("markers", "browser: drives the distribution's chromium against the real front and API")
    config.addinivalue_line("markers", "image: builds and runs the real Docker image on a private dockerd "
                                       "(tests/docker_engine.py)")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One real redis-server process for the whole run (TCP on 127.0.0.1, no persistence)."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), appendonly=False, port=0)
    with server:
        yield server


@pytest.fixture
def redis_url(redis_server) -> str:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def data_folder(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


@pytest.fixture
def config(data_folder, redis_url):
    """A Config for tests: loopback downloads allowed, fast retries, no `.env` read."""
    return load_config({
        "ENV_FILE": "/nonexistent",
        "DATA_FOLDER": str(data_folder),
        "REDIS_URL": redis_url,
        "ALLOW_PRIVATE_URLS": "1",
        "CALLBACK_BACKOFF_S": "0.2",
        "CALLBACK_BACKOFF_MAX_S": "1",
        "CALLBACK_TIMEOUT_S": "2",
        "DOWNLOAD_TIMEOUT_S": "5",
    })


@pytest.fixture
def http_server():
    with LocalServer() as server:
        yield server


# -- the platform with real worker processes --------------------------------------------------------
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DUMMY = "tests.demos.dummy"


def platform_env(data_folder: Path, redis_url: str, **extra: str) -> dict[str, str]:
    """Settings for API and workers in tests: the dummy demo, fast heartbeats and re-delivery."""
    env = {
        "ENV_FILE": "/nonexistent",
        "DATA_FOLDER": str(data_folder),
        "REDIS_URL": redis_url,
        "INSTALLED_APPS": DUMMY,
        "ALLOW_PRIVATE_URLS": "1",
        "WORKER_HEARTBEAT_S": "0.5",
        "BROKER_HEARTBEAT_TIMEOUT_S": "3",
        "BROKER_MAINTENANCE_CHANCE": "1000000",
        "CALLBACK_BACKOFF_S": "0.3",
        "CALLBACK_BACKOFF_MAX_S": "1",
        "CALLBACK_TIMEOUT_S": "2",
        "CANCEL_GRACE_S": "10",
        "PROGRESS_INTERVAL_S": "0.2",
        "DOWNLOAD_TIMEOUT_S": "5",
    }
    env.update(extra)
    return env


class Processes:
    """Real worker / sender processes for one test, all stopped at its end."""

    def __init__(self, env: dict[str, str], log_folder: Path):
        self.env = {**os.environ, **env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        self.log_folder = log_folder
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str, name: str) -> subprocess.Popen:
        log = open(self.log_folder / f"{name}-{len(self.procs)}.log", "wb")
        proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def worker(self, wait: bool = True, queue: str = "dummy", timeout: float = 30) -> subprocess.Popen:
        """`dramatiq api.worker -p 1 -t 1 -Q <queue>`, as in production; waits for its first heartbeat."""
        import redis as redis_lib

        client = redis_lib.Redis.from_url(self.env["REDIS_URL"])
        before = set(client.hkeys("workers:info"))
        proc = self.start("-m", "dramatiq", "api.worker", "-p", "1", "-t", "1", "-Q", queue, name="worker")
        deadline = time.monotonic() + timeout
        while wait:
            if set(client.hkeys("workers:info")) - before:
                break
            assert proc.poll() is None, self.logs()
            assert time.monotonic() < deadline, "worker sent no heartbeat\n" + self.logs()
            time.sleep(0.1)
        return proc

    def sender(self) -> subprocess.Popen:
        return self.start("-m", "api", "callbacks", name="callbacks")

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in self.log_folder.glob("*.log"))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, 15)
                except ProcessLookupError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()


@pytest.fixture
def env(data_folder, redis_url):
    return platform_env(data_folder, redis_url)


@pytest.fixture
def procs(env, tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    processes = Processes(env, folder)
    yield processes
    processes.stop()


@pytest.fixture
def app(env):
    from api import create_app

    application = create_app(load_config(env))
    application.testing = True
    return application


@pytest.fixture
def client(app):
    return app.test_client()


def stop_group(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Stop a process started with start_new_session and everything it started (SIGTERM, then SIGKILL)."""
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1, message: str = "condition"):
    """Poll until `predicate()` is truthy; return its value, or fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(interval)


def png_bytes(colour=(200, 30, 30), size=(32, 24)) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def json_of(response) -> dict:
    return json.loads(response.data)


# -- a small YOLO detector trained here, for the regions demo and whoever chains it -----------------
YOLO_IMGSZ = 160  # the detector is trained and run at this size
TRAIN_THREADS = 2  # every machine trains it with this many threads: the same sums, so the same weights


@pytest.fixture(scope="session")
def trained_yolo(tmp_path_factory):
    """A two-class detector (illustration, diagram) trained from scratch: ~1 min on 2 CPU cores.

    Seeded and deterministic; ultralytics sets PyTorch to cpu_count - 1 threads (at most 8) when
    it picks the device, and float sums split over other thread counts round differently, so
    the thread count is set again once training starts. The threads of each epoch are recorded
    in training.json beside the weights."""
    from api.demos.regions.detector import quiet_ultralytics

    folder = tmp_path_factory.mktemp("yolo")
    quiet_ultralytics(folder / "settings")
    import torch
    from ultralytics import YOLO

    from tests.synthetic_pages import write_yolo_dataset

    data = write_yolo_dataset(folder / "dataset", train=96, val=4)
    model = YOLO("yolov8n.yaml")
    threads: list[int] = []
    model.add_callback("on_pretrain_routine_start", lambda trainer: torch.set_num_threads(TRAIN_THREADS))
    model.add_callback("on_train_epoch_start", lambda trainer: threads.append(torch.get_num_threads()))
    model.train(data=str(data), epochs=40, imgsz=YOLO_IMGSZ, batch=16, workers=0, plots=False, val=False, amp=False,
                device="cpu", project=str(folder / "runs"), name="pages", exist_ok=True, verbose=False,
                mosaic=0.0, seed=0, deterministic=True)
    weights = folder / "runs" / "pages" / "weights"
    (weights / "training.json").write_text(json.dumps({"threads_per_epoch": threads}))
    return weights / "last.pt"


def use_regions(env: dict, procs: Processes, model: Path, name: str = "pages.pt", **settings: str) -> dict:
    """Install `model` as DATA_FOLDER/models/regions/<name> and point the API's and the workers'
    settings at the regions demo (plus `settings`); returns `env`."""
    import shutil

    folder = Path(env["DATA_FOLDER"]) / "models" / "regions"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(model, folder / name)
    settings = {"INSTALLED_APPS": "regions", **settings}
    env.update(settings)
    procs.env.update(settings)
    return env
