"""The deployment stack, for real, without a Docker engine: the configuration the image runs
(docker-confs/, rendered by render.py, run by supervisord with the distribution's nginx,
redis-server and spiped) started on loopback ports, reached through the spiped tunnel that the
systemd units describe; and docker.sh, checked with bash -n, shellcheck and a `docker` stand-in.
"""
from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests

from api.platform.embedded import free_port
from tests.support import ROOT
from tests.support.platform import png_bytes
from tests.support.stack_helpers import CONFS, Stack, kill_session, start_process, unit_command, unix_get, wait_until

pytestmark = pytest.mark.stack

UPLOAD_LIMIT = 1 << 20
QUEUED_JOBS = 1000


def stack_env(data: Path, run: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "CUDA_VISIBLE_DEVICES", "DEVICE_NB", "WORKER_GPUS", "STACK_ROLE")}
    env.update({
        "ENV_FILE": "/nonexistent", "PYTHONPATH": str(ROOT), "STACK_PYTHON": sys.executable,
        "DATA_FOLDER": str(data), "RUN_FOLDER": str(run), "INSTALLED_APPS": "tests.demos.dummy",
        "ALLOW_PRIVATE_URLS": "1", "WORKER_HEARTBEAT_S": "1", "BROKER_HEARTBEAT_TIMEOUT_S": "3",
        "BROKER_MAINTENANCE_CHANCE": "1000000", "MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
        "MAX_QUEUE_LENGTH": str(QUEUED_JOBS + 100), "GUNICORN_WORKERS": "1", "GUNICORN_THREADS": "8",
        "NGINX_WORKERS": "1", "WORKER_STOP_WAIT_S": "5", "PROGRESS_INTERVAL_S": "0.2",
    })
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
        wait_until(lambda: self.http.get(f"{self.url}/health", timeout=5).json()["status"] == "ok", 120,
                   "the API through the tunnel", diagnose=self.logs)
        wait_until(lambda: self.workers(), 120, "a worker heartbeat", diagnose=self.logs)

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

    def finished(self, tracking_id: str, timeout: float = 120) -> dict:
        return wait_until(lambda: (s := self.status(tracking_id))["state"] in ("SUCCESS", "FAILURE", "CANCELLED") and s,
                          timeout, f"job {tracking_id} to end", diagnose=self.logs)

    def stop(self) -> None:
        self.http.close()  # spiped, stopping, waits for its open connections to end
        self.redis.close()
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

    # dataset images (the job's uploads) also leave through nginx, from DATA_FOLDER/uploads
    dataset = d.http.get(f"{d.url}/datasets/{tracking_id}", timeout=10).json()
    listing = d.http.get(dataset["documents"][0]["url"], timeout=10).json()
    image = d.http.get(listing["images"][0]["url"], timeout=10)
    [upload] = [p for p in (d.data / "uploads" / tracking_id).rglob("*") if p.is_file() and
                p.stem == listing["uid"]]
    assert image.status_code == 200 and image.content == upload.read_bytes()
    assert "X-Accel-Redirect" not in image.headers
    download = d.http.get(dataset["documents"][0]["download"], timeout=10)
    assert download.status_code == 200 and zipfile.ZipFile(io.BytesIO(download.content)).namelist()
    assert d.http.get(f"{d.url}/xaccel/_data/uploads/", timeout=10).status_code == 404

    (folder / "drawing.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    svg = d.http.get(f"{d.url}/dummy/{tracking_id}/result/drawing.svg", timeout=10)
    assert svg.status_code == 200 and svg.content.startswith(b"<svg")
    assert svg.headers["Content-Disposition"] == 'attachment; filename="drawing.svg"'
    assert svg.raw.headers.getlist("Content-Disposition") == ['attachment; filename="drawing.svg"']
    assert "sandbox" in svg.headers["Content-Security-Policy"]

    (folder / "sub dir").mkdir()
    (folder / "sub dir" / "page été #1.json").write_text('{"ok": true}')
    odd = d.http.get(f"{d.url}/dummy/{tracking_id}/result/sub%20dir/page%20%C3%A9t%C3%A9%20%231.json", timeout=10)
    assert odd.status_code == 200 and odd.json() == {"ok": True}

    # the internal location is not reachable by a client, nor can it list a folder
    for path in (f"/xaccel/dummy/{tracking_id}/{relpath}", f"/xaccel/dummy/{tracking_id}/", "/xaccel/dummy/"):
        assert d.http.get(f"{d.url}{path}", timeout=10).status_code == 404, path
    assert d.http.get(f"{d.url}/dummy/{tracking_id}/result/../../{tracking_id}/job.json", timeout=10).status_code \
        in (400, 404)


def test_healthcheck_and_status_scripts_read_the_running_stack(deployment):
    d = deployment
    env = {**d.stack.env, "NGINX_LISTEN": f"127.0.0.1:{d.ports['nginx']}"}
    health = subprocess.run(["bash", str(CONFS / "healthcheck.sh")], env=env, capture_output=True, text=True,
                            timeout=30)
    assert health.returncode == 0 and '"status":"ok"' in health.stdout.replace(" ", ""), health.stderr

    def status_script() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(CONFS / "stack_status.py")], env=env, capture_output=True, text=True,
                              timeout=30)

    # a worker whose heartbeat is late under load drops out of the list until its next beat: ask again
    status = wait_until(lambda: (done := status_script()).returncode == 0 and "gpu 0" in done.stdout and done, 30,
                        "status to list the worker", diagnose=lambda: status_script().stdout)
    assert "health: ok" in status.stdout and "dummy: waiting 0" in status.stdout
    down = subprocess.run([sys.executable, str(CONFS / "stack_status.py")],
                          env={**env, "NGINX_LISTEN": str(free_port())}, capture_output=True, text=True, timeout=30)
    assert down.returncode == 1 and "does not answer" in down.stdout


def test_upload_above_the_limit_gets_413_from_nginx(deployment):
    d = deployment
    image = png_bytes()
    too_big = d.http.post(f"{d.url}/dummy/start", files=[("files", ("big.png", image + b"\0" * UPLOAD_LIMIT))],
                          timeout=30)
    assert too_big.status_code == 413
    body = too_big.json()
    assert body["error"]["code"] == "too_large" and f"({UPLOAD_LIMIT} bytes), refused by nginx" in \
        body["error"]["message"]
    fits = image + b"\0" * (UPLOAD_LIMIT - 4096)
    just_under = d.http.post(f"{d.url}/dummy/start", files=[("files", ("fits.png", fits))], data={"parameters": "{}"},
                             timeout=30)
    assert just_under.status_code == 202, just_under.text
    assert d.finished(just_under.json()["tracking_id"])["state"] == "SUCCESS"


def test_a_worker_killed_under_supervisord_is_restarted_and_its_job_finished(deployment):
    d = deployment
    tracking_id = d.submit(images=4, delay=0.8)
    wait_until(lambda: d.status(tracking_id)["progress"]["done"] >= 1, 60, "the first image", diagnose=d.logs)
    before = d.stack.pid("workers:worker-gpu0")
    busy = wait_until(lambda: next((w for w in d.workers() if w["job"] and w["job"]["tracking_id"] == tracking_id),
                                   None), 10, "the busy worker's heartbeat", diagnose=d.logs)
    assert busy["device"] == "0"  # pinned: CUDA_VISIBLE_DEVICES=0 from DEVICE_NB=0
    os.kill(busy["pid"], signal.SIGKILL)
    wait_until(lambda: d.stack.pid("workers:worker-gpu0") not in (0, before), 60, "supervisord to restart the worker",
               diagnose=d.logs)
    status = d.finished(tracking_id, timeout=150)
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
    try:
        remote_worker = wait_until(lambda: next((w for w in d.workers() if w["device"] == "1"), None), 120,
                                   "the second host's worker", diagnose=d.logs)
        environ = Path(f"/proc/{remote_worker['pid']}/environ").read_bytes().split(b"\0")
        assert f"REDIS_URL=redis://127.0.0.1:{local_port}/0".encode() in environ  # through its own tunnel end
        assert "[program:nginx]" not in (d.base / "run2" / "supervisord.conf").read_text()

        def healthcheck() -> subprocess.CompletedProcess:
            return subprocess.run(["bash", str(CONFS / "healthcheck.sh")], env=remote.env, capture_output=True,
                                  text=True, timeout=30)

        health = wait_until(lambda: (done := healthcheck()).returncode == 0 and done, 30, "the worker host healthy",
                            diagnose=lambda: healthcheck().stdout)
        assert re.search(r"workers:worker-gpu1\s+RUNNING", health.stdout), health.stdout

        d.stack.ctl("stop", "workers:*")  # only the other host can take the job now
        assert "STOPPED" in d.stack.ctl("status", "workers:worker-gpu0")
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
    d.stack.ctl("stop", "workers:*")
    programs = d.stack.ctl("status")
    assert re.search(r"workers:worker-gpu0\s+STOPPED", programs), programs
    sessions = [requests.Session() for _ in range(6)]
    with ThreadPoolExecutor(len(sessions)) as pool:
        ids = list(pool.map(lambda i: d.submit(images=1, session=sessions[i % len(sessions)], labels=[str(i)]),
                            range(QUEUED_JOBS)))
    for session in sessions:
        session.close()
    assert len(set(ids)) == QUEUED_JOBS
    queued = d.http.get(f"{d.url}/dummy/qsizes", timeout=10).json()
    assert queued["waiting"] == QUEUED_JOBS, (queued, d.stack.ctl("status"))

    before = d.stack.pid("redis")
    os.kill(before, signal.SIGKILL)
    wait_until(lambda: d.stack.pid("redis") not in (0, before) and d.redis.ping(), 60, "Redis restarted",
               diagnose=d.logs)
    waiting = wait_until(lambda: d.http.get(f"{d.url}/dummy/qsizes", timeout=10).json()["waiting"], 30,
                         "the API to reach the restarted Redis", diagnose=d.logs)
    assert waiting == QUEUED_JOBS
    monitor = d.http.get(f"{d.url}/dummy/monitor", timeout=10).json()
    assert monitor["jobs"]["PENDING"] == QUEUED_JOBS, monitor
    assert d.status(ids[-1])["state"] == "PENDING"

    d.stack.ctl("start", "workers:*")
    first = d.finished(ids[0], timeout=150)
    assert first["state"] == "SUCCESS" and first["output"]["labels"] == ["0"]
    wait_until(lambda: d.http.get(f"{d.url}/dummy/qsizes", timeout=10).json()["waiting"] < QUEUED_JOBS - 5, 90,
               "the workers to go on with the queue", diagnose=d.logs)


def render(tmp: Path, **env: str) -> subprocess.CompletedProcess:
    environ = stack_env(tmp / "data", tmp / "run", **env)
    return subprocess.run([sys.executable, str(CONFS / "render.py")], cwd=ROOT, env=environ, capture_output=True,
                          text=True, timeout=60)


def test_render_gives_each_installed_demo_its_xaccel_location_and_each_gpu_its_worker(tmp_path):
    done = render(tmp_path, INSTALLED_APPS="regions,vectorization,sorter,tests.demos.dummy",
                  DEMO_QUEUES="regions=gpu,sorter=gpu", DEVICE_NB="0,1", MAX_UPLOAD_BYTES="12345",
                  XACCEL_PREFIX="/files",
                  REDIS_URL="redis://elsewhere.example.org:6379/0", REDIS_PORT="6390")
    assert done.returncode == 0, done.stderr
    assert "REDIS_URL=redis://elsewhere.example.org:6379/0 is not used" in done.stderr
    nginx = (tmp_path / "run" / "nginx.conf").read_text()
    for app in ("regions", "vectorization", "sorter", "dummy"):
        location = (f"location /files/{app}/ {{\n            internal;\n"
                    f"            alias {tmp_path}/data/results/{app}/;")
        assert location in nginx
    assert "client_max_body_size 12345;" in nginx and "{{" not in nginx
    supervisor = (tmp_path / "run" / "supervisord.conf").read_text()
    for gpu in ("0", "1"):
        section = supervisor.split(f"[program:worker-gpu{gpu}]")[1].split("\n\n")[0]
        assert "-m dramatiq api.worker -p 1 -t 1 -Q dummy gpu vectorization" in section
        assert f'environment=CUDA_VISIBLE_DEVICES="{gpu}"' in section
    assert "--preload" not in supervisor and "programs=worker-gpu0,worker-gpu1" in supervisor
    assert 'REDIS_URL="redis://127.0.0.1:6390/0"' in supervisor and "--port 6390" in supervisor
    assert "--appendonly yes" in supervisor and f"--dir {tmp_path}/data/redis" in supervisor


def test_render_refuses_a_wrong_stack_with_a_clear_message(tmp_path):
    cases = {
        "needs REDIS_TUNNEL_TARGET": {"STACK_ROLE": "worker"},
        "no Redis tunnel key at": {"REDIS_TUNNEL_PORT": "6380"},
        "unknown demo 'nope'": {"INSTALLED_APPS": "nope"},
        "DEVICE_NB='two': expected GPU indices": {"DEVICE_NB": "two"},
        "STACK_ROLE='front': expected api or worker": {"STACK_ROLE": "front"},
    }
    for message, env in cases.items():
        done = render(tmp_path, **env)
        assert done.returncode == 2 and message in done.stderr, (env, done.stderr)


# -- docker.sh, without a Docker engine --------------------------------------------------------------
DOCKER_STAND_IN = r"""#!/usr/bin/env bash
# A `docker` stand-in: records each call (arguments NUL-separated, one call per line) and keeps a
# container's state in a file, so docker.sh can be run without a Docker engine.
{ printf '%s\0' "$@"; printf '\n'; } >> "$DOCKER_CALLS"
echo "docker $*" >&2
state=$DOCKER_CALLS.state
case $1 in
    info) if [ -n "${FAKE_NVIDIA:-}" ]; then echo '{"nvidia":{},"runc":{}}'; else echo '{"runc":{}}'; fi ;;
    image) [ -n "${FAKE_IMAGE_LABEL:-}" ] || exit 1
           case "$*" in *.Id*) echo sha256:0123 ;; *) echo "$FAKE_IMAGE_LABEL" ;; esac ;;
    container) [ -f "$state" ] || exit 1; cat "$state" ;;
    run) echo running > "$state"; echo 0123abcd ;;
    stop) echo exited > "$state" ;;
    rm) rm -f "$state" ;;
esac
exit 0
"""


class DockerSh:
    """A clone (with an `origin` to pull from) holding docker.sh and the image inputs, a `.env`,
    and the `docker` stand-in first on PATH."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.origin = tmp / "origin.git"
        self.clone = tmp / "clone"
        self.data = tmp / "data"
        self.data.mkdir()
        if os.getuid() == 0:  # as root, docker.sh builds for the owner of DATA_FOLDER
            os.chown(self.data, 4321, 4321)
        self.uid = os.getuid() or 4321
        self.bin = tmp / "bin"
        self.bin.mkdir()
        (self.bin / "docker").write_text(DOCKER_STAND_IN)
        (self.bin / "docker").chmod(0o755)
        self.calls_file = tmp / "calls"
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "init.defaultBranch=main"]
        self.git = git
        subprocess.run([*git, "init", "-q", "--bare", str(self.origin)], check=True)
        seed = tmp / "seed"
        seed.mkdir()
        for name in ("docker.sh", "Dockerfile", ".dockerignore", "requirements.txt"):
            (seed / name).write_bytes((ROOT / name).read_bytes())
        (seed / ".gitignore").write_text(".env\n")
        for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "seed"], ["push", "-q", str(self.origin),
                                                                                      "HEAD:main"]):
            subprocess.run([*git, *args], cwd=seed, check=True)
        subprocess.run([*git, "clone", "-q", str(self.origin), str(self.clone)], check=True)
        self.write_env()

    def write_env(self, **values: str) -> None:
        settings = {"INSTALLED_APPS": "regions", "DATA_FOLDER": str(self.data), "DEVICE_NB": "0,2"}
        settings.update(values)
        (self.clone / ".env").write_text("# test\n" + "".join(f"{k}={v}  # comment\n" for k, v in settings.items()))

    def run(self, *args: str, path: str | None = None, **env: str) -> subprocess.CompletedProcess:
        self.calls_file.unlink(missing_ok=True)
        environ = {"PATH": path if path is not None else f"{self.bin}:/usr/bin:/bin", "HOME": str(self.tmp),
                   "DOCKER_CALLS": str(self.calls_file), **env}
        return subprocess.run(["bash", str(self.clone / "docker.sh"), *args], cwd=self.tmp, env=environ,
                              capture_output=True, text=True, timeout=60)

    def calls(self) -> list[list[str]]:
        if not self.calls_file.exists():
            return []
        return [line.split("\0")[:-1] for line in self.calls_file.read_text().split("\n") if line]

    def call(self, verb: str) -> list[str]:
        found = [c for c in self.calls() if c[0] == verb]
        assert len(found) == 1, (verb, self.calls())
        return found[0]


@pytest.fixture
def docker_sh(tmp_path):
    return DockerSh(tmp_path)


def flag_values(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == flag]


def test_shell_scripts_pass_bash_n_and_shellcheck():
    scripts = [ROOT / "docker.sh", *sorted(CONFS.glob("*.sh")), *sorted((CONFS / "spiped").glob("*.sh"))]
    assert len(scripts) == 5
    for script in scripts:
        syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert syntax.returncode == 0, (script, syntax.stderr)
    lint = subprocess.run(["shellcheck", "--severity=style", *map(str, scripts)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_spiped_units_pass_systemd_analyze_verify():
    units = sorted((CONFS / "spiped").glob("*.service"))
    assert [u.name for u in units] == ["spiped-demo-api.service", "spiped-demo-front.service"]
    if not shutil_which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    done = subprocess.run(["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "spiped" not in done.stderr, done.stderr


def test_dockerfile_runs_as_the_host_uid_with_health_and_its_scripts_exist():
    text = (ROOT / "Dockerfile").read_text()
    assert not re.search(r"\\\n\s*#", text)  # no comment inside a continued instruction
    assert not text.startswith("# syntax")  # the legacy builder builds it without a registry
    lines = text.replace("\\\n", " ").splitlines()
    instructions = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    words = [i.split(None, 1) for i in instructions]
    assert ["ARG", "BASE_IMAGE=debian:bookworm-slim"] in words and ["FROM", "${BASE_IMAGE} AS base"] in words
    assert not any("add-apt-repository" in i or "ppa:" in i for i in instructions)  # Debian's Python only
    assert ["USER", "demo"] in words and words.index(["USER", "demo"]) > 0
    assert any(w[0] == "RUN" and '--uid "${DEMO_UID}"' in w[1] for w in words)
    assert ["EXPOSE", "8001"] in words
    assert any(w[0] == "COPY" and "requirements.txt" in w[1] for w in words)
    for w in words:
        if w[0] == "RUN":  # each RUN is a valid shell command line
            check = subprocess.run(["bash", "-n", "-c", w[1]], capture_output=True, text=True)
            assert check.returncode == 0, (w[1], check.stderr)
        if w[0] in ("CMD", "HEALTHCHECK"):
            scripts = [part for part in json.loads(w[1][w[1].index("["):]) if part.startswith("/app/")]
            assert scripts and all((ROOT / s[len("/app/"):]).is_file() for s in scripts), w
    apt = next(w[1] for w in words if w[0] == "RUN" and "nginx redis-server spiped supervisor" in w[1])
    assert "python3" in apt.split()
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".env", "data"} <= set(ignored) and "!tests/demos" in ignored


def test_docker_sh_rebuild_builds_for_this_uid_and_runs_on_gpus_by_index(docker_sh):
    done = docker_sh.run("rebuild", FAKE_NVIDIA="1", FAKE_IMAGE_LABEL="old")
    assert done.returncode == 0, done.stderr
    build = docker_sh.call("build")
    assert f"DEMO_UID={docker_sh.uid}" in flag_values(build, "--build-arg")
    assert f"DEMO_GID={os.getgid() or 4321}" in flag_values(build, "--build-arg")
    assert flag_values(build, "--tag") == ["demo-api"] and build[-1] == str(docker_sh.clone)
    assert flag_values(build, "--label")[0].startswith("demo-api.inputs=")
    run = docker_sh.call("run")
    assert flag_values(run, "--gpus") == ['"device=0,2"']  # by index, never a count
    assert "WORKER_GPUS=0,1" in flag_values(run, "--env")  # inside the container they are 0 and 1
    assert "DATA_FOLDER=/data" in flag_values(run, "--env")
    assert flag_values(run, "--publish") == ["127.0.0.1:8001:8001"]
    assert set(flag_values(run, "--volume")) == {f"{docker_sh.data}:/data", f"{docker_sh.clone}:/app:ro",
                                                 f"{docker_sh.clone}/.env:/etc/demo-api.env:ro"}
    assert "ENV_FILE=/etc/demo-api.env" in flag_values(run, "--env")
    assert flag_values(run, "--name") == ["demo-api"] and run[-1] == "demo-api"
    assert [c[0] for c in docker_sh.calls()].index("build") < [c[0] for c in docker_sh.calls()].index("run")

    again = docker_sh.run("restart", FAKE_NVIDIA="1", FAKE_IMAGE_LABEL="old")
    assert again.returncode == 0, again.stderr
    verbs = [c[0] for c in docker_sh.calls()]
    assert verbs.index("stop") < verbs.index("rm") < verbs.index("run") and "build" not in verbs
    assert flag_values(docker_sh.call("stop"), "--time") == ["120"]


def test_docker_sh_worker_role_publishes_nothing_and_cpu_only_gets_no_gpus(docker_sh):
    docker_sh.write_env(STACK_ROLE="worker", DEVICE_NB="", REDIS_TUNNEL_TARGET="api.example.org:6380")
    done = docker_sh.run("start", FAKE_IMAGE_LABEL="x")
    assert done.returncode == 0, done.stderr
    run = docker_sh.call("run")
    assert flag_values(run, "--publish") == [] and flag_values(run, "--gpus") == []
    assert flag_values(run, "--name") == ["demo-api-worker"] and "WORKER_GPUS=cpu" in flag_values(run, "--env")
    assert "STACK_ROLE=worker" in flag_values(run, "--env")
    docker_sh.write_env(REDIS_TUNNEL_PORT="6380", DEVICE_NB="")
    docker_sh.run("stop")
    assert docker_sh.run("start", FAKE_IMAGE_LABEL="x").returncode == 0
    assert flag_values(docker_sh.call("run"), "--publish") == ["127.0.0.1:8001:8001", "0.0.0.0:6380:6380"]


def test_docker_sh_refuses_with_clear_messages(docker_sh):
    docker_sh.write_env(DATA_FOLDER=str(docker_sh.tmp / "missing"))
    done = docker_sh.run("start", FAKE_NVIDIA="1", FAKE_IMAGE_LABEL="x")
    assert done.returncode != 0 and f"DATA_FOLDER {docker_sh.tmp / 'missing'} does not exist" in done.stderr
    assert not any(c[0] == "run" for c in docker_sh.calls())

    docker_sh.write_env()
    if not any(shutil_which(tool) for tool in ("nvidia-ctk", "nvidia-container-runtime-hook")):
        done = docker_sh.run("start", FAKE_IMAGE_LABEL="x")
        assert done.returncode != 0 and "NVIDIA Container Toolkit is missing" in done.stderr

    docker_sh.write_env(DEVICE_NB="2gpus")
    done = docker_sh.run("start", FAKE_NVIDIA="1", FAKE_IMAGE_LABEL="x")
    assert done.returncode != 0 and "DEVICE_NB=2gpus: expected GPU indices" in done.stderr

    docker_sh.write_env()
    done = docker_sh.run("start", FAKE_NVIDIA="1")
    assert done.returncode != 0 and "no image demo-api: bash docker.sh rebuild" in done.stderr

    if not shutil_which("docker", "/usr/bin:/bin"):
        done = docker_sh.run("status", path="/usr/bin:/bin")
        assert done.returncode != 0 and "Docker is not installed" in done.stderr

    if os.getuid() == 0:
        os.chown(docker_sh.data, 0, 0)
        done = docker_sh.run("rebuild", FAKE_NVIDIA="1", FAKE_IMAGE_LABEL="x")
        assert done.returncode != 0 and "refusing to build an image whose user is root" in done.stderr

    done = docker_sh.run("frobnicate")
    assert done.returncode == 2 and "bash docker.sh rebuild" in done.stderr


def test_docker_sh_pull_rebuilds_only_when_the_image_inputs_changed(docker_sh):
    assert docker_sh.run("rebuild", FAKE_NVIDIA="1", FAKE_IMAGE_LABEL="old").returncode == 0
    label = flag_values(docker_sh.call("build"), "--label")[0].split("=", 1)[1]

    # new code only: restart, no build
    other = docker_sh.tmp / "other"
    subprocess.run([*docker_sh.git, "clone", "-q", str(docker_sh.origin), str(other)], check=True)
    (other / "NOTES.md").write_text("code change\n")
    for args in (["add", "-A"], ["commit", "-q", "-m", "code"], ["push", "-q"]):
        subprocess.run([*docker_sh.git, *args], cwd=other, check=True)
    done = docker_sh.run("pull", FAKE_NVIDIA="1", FAKE_IMAGE_LABEL=label)
    assert done.returncode == 0, done.stderr
    assert (docker_sh.clone / "NOTES.md").exists()
    verbs = [c[0] for c in docker_sh.calls()]
    assert "build" not in verbs and verbs.index("stop") < verbs.index("run")

    # a requirement changed: rebuild, then restart
    with open(other / "requirements.txt", "a") as handle:
        handle.write("# pinned something new\n")
    for args in (["commit", "-q", "-am", "deps"], ["push", "-q"]):
        subprocess.run([*docker_sh.git, *args], cwd=other, check=True)
    done = docker_sh.run("pull", FAKE_NVIDIA="1", FAKE_IMAGE_LABEL=label)
    assert done.returncode == 0, done.stderr
    verbs = [c[0] for c in docker_sh.calls()]
    assert verbs.index("build") < verbs.index("run")
    assert flag_values(docker_sh.call("build"), "--label")[0] != f"demo-api.inputs={label}"


def test_docker_sh_status_logs_and_shell_go_to_the_container(docker_sh):
    assert docker_sh.run("start", FAKE_NVIDIA="1", FAKE_IMAGE_LABEL="x").returncode == 0
    done = docker_sh.run("status")
    assert done.returncode == 0, done.stderr
    execs = [c for c in docker_sh.calls() if c[0] == "exec"]
    assert execs[-1] == ["exec", "demo-api", "python", "/app/docker-confs/stack_status.py"]
    assert docker_sh.run("logs").returncode == 0
    assert docker_sh.call("logs") == ["logs", "--follow", "--tail", "200", "demo-api"]
    assert docker_sh.run("shell").returncode == 0
    assert docker_sh.call("exec") == ["exec", "--interactive", "--tty", "demo-api", "bash"]


def shutil_which(name: str, path: str | None = None) -> str | None:
    import shutil

    return shutil.which(name, path=path)
