"""Running the deployment stack on this host for tests: docker-confs/run-local.sh under supervisord,
spiped tunnels started from the systemd units' own ExecStart lines, and a cleanup that leaves no
process behind (every process of a stack shares the session the test started it in).
"""
from __future__ import annotations

import http.client
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support import ROOT

CONFS = ROOT / "docker-confs"


def process_stats() -> list[tuple[int, list[str]]]:
    """(pid, the fields of /proc/<pid>/stat after the command name) of every live process:
    fields[0] is the state, [1] the parent, [3] the session, [11] and [12] user and system ticks."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        found.append((int(entry.name), stat[stat.rindex(")") + 2:].split()))
    return found


def session_pids(sid: int) -> list[int]:
    """Every live process whose session id is `sid` (the test gave each stack its own session)."""
    return [pid for pid, fields in process_stats() if int(fields[3]) == sid and fields[0] != "Z"]


def kill_session(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM the leader (supervisord stops its programs), then SIGKILL whatever is left."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    for pid in session_pids(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if proc.poll() is None:
        proc.wait(10)


class Stack:
    """`docker-confs/run-local.sh` with the given settings; `ctl` talks to its supervisord."""

    def __init__(self, env: dict[str, str], run_folder: Path, log: Path):
        self.env = env
        self.run_folder = run_folder
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> Stack:
        handle = open(self.log, "ab")  # append: supervisord's programs reopen /dev/stdout
        self.proc = subprocess.Popen(["bash", str(CONFS / "run-local.sh")], cwd=ROOT, env=self.env, stdout=handle,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        handle.close()
        return self

    def ctl(self, *args: str) -> str:
        done = subprocess.run(["supervisorctl", "-c", str(self.run_folder / "supervisord.conf"), *args],
                              capture_output=True, text=True, timeout=60)
        return done.stdout + done.stderr

    def pid(self, program: str) -> int:
        return int(self.ctl("pid", program).strip() or 0)

    def logs(self, tail: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-tail:] if self.log.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            kill_session(self.proc)


def unit_command(unit: Path, overrides: dict[str, str], credentials: Path) -> list[str]:
    """The ExecStart of a systemd unit as systemd would run it: its Environment= defaults,
    overridden like /etc/default would, `${VAR}` expanded and `%d` the credentials folder."""
    values: dict[str, str] = {}
    command = ""
    for line in unit.read_text().splitlines():
        if line.startswith("Environment="):
            key, _, value = line[len("Environment="):].partition("=")
            values[key] = value
        elif line.startswith("ExecStart="):
            command = line[len("ExecStart="):]
    values.update(overrides)
    command = re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], command).replace("%d", str(credentials))
    return shlex.split(command)


def start_process(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    handle = open(log, "ab")
    proc = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    handle.close()
    return proc


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket: to ask gunicorn directly, behind nginx's back."""

    def __init__(self, path: str, timeout: float = 10):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def unix_get(path: str, url: str) -> http.client.HTTPResponse:
    connection = UnixHTTPConnection(path)
    connection.request("GET", url)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def wait_until(predicate, timeout: float, message: str, interval: float = 0.2, diagnose=None):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except Exception:  # noqa: BLE001 - a server still starting refuses connections
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}" + (f"\n{diagnose()}" if diagnose else ""))
        time.sleep(interval)
