"""Render the stack's configuration (nginx, supervisord) from `.env`, at every start.

Used by `docker-confs/start-stack.sh`, in the Docker image and on a bare host alike
(`docker-confs/run-local.sh`), so the files the tests run are the files production runs.
Rendering goes through the API's own `load_config`, so `client_max_body_size` is the API's
`MAX_UPLOAD_BYTES`, the X-Accel prefix is its `XACCEL_PREFIX` and the per-demo locations and
worker queues are those of the demos `INSTALLED_APPS` really loads (a demo named in a dotted
path, like `tests.demos.dummy`, serves its results under its own `name`).

Stack settings (environment first, then `.env`; none is needed by the API itself):

    STACK_ROLE          api (default: nginx, gunicorn, workers, callbacks, Redis) or worker
                        (workers only, for a second GPU host; see REDIS_TUNNEL_TARGET)
    RUN_FOLDER          rendered files, sockets, pid files, nginx temp files
    NGINX_LISTEN        nginx's listen address (127.0.0.1:8001; 8001 in the image, published
                        on the host's 127.0.0.1 by docker.sh)
    NGINX_WORKERS       nginx worker processes (auto)
    REDIS_PORT          the stack's Redis on 127.0.0.1 (6379); on a worker host, the local end
                        of the Redis tunnel. The API host always runs its own Redis (append-only
                        file in DATA_FOLDER/redis): a REDIS_URL in .env is not used there.
    REDIS_TUNNEL_PORT   api role: also accept workers of other hosts through `spiped -d` on
                        this port (empty: no tunnel)
    REDIS_TUNNEL_BIND   address of that tunnel (0.0.0.0)
    REDIS_TUNNEL_TARGET worker role: host:port of the API host's Redis tunnel
    REDIS_TUNNEL_KEY    spiped key of the Redis tunnel (DATA_FOLDER/keys/redis.key)
    WORKER_GPUS         GPU indices, one worker each (default DEVICE_NB, else CUDA_VISIBLE_DEVICES)
    CPU_WORKERS         workers when no GPU is listed (1)
    WORKER_STOP_WAIT_S  how long a stopping worker may finish its job before it is killed (60)
    EVENTS_THREADS      threads of the events server (128): a gunicorn of its own, behind nginx's
                        /<app>/<id>/events location, that serves only the job event streams (SSE).
                        Each open stream holds one thread, so this bounds the clients following
                        jobs at once (one thread is kept to refuse the others with 503 at once);
                        the API's own threads never wait behind a stream.

Usage: python docker-confs/render.py  (prints the folder it wrote to)
"""
from __future__ import annotations

import grp
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

# Run as a script (python docker-confs/render.py): the repository root is not on the path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.platform.config import Config, ConfigError, load_config
from api.platform.queue import worker_command
from api.platform.registry import load_demos

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")
SBIN = "/usr/local/sbin:/usr/sbin:/sbin"


class RenderError(RuntimeError):
    """A stack setting is wrong or a program is missing; start-up stops with this message."""


@dataclass(frozen=True)
class Stack:
    """Everything the templates need, resolved once."""

    cfg: Config
    role: str
    run: Path
    python: str
    apps: dict[str, str]  # demo name -> its queue
    listen: str
    nginx_workers: str
    redis_port: int
    redis_url: str
    tunnel_port: str
    tunnel_bind: str
    tunnel_target: str
    tunnel_key: Path
    gpus: list[str]
    cpu_workers: int
    stop_wait_s: int
    events_threads: int


def settings(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The process environment over `.env` (ENV_FILE), as `api.platform.config` reads them."""
    env = dict(os.environ if environ is None else environ)
    env_file = Path(env.get("ENV_FILE", ".env"))
    merged = {k: v for k, v in dotenv_values(env_file).items() if v is not None} if env_file.is_file() else {}
    merged.update(env)
    return {k: v.strip() for k, v in merged.items()}


def _int(env: dict[str, str], key: str, default: int) -> int:
    raw = env.get(key, "") or str(default)
    try:
        return int(raw)
    except ValueError:
        raise RenderError(f"{key}={raw!r}: not a whole number") from None


def gpu_list(env: dict[str, str]) -> list[str]:
    """GPU indices for the workers: WORKER_GPUS, else DEVICE_NB, else CUDA_VISIBLE_DEVICES."""
    for key in ("WORKER_GPUS", "DEVICE_NB", "CUDA_VISIBLE_DEVICES"):
        raw = env.get(key, "")
        if raw:
            if raw.lower() in ("cpu", "none", "-1"):
                return []
            gpus = [part.strip() for part in raw.split(",") if part.strip()]
            for gpu in gpus:
                if not re.fullmatch(r"[0-9]+|GPU-[0-9a-fA-F-]+|MIG-[0-9a-zA-Z/-]+", gpu):
                    raise RenderError(f"{key}={raw!r}: expected GPU indices such as 0,1")
            return gpus
    return []


def resolve(environ: dict[str, str] | None = None) -> Stack:
    env = settings(environ)
    try:
        cfg = load_config(env)
        demos = load_demos(cfg.installed_apps)
    except ConfigError as exc:
        raise RenderError(str(exc)) from None
    if not demos:
        raise RenderError("INSTALLED_APPS is empty: name at least one demo in .env")
    role = env.get("STACK_ROLE", "") or "api"
    if role not in ("api", "worker"):
        raise RenderError(f"STACK_ROLE={role!r}: expected api or worker")
    events_threads = _int(env, "EVENTS_THREADS", 128)
    if events_threads < 2:
        raise RenderError(f"EVENTS_THREADS={events_threads}: at least 2 (a stream, and one to refuse the extra ones)")
    run = Path(env.get("RUN_FOLDER", "") or f"{os.environ.get('TMPDIR', '/tmp')}/demo-api-{os.getuid()}").resolve()
    redis_port = _int(env, "REDIS_PORT", 6379)
    tunnel_target = env.get("REDIS_TUNNEL_TARGET", "")
    redis_url = cfg.redis_url
    if role == "api":  # the API host's Redis is the stack's own: its append-only file is the queue's memory
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        if cfg.redis_url and cfg.redis_url != redis_url:
            print(f"stack: REDIS_URL={cfg.redis_url} is not used; the stack's own Redis is {redis_url} "
                  f"(append-only file in {cfg.redis_folder})", file=sys.stderr)
    if role == "worker":
        if tunnel_target:
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
        elif not redis_url:
            raise RenderError("STACK_ROLE=worker needs REDIS_TUNNEL_TARGET (host:port of the API host's Redis "
                              "tunnel) or REDIS_URL")
    return Stack(
        cfg=cfg, role=role, run=run, python=env.get("STACK_PYTHON", "") or sys.executable,
        apps={name: cfg.queue_for(name) for name in demos},
        listen=env.get("NGINX_LISTEN", "") or "127.0.0.1:8001",
        nginx_workers=env.get("NGINX_WORKERS", "") or "auto",
        redis_port=redis_port, redis_url=redis_url,
        tunnel_port=env.get("REDIS_TUNNEL_PORT", ""), tunnel_bind=env.get("REDIS_TUNNEL_BIND", "") or "0.0.0.0",
        tunnel_target=tunnel_target,
        tunnel_key=Path(env.get("REDIS_TUNNEL_KEY", "") or cfg.keys_folder / "redis.key"),
        gpus=gpu_list(env), cpu_workers=_int(env, "CPU_WORKERS", 1), stop_wait_s=_int(env, "WORKER_STOP_WAIT_S", 60),
        events_threads=events_threads,
    )


def program(name: str) -> str:
    """The absolute path of a distribution program (nginx lives in /usr/sbin, often off PATH)."""
    found = shutil.which(name, path=f"{os.environ.get('PATH', '')}:{SBIN}")
    if not found:
        raise RenderError(f"{name} is not installed: apt-get install {name}")
    return found


def nginx_version(nginx: str) -> tuple[int, ...]:
    """`nginx -v` as numbers; `-e` (the log used before the configuration is read) needs 1.19.5."""
    done = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=10)
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", done.stderr + done.stdout)
    return tuple(int(part) for part in found.groups()) if found else (0,)


def fill(template: str, values: dict[str, str]) -> str:
    """Replace every {{NAME}}; a placeholder without a value is an error, not an empty string."""
    def one(match: re.Match) -> str:
        if match.group(1) not in values:
            raise RenderError(f"template placeholder {{{{{match.group(1)}}}}} has no value")
        return values[match.group(1)]

    return PLACEHOLDER.sub(one, template)


def xaccel_locations(stack: Stack) -> str:
    """One `internal` location per installed demo: XACCEL_PREFIX/<app>/ -> results/<app>/, and the
    dataset folders: XACCEL_PREFIX/_data/{cache,uploads,datasets}/ -> DATA_FOLDER/..."""
    prefix = stack.cfg.xaccel_prefix.rstrip("/")
    blocks = []
    for app in stack.apps:
        folder = stack.cfg.results_folder / app
        blocks.append(f"""        location {prefix}/{app}/ {{
            internal;
            alias {folder}/;
            include {stack.run}/nginx-results.conf;
        }}""")
    # Dataset images and zips (GET /datasets/...): X-Accel-Redirect <prefix>/_data/<path in DATA_FOLDER>,
    # limited to the folders the API serves them from (never models/, redis/ or keys/).
    for part in ("cache", "uploads", "datasets"):
        blocks.append(f"""        location {prefix}/_data/{part}/ {{
            internal;
            alias {stack.cfg.data_folder / part}/;
            include {stack.run}/nginx-results.conf;
        }}""")
    return "\n".join(blocks)


def supervisor_env(values: dict[str, str]) -> str:
    """`KEY="value",...` with supervisord's quoting (% doubled: its values are %-interpolated)."""
    def quote(value: str) -> str:
        return '"' + value.replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"') + '"'

    return ",".join(f"{key}={quote(value)}" for key, value in values.items())


def programs(stack: Stack) -> str:
    """The [program:x] sections of this role."""
    run, py, cfg = stack.run, shlex.quote(stack.python), stack.cfg
    sections: list[tuple[str, str, dict[str, str]]] = []  # name, command, extra options
    if stack.role == "api":
        # Every write is in the append-only file before Redis answers (fsync each second): queued
        # jobs survive a restart, even a kill -9.
        sections.append(("redis", " ".join([
            program("redis-server"), "--bind", "127.0.0.1", "--port", str(stack.redis_port),
            "--dir", str(cfg.redis_folder), "--appendonly", "yes", "--appendfsync", "everysec",
            "--save", '""', "--daemonize", "no", "--protected-mode", "yes", "--logfile", '""']),
            {"priority": "10", "stopwaitsecs": "30"}))
        if stack.tunnel_port:
            sections.append(("redis-tunnel", " ".join([
                program("spiped"), "-F", "-d", "-s", f"[{stack.tunnel_bind}]:{stack.tunnel_port}",
                "-t", f"[127.0.0.1]:{stack.redis_port}", "-k", str(stack.tunnel_key)]), {"priority": "15"}))
        sections.append(("api", " ".join([
            py, "-m", "gunicorn", "--workers", str(cfg.gunicorn_workers), "--worker-class", "gthread",
            "--threads", str(cfg.gunicorn_threads), "--bind", f"unix:{run}/gunicorn.sock",
            "--timeout", "120", "--graceful-timeout", "10", "--forwarded-allow-ips", '"*"',
            "--control-socket", f"{run}/gunicorn.ctl", "--error-logfile", "-", shlex.quote("api:create_app()")]),
            {"priority": "30", "startretries": "20", "stopwaitsecs": "15"}))
        # The job event streams (SSE) get a gunicorn of their own: each open stream holds a thread for
        # as long as its job runs, and EVENTS_THREADS of them must not take the API's threads away.
        # One process, so one Redis blocking read serves every stream (api/platform/stream.py).
        sections.append(("api-events", " ".join([
            py, "-m", "gunicorn", "--workers", "1", "--worker-class", "gthread",
            "--threads", str(stack.events_threads), "--bind", f"unix:{run}/events.sock",
            "--timeout", "120", "--graceful-timeout", "5", "--forwarded-allow-ips", '"*"',
            "--control-socket", f"{run}/events.ctl", "--error-logfile", "-", shlex.quote("api:create_app()")]),
            {"priority": "30", "startretries": "20", "stopwaitsecs": "10",
             "environment": supervisor_env({"EVENTS_MAX_STREAMS": str(stack.events_threads - 1)})}))
        nginx = program("nginx")
        early_log = " -e stderr" if nginx_version(nginx) >= (1, 19, 5) else ""  # older: the image links it
        sections.append(("nginx", f"{nginx} -c {run}/nginx.conf -p {run}/nginx/{early_log}",
                         {"priority": "40", "stopsignal": "QUIT"}))  # QUIT: finish the transfers under way
        sections.append(("callbacks", f"{py} -m api callbacks", {"priority": "50", "startretries": "20"}))
    elif stack.tunnel_target:
        sections.append(("redis-tunnel", " ".join([
            program("spiped"), "-F", "-e", "-s", f"[127.0.0.1]:{stack.redis_port}", "-t", stack.tunnel_target,
            "-k", str(stack.tunnel_key)]), {"priority": "15"}))
    worker = " ".join(worker_command(stack.apps.values(), python=py))
    slots = [(f"worker-gpu{gpu}", gpu) for gpu in stack.gpus] or \
            [(f"worker-cpu{i}", "") for i in range(stack.cpu_workers)]
    for name, gpu in slots:
        sections.append((name, worker, {
            "priority": "60", "startretries": "20", "stopwaitsecs": str(stack.stop_wait_s),
            "environment": supervisor_env({"CUDA_VISIBLE_DEVICES": gpu})}))
    out = []
    # No stopasgroup: each program stops its own children gracefully on the stop signal (a second
    # signal would make dramatiq kill its running job); killasgroup still clears them on SIGKILL.
    for name, command, options in sections:
        lines = [f"[program:{name}]", f"command={command}", f"directory={ROOT}", "autostart=true",
                 "autorestart=true", "startsecs=1", "killasgroup=true",
                 "redirect_stderr=true", "stdout_logfile=/dev/stdout", "stdout_logfile_maxbytes=0"]
        lines += [f"{key}={value}" for key, value in options.items()]
        out.append("\n".join(lines))
    workers = [name for name, _ in slots]
    out.append(f"[group:workers]\nprograms={','.join(workers)}")
    return "\n\n".join(out)


def render(environ: dict[str, str] | None = None) -> Stack:
    stack = resolve(environ)
    cfg = stack.cfg
    for folder in (stack.run, stack.run / "nginx", stack.run / "nginx" / "temp", cfg.data_folder,
                   cfg.results_folder, *(cfg.results_folder / app for app in stack.apps)):
        folder.mkdir(parents=True, exist_ok=True)
    if stack.role == "api":
        cfg.redis_folder.mkdir(parents=True, exist_ok=True)
    if stack.tunnel_port or (stack.role == "worker" and stack.tunnel_target):
        if not stack.tunnel_key.is_file():
            raise RenderError(f"no Redis tunnel key at {stack.tunnel_key}: create it with "
                              f"`bash docker-confs/spiped/keygen.sh {stack.tunnel_key}` and copy it to every host")
    user = ""
    if os.geteuid() == 0 and stack.role == "api":  # as root, nginx's workers run as whoever owns the data
        info = cfg.data_folder.stat()
        try:
            user = f"user {pwd.getpwuid(info.st_uid).pw_name} {grp.getgrgid(info.st_gid).gr_name};"
        except KeyError:
            raise RenderError(f"{cfg.data_folder} belongs to uid {info.st_uid}, which has no name here: nginx "
                              "needs one (run the stack as that user instead of root)") from None
    values = {
        "RUN_FOLDER": str(stack.run), "NGINX_USER": user, "NGINX_WORKERS": stack.nginx_workers,
        "NGINX_LISTEN": stack.listen, "MAX_UPLOAD_BYTES": str(cfg.max_upload_bytes),
        "XACCEL_LOCATIONS": xaccel_locations(stack), "DATA_FOLDER": str(cfg.data_folder),
        "REDIS_URL": stack.redis_url, "XACCEL_PREFIX": cfg.xaccel_prefix, "ROLE": stack.role,
        "PROGRAMS": programs(stack), "ROOT": str(ROOT),
        "ENVIRONMENT": supervisor_env({"DATA_FOLDER": str(cfg.data_folder), "REDIS_URL": stack.redis_url,
                                       "USE_XACCEL": "true", "PYTHONUNBUFFERED": "1"}),
    }
    outputs = {"supervisord.conf": "supervisord.conf"}
    if stack.role == "api":
        outputs.update({"nginx.conf": "nginx.conf", "nginx-results.conf": "nginx-results.conf"})
    for template, target in outputs.items():
        text = fill((HERE / template).read_text(), values)
        (stack.run / target).write_text(text)
    return stack


def main() -> int:
    try:
        stack = render()
    except RenderError as exc:
        print(f"stack configuration error: {exc}", file=sys.stderr)
        return 2
    print(stack.run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
