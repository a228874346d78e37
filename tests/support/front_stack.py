"""The whole thing on loopback for the front's tests: the real API (Flask app on a Werkzeug
server thread), a real dramatiq worker and callback sender (processes), Redis, and the front
(another server thread) that the API calls back; plus a headless chromium driven by Selenium.

Nothing is mocked: the front reaches the API over HTTP with a token, the API's sender POSTs
signed callbacks to the front's /callback.
"""
from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from werkzeug.serving import make_server

from api.platform.embedded import free_port
from tests.support import ROOT

CHROMIUM = os.environ.get("FRONT_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FRONT_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,1000", "--force-device-scale-factor=1")


class ServerThread:
    """A WSGI app on 127.0.0.1:<port> in a daemon thread (threaded: polls, files and callbacks at once)."""

    def __init__(self, app, port: int | None = None):
        self.port = port or free_port()
        self.server = make_server("127.0.0.1", self.port, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Stack:
    api_url: str
    front_url: str
    front_app: object
    api_token: str
    callback_secret: str
    data_folder: Path
    front_data: Path

    @property
    def store(self):
        return self.front_app.extensions["front_store"]

    def api_get(self, path: str, **kwargs):
        import requests

        return requests.get(self.api_url + path, headers={"Authorization": f"Bearer {self.api_token}"},
                            timeout=30, **kwargs)


def chromium(download_dir: Path):
    """A fresh headless chromium (own profile, no network beyond loopback), downloads to `download_dir`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='front-chromium-')}")
    options.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                              "download.prompt_for_download": False,
                                              "safebrowsing.enabled": False})
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for drivers online
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
    driver.implicitly_wait(0)
    return driver


def screenshot(driver, name: str) -> Path | None:
    """With FRONT_SCREENSHOTS=<folder> (e.g. docs), the whole page as <folder>/front-<name>.png."""
    folder = os.environ.get("FRONT_SCREENSHOTS")
    if not folder:
        return None
    target = Path(folder)
    if not target.is_absolute():
        target = ROOT / target
    target.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(int(height) + 120, 800), 3000))
    driver.execute_script("window.scrollTo(0, 0)")
    driver.execute_script(  # lazy images inside the taller window have loaded before the picture is taken
        "return Promise.all(Array.from(document.images).map(i => i.complete ? 0 : new Promise(r => {"
        " i.onload = i.onerror = r; setTimeout(r, 3000); })))")
    time.sleep(0.3)
    path = target / f"front-{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 1000)
    return path


def wait_download(folder: Path, suffix: str, timeout: float = 30) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [p for p in folder.iterdir() if p.name.endswith(suffix)]
        if done:
            return done[0]
        time.sleep(0.1)
    raise AssertionError(f"no {suffix} downloaded into {folder}: {[p.name for p in folder.iterdir()]}")
