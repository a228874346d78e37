"""The children of `python -m api serve`, kept running as supervisord keeps the stack's.

A worker that dies (killed for memory, a crash in a native library) is started again after a
back-off that doubles while it keeps dying quickly, and is reset once it stayed up a while; the
API and the other workers go on meanwhile. Before, one dead child stopped everything, so one bad
request could take the whole service down.
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 60.0  # a child up this long is healthy again: its next restart is quick


@dataclass
class Child:
    name: str
    command: list[str]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff_s: float = BACKOFF_FIRST_S
    restart_at: float | None = None  # when a dead child is due to start again
    stop_last: bool = False  # the others need it while they stop (Redis)


class Supervisor:
    def __init__(self, commands: dict[str, list[str]], env: dict[str, str]):
        self.env = env
        self.children = {name: Child(name, command) for name, command in commands.items()}

    def start(self) -> None:
        for child in self.children.values():
            if child.process is None:
                self._spawn(child)

    def adopt(self, name: str, command: list[str], process: subprocess.Popen) -> None:
        """Watch a child started elsewhere (the embedded Redis, started first and waited for); it
        is stopped after the others, which may still write to it on their way out."""
        self.children[name] = Child(name, command, process, started_at=time.monotonic(), stop_last=True)

    def _spawn(self, child: Child) -> None:
        child.process = subprocess.Popen(child.command, env=self.env)
        child.started_at = time.monotonic()
        child.restart_at = None

    def check(self, now: float | None = None) -> None:
        """Notice dead children and start the ones whose back-off is over."""
        now = time.monotonic() if now is None else now
        for child in self.children.values():
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restarts += 1
                    print(f"{child.name}: starting again (restart {child.restarts})", file=sys.stderr, flush=True)
                    self._spawn(child)
                continue
            code = child.process.poll() if child.process else None
            if code is None:
                continue
            if now - child.started_at >= STABLE_AFTER_S:
                child.backoff_s = BACKOFF_FIRST_S
            child.restart_at = now + child.backoff_s
            print(f"{child.name} exited with {code}; starting it again in {child.backoff_s:.0f} s",
                  file=sys.stderr, flush=True)
            child.backoff_s = min(child.backoff_s * 2, BACKOFF_MAX_S)

    def run(self, stopping: threading.Event, interval_s: float = 0.5) -> None:
        while not stopping.is_set():
            self.check()
            stopping.wait(interval_s)

    def stop(self, timeout_s: float = 20.0) -> None:
        for last in (False, True):
            alive = [c.process for c in self.children.values()
                     if c.stop_last == last and c.process and c.process.poll() is None]
            for proc in alive:
                proc.terminate()
            for proc in alive:
                try:
                    proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
