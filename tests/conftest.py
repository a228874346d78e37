"""Shared fixtures and pytest hooks: a real redis-server, a fresh DATA_FOLDER, a local HTTP server,
real worker processes, a trained detector. The plain helpers they use live in tests/support/."""
from __future__ import annotations

import json

import pytest
import redis

from api import create_app
from api.platform.config import load_config
from api.platform.embedded import EmbeddedRedis
from tests.support.httpserver import LocalServer
from tests.support.platform import Processes, platform_env
from tests.support.synthetic_pages import TRAIN_THREADS, YOLO_IMGSZ, write_yolo_dataset


def pytest_configure(config):
    config.addinivalue_line("markers",
                            "stack: the deployment stack (nginx, supervisord, redis-server, spiped) on loopback")
    config.addinivalue_line("markers", "browser: drives the distribution's chromium against the real front and API")
    config.addinivalue_line("markers", "image: builds and runs the real Docker image on a private dockerd "
                                       "(tests/support/docker_engine.py)")


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
    application = create_app(load_config(env))
    application.testing = True
    return application


@pytest.fixture
def client(app):
    return app.test_client()


# -- a small YOLO detector trained here, for the regions demo and whoever chains it -----------------
@pytest.fixture(scope="session")
def trained_yolo(tmp_path_factory):
    """A two-class detector (illustration, diagram) trained from scratch on tests/support/synthetic_pages.py:
    ~1 min on 2 CPU cores.

    Seeded and deterministic; ultralytics sets PyTorch to cpu_count - 1 threads (at most 8) when
    it picks the device, and float sums split over other thread counts round differently, so
    the thread count is set again once training starts. The threads of each epoch are recorded
    in training.json beside the weights."""
    # Heavy libraries only for the tests that ask for the detector; ultralytics reads its settings
    # folder when imported, so quiet_ultralytics comes first.
    from api.demos.regions.common import quiet_ultralytics

    folder = tmp_path_factory.mktemp("yolo")
    quiet_ultralytics(folder / "settings")
    import torch
    from ultralytics import YOLO

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
