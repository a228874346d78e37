"""The platform as the tests run it: settings, real worker and sender processes, polling, payloads."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import redis
from PIL import Image

from tests.support import ROOT

DUMMY = "tests.demos.dummy"
T = TypeVar("T")


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
        "MODELS_INSTALL_DEFAULTS": "false",  # tests install what they need; nothing reaches the package index
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
        client = redis.Redis.from_url(self.env["REDIS_URL"])
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


def stop_group(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Stop a process started with start_new_session and everything it started (SIGTERM, then SIGKILL)."""
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.1, message: str = "condition") -> T:
    """Poll until `predicate()` is truthy; return its value, or fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(interval)


def png_bytes(colour: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def json_of(response: Any) -> dict:
    return json.loads(response.data)


def use_regions(env: dict, procs: Processes, model: Path, name: str = "pages.pt", **settings: str) -> dict:
    """Install `model` as DATA_FOLDER/models/regions/<name> and point the API's and the workers'
    settings at the regions demo (plus `settings`); returns `env`."""
    folder = Path(env["DATA_FOLDER"]) / "models" / "regions"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(model, folder / name)
    settings = {"INSTALLED_APPS": "regions", **settings}
    env.update(settings)
    procs.env.update(settings)
    return env
