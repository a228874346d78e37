"""The deployment stack, for real, without a Docker engine: the configuration the image runs
(docker-confs/, rendered by render.py, run by supervisord with the distribution's nginx,
redis-server and spiped) started on loopback ports, reached through the spiped tunnel that the
systemd units describe; and docker.sh, checked with bash -n, shellcheck and a `docker` stand-in.
"""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests

from api.platform.embedded import free_port
from tests.conftest import ROOT, png_bytes
from tests.stack_helpers import (CONFS, Stack, kill_session, port_open, start_process, unit_command, unix_get,
                                 wait_until)

pytestmark = pytest.mark.stack

UPLOAD_LIMIT = 1 << 20
QUEUED_JOBS = 1000


def stack_env(data: Path, run: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "CUDA_VISIBLE_DEVICES", "DEVICE_NB", "WORKER_GPUS", "STACK_ROLE")}
    env.update({
        "ENV_FILE": "/nonexistent", "PYTHONPATH": str(ROOT), "STACK_PYTHON": str(ROOT / ".venv" / "bin" / "python")
        if (ROOT / ".venv" / "bin" / "python").exists() else "",
        "DATA_FOLDER": str(data), "RUN_FOLDER": str(run), "INSTALLED_APPS": "tests.demos.dummy",
        "ALLOW_PRIVATE_URLS": "1", "WORKER_HEARTBEAT_S": "0.5", "BROKER_HEARTBEAT_TIMEOUT_S": "3",
        "BROKER_MAINTENANCE_CHANCE": "1000000", "MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
        "MAX_QUEUE_LENGTH": str(QUEUED_JOBS + 100), "GUNICORN_WORKERS": "1", "GUNICORN_THREADS": "8",
        "NGINX_WORKERS": "1", "WORKER_STOP_WAIT_S": "5", "PROGRESS_INTERVAL_S": "0.2",
    })
    if not env["STACK_PYTHON"]:
        import sys

        env["STACK_PYTHON"] = sys.executable
    env.update(extra)
    return env


class Deployment:
    """The API host's stack plus both ends of the front tunnel; `url` is what the front calls."""

    def __init__(self, base: Path):
        self.base = base
        self.data = base / "data"
        self.ports = {name: free_port() for name in ("nginx", "redis", "redis_tunnel", "spiped_d", "spiped_e")}
        self.url = f"http://127.0.0.1:{self.ports['spiped_e']}"
        self.stack = Stack(stack_env(self.data, base / "run", NGINX_LISTEN=f"127.0.0.1:{self.ports['nginx']}",
                                     REDIS_PORT=str(self.ports["redis"]),
                                     REDIS_TUNNEL_PORT=str(self.ports["redis_tunnel"]), REDIS_TUNNEL_BIND="127.0.0.1",
                                     DEVICE_NB="0"),
                           base / "run", base / "stack.log")
        self.tunnels: list[subprocess.Popen] = []
        self.others: list[Stack] = []
        self.redis = redis.Redis(port=self.ports["redis"], socket_timeout=5)
        self.http = requests.Session()

    def start(self) -> None:
        keys = self.base / "keys"
        subprocess.run(["bash", str(CONFS / "spiped" / "keygen.sh"), str(keys / "spiped.key")], check=True)
        subprocess.run(["bash", str(CONFS / "spiped" / "keygen.sh"), str(self.data / "keys" / "redis.key")],
                       check=True)
        self.stack.start()
        api_side = unit_command(CONFS / "spiped" / "spiped-demo-api.service", {
            "SPIPED_SOURCE": f"[127.0.0.1]:{self.ports['spiped_d']}",
            "SPIPED_TARGET": f"[127.0.0.1]:{self.ports['nginx']}"}, keys)
        front_side = unit_command(CONFS / "spiped" / "spiped-demo-front.service", {
            "SPIPED_SOURCE": f"[127.0.0.1]:{self.ports['spiped_e']}",
            "SPIPED_TARGET": f"127.0.0.1:{self.ports['spiped_d']}"}, keys)
        assert api_side[:3] == ["/usr/bin/spiped", "-F", "-d"] and front_side[:3] == ["/usr/bin/spiped", "-F", "-e"]
        self.tunnels = [start_process(api_side, self.base / "spiped-d.log"),
                        start_process(front_side, self.base / "spiped-e.log")]
        wait_until(lambda: self.http.get(f"{self.url}/health", timeout=5).json()["status"] == "ok", 60,
                   "the API through the tunnel", diagnose=self.logs)
        wait_until(lambda: self.workers(), 60, "a worker heartbeat", diagnose=self.logs)

    def workers(self) -> list[dict]:
        return [json.loads(v) for v in self.redis.hvals("workers:info")]

    def logs(self) -> str:
        parts = [f"== stack\n{self.stack.logs()}"] + [f"== {s.log.name}\n{s.logs()}" for s in self.others]
        parts += [f"== {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in self.base.glob("spiped-*.log")]
        return "\n".join(parts)

    def submit(self, images: int = 1, session: requests.Session | None = None, **params) -> str:
        files = [("files", (f"img{i}.png", png_bytes((i * 40 % 256, 10, 10)), "image/png")) for i in range(images)]
        response = (session or self.http).post(f"{self.url}/dummy/start", files=files,
                                               data={"parameters": json.dumps(params)}, timeout=30)
        assert response.status_code == 202, response.text
        return response.json()["tracking_id"]

    def status(self, tracking_id: str) -> dict:
        return self.http.get(f"{self.url}/dummy/{tracking_id}/status", timeout=10).json()

    def finished(self, tracking_id: str, timeout: float = 60) -> dict:
        return wait_until(lambda: (s := self.status(tracking_id))["state"] in ("SUCCESS", "FAILURE", "CANCELLED") and s,
                          timeout, f"job {tracking_id} to end", diagnose=self.logs)

    def stop(self) -> None:
        for other in self.others:
            other.stop()
        for tunnel in self.tunnels:
            kill_session(tunnel, grace=5)
        self.stack.stop()


@pytest.fixture(scope="module")
def deployment():
    base = Path(tempfile.mkdtemp(prefix="stk-", dir="/tmp"))  # short: unix socket paths stay < 108 bytes
    deployed = Deployment(base)
    try:
        deployed.start()
        yield deployed
    finally:
        deployed.stop()
        leftover = [p for p in (deployed.stack.proc, *deployed.tunnels) if p is not None and p.poll() is None]
        assert not leftover, "stack processes left running"
        subprocess.run(["rm", "-rf", str(base)], check=False)


def test_job_through_the_tunnel_with_results_served_by_nginx(deployment):
    d = deployment
    tracking_id = d.submit(images=2, delay=0.1)
    status = d.finished(tracking_id)
    assert status["state"] == "SUCCESS", status
    folder = d.data / "results" / "dummy" / tracking_id
    relpath = next(p.relative_to(folder).as_posix() for p in sorted(folder.rglob("img0*.json")))

    one = d.http.get(f"{d.url}/dummy/{tracking_id}/result/{relpath}", timeout=10)
    assert one.status_code == 200
    assert one.content == (folder / relpath).read_bytes() and json.loads(one.content)["width"] == 32
    assert "X-Accel-Redirect" not in one.headers
    assert one.headers["Content-Type"] == "application/json"
    assert one.headers["X-Content-Type-Options"] == "nosniff"

    # behind nginx's back, gunicorn answers with the redirect only: the body above came from nginx
    direct = unix_get(str(d.base / "run" / "gunicorn.sock"), f"/dummy/{tracking_id}/result/{relpath}")
    assert direct.getheader("X-Accel-Redirect") == f"/xaccel/dummy/{tracking_id}/{relpath}"

    archive = d.http.get(f"{d.url}/dummy/{tracking_id}/result", timeout=10)
    assert archive.status_code == 200 and "attachment" in archive.headers["Content-Disposition"]
    assert "job.json" in zipfile.ZipFile(io.BytesIO(archive.content)).namelist()

    (folder / "drawing.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    svg = d.http.get(f"{d.url}/dummy/{tracking_id}/result/drawing.svg", timeout=10)
    assert svg.status_code == 200 and svg.content.startswith(b"<svg")
    assert svg.headers["Content-Disposition"] == 'attachment; filename="drawing.svg"'
    assert svg.raw.headers.getlist("Content-Disposition") == ['attachment; filename="drawing.svg"']
    assert "sandbox" in svg.headers["Content-Security-Policy"]

    # the internal location is not reachable by a client, nor can it list a folder
    for path in (f"/xaccel/dummy/{tracking_id}/{relpath}", f"/xaccel/dummy/{tracking_id}/", "/xaccel/dummy/"):
        assert d.http.get(f"{d.url}{path}", timeout=10).status_code == 404, path
    assert d.http.get(f"{d.url}/dummy/{tracking_id}/result/../../{tracking_id}/job.json", timeout=10).status_code \
        in (400, 404)


def test_upload_above_the_limit_gets_413_from_nginx(deployment):
    d = deployment
    image = png_bytes()
    too_big = d.http.post(f"{d.url}/dummy/start", files=[("files", ("big.png", image + b"\0" * UPLOAD_LIMIT))],
                          timeout=30)
    assert too_big.status_code == 413
    body = too_big.json()
    assert body["error"]["code"] == "too_large" and f"({UPLOAD_LIMIT} bytes), refused by nginx" in \
        body["error"]["message"]
    just_under = d.http.post(f"{d.url}/dummy/start", files=[("files", ("fits.png", image + b"\0" * (UPLOAD_LIMIT - 4096)))],
                             data={"parameters": "{}"}, timeout=30)
    assert just_under.status_code == 202, just_under.text
    assert d.finished(just_under.json()["tracking_id"])["state"] == "SUCCESS"


def test_a_worker_killed_under_supervisord_is_restarted_and_its_job_finished(deployment):
    d = deployment
    tracking_id = d.submit(images=4, delay=0.8)
    wait_until(lambda: d.status(tracking_id)["progress"]["done"] >= 1, 30, "the first image", diagnose=d.logs)
    before = d.stack.pid("workers:worker-gpu0")
    busy = next(w for w in d.workers() if w["job"] and w["job"]["tracking_id"] == tracking_id)
    assert busy["device"] == "0"  # pinned: CUDA_VISIBLE_DEVICES=0 from DEVICE_NB=0
    os.kill(busy["pid"], signal.SIGKILL)
    wait_until(lambda: d.stack.pid("workers:worker-gpu0") not in (0, before), 30, "supervisord to restart the worker",
               diagnose=d.logs)
    status = d.finished(tracking_id, timeout=90)
    assert status["state"] == "SUCCESS", status
    job = d.http.get(f"{d.url}/dummy/{tracking_id}/result/job.json", timeout=10).json()
    assert job["attempts"] == 2


def test_a_worker_on_another_host_joins_through_the_redis_tunnel(deployment):
    d = deployment
    local_port = free_port()
    remote = Stack(stack_env(d.data, d.base / "run2", STACK_ROLE="worker", REDIS_PORT=str(local_port),
                             REDIS_TUNNEL_TARGET=f"[127.0.0.1]:{d.ports['redis_tunnel']}", DEVICE_NB="1"),
                   d.base / "run2", d.base / "worker-host.log")
    d.others.append(remote)
    remote.start()
    wait_until(lambda: any(w["device"] == "1" for w in d.workers()), 60, "the second host's worker", diagnose=d.logs)
    remote_worker = next(w for w in d.workers() if w["device"] == "1")
    environ = Path(f"/proc/{remote_worker['pid']}/environ").read_bytes().split(b"\0")
    assert f"REDIS_URL=redis://127.0.0.1:{local_port}/0".encode() in environ  # through its own tunnel end
    assert "[program:nginx]" not in (d.base / "run2" / "supervisord.conf").read_text()

    assert "stopped" in d.stack.ctl("stop", "workers:*")  # only the other host can take the job now
    try:
        tracking_id = d.submit(images=2)
        status = d.finished(tracking_id)
        assert status["state"] == "SUCCESS", status
        assert (d.data / "results" / "dummy" / tracking_id / "result.zip").is_file()  # shared DATA_FOLDER
    finally:
        d.stack.ctl("start", "workers:*")
        remote.stop()
        d.others.remove(remote)
    assert not remote.alive()


def test_1000_queued_jobs_survive_a_redis_crash(deployment):
    d = deployment
    assert "stopped" in d.stack.ctl("stop", "workers:*")
    sessions = [requests.Session() for _ in range(6)]
    with ThreadPoolExecutor(len(sessions)) as pool:
        ids = list(pool.map(lambda i: d.submit(images=1, session=sessions[i % len(sessions)], labels=[str(i)]),
                            range(QUEUED_JOBS)))
    assert len(set(ids)) == QUEUED_JOBS
    assert d.http.get(f"{d.url}/dummy/qsizes", timeout=10).json()["waiting"] == QUEUED_JOBS

    before = d.stack.pid("redis")
    os.kill(before, signal.SIGKILL)
    wait_until(lambda: d.stack.pid("redis") not in (0, before) and d.redis.ping(), 30, "Redis restarted",
               diagnose=d.logs)
    assert d.http.get(f"{d.url}/dummy/qsizes", timeout=10).json()["waiting"] == QUEUED_JOBS
    monitor = d.http.get(f"{d.url}/dummy/monitor", timeout=10).json()
    assert monitor["jobs"]["PENDING"] == QUEUED_JOBS, monitor
    assert d.status(ids[-1])["state"] == "PENDING"

    d.stack.ctl("start", "workers:*")
    first = d.finished(ids[0], timeout=60)
    assert first["state"] == "SUCCESS" and first["output"]["labels"] == ["0"]
    wait_until(lambda: d.http.get(f"{d.url}/dummy/qsizes", timeout=10).json()["waiting"] < QUEUED_JOBS - 5, 30,
               "the workers to go on with the queue", diagnose=d.logs)


# -- docker.sh, without a Docker engine --------------------------------------------------------------
