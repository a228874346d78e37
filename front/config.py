"""The front's settings: its own `front/.env` (python-dotenv), the process environment winning.

The front is deployed apart from the API (another host, reaching the API through the spiped
tunnel), so it reads nothing of the API's configuration; `front/.env.template` documents every
variable.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

FRONT_DIR = Path(__file__).resolve().parent
DEFAULT_ENV_FILE = FRONT_DIR / ".env"


class FrontConfigError(ValueError):
    """A setting that cannot be used; the message names it."""


@dataclass(frozen=True)
class FrontConfig:
    api_url: str = "http://127.0.0.1:5000"
    api_token: str = ""
    callback_secret: str = ""
    public_url: str = ""            # base URL the API reaches the front at (for notify_url); "" = no callbacks
    data_folder: Path = FRONT_DIR / "data"
    host: str = "127.0.0.1"
    port: int = 8000
    secret_key: str = ""
    api_timeout_s: float = 30.0
    callback_max_age_s: float = 300.0
    status_refresh_s: float = 3.0   # ask the API itself when no callback came for this long
    poll_interval_s: float = 1.0    # how often the page asks the front for its job's state
    # Live event streams one front process relays at once (each holds one of its threads while its
    # job runs); past it, and at 0, job pages poll instead.
    events_max_streams: int = 4
    max_upload_bytes: int = 500 * 1024 * 1024
    history_size: int = 50

    @property
    def callback_url(self) -> str:
        """Where the API should POST events for this front; "" (no callbacks: the front polls the
        API instead) without a public URL, or without a secret to check their signatures with."""
        return f"{self.public_url.rstrip('/')}/callback" if self.public_url and self.callback_secret else ""


def _number(raw: Mapping[str, str], name: str, default: float, kind=float):
    value = (raw.get(name) or "").strip()
    if not value:
        return default
    try:
        number = kind(value)
    except ValueError:
        raise FrontConfigError(f"{name}: expected a number, got {value!r}") from None
    if number < 0:
        raise FrontConfigError(f"{name}: must not be negative")
    return number


def load_config(overrides: Mapping[str, str] | None = None) -> FrontConfig:
    """Settings from `FRONT_ENV_FILE` (default front/.env), then the environment, then `overrides`
    (tests pass every setting there, with FRONT_ENV_FILE=/nonexistent to read no file)."""
    overrides = dict(overrides or {})
    env_file = overrides.get("FRONT_ENV_FILE") or os.environ.get("FRONT_ENV_FILE") or str(DEFAULT_ENV_FILE)
    raw: dict[str, str] = {}
    if Path(env_file).is_file():
        raw.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    if overrides.get("FRONT_ENV_FILE") is None:
        raw.update(os.environ)
    raw.update(overrides)
    api_url = (raw.get("API_URL") or FrontConfig.api_url).strip().rstrip("/")
    if not api_url.startswith(("http://", "https://")):
        raise FrontConfigError(f"API_URL: expected http(s)://host:port, got {api_url!r}")
    public_url = (raw.get("FRONT_PUBLIC_URL") or "").strip().rstrip("/")
    if public_url and not public_url.startswith(("http://", "https://")):
        raise FrontConfigError(f"FRONT_PUBLIC_URL: expected http(s)://..., got {public_url!r}")
    data = (raw.get("FRONT_DATA_FOLDER") or "").strip()
    return FrontConfig(
        api_url=api_url,
        api_token=(raw.get("API_TOKEN") or "").strip(),
        callback_secret=(raw.get("CALLBACK_SECRET") or "").strip(),
        public_url=public_url,
        data_folder=Path(data).expanduser().resolve() if data else FrontConfig.data_folder,
        host=(raw.get("FRONT_HOST") or FrontConfig.host).strip(),
        port=int(_number(raw, "FRONT_PORT", FrontConfig.port, int)),
        secret_key=(raw.get("FRONT_SECRET_KEY") or "").strip(),
        api_timeout_s=_number(raw, "FRONT_API_TIMEOUT_S", FrontConfig.api_timeout_s),
        callback_max_age_s=_number(raw, "CALLBACK_MAX_AGE_S", FrontConfig.callback_max_age_s),
        status_refresh_s=_number(raw, "FRONT_STATUS_REFRESH_S", FrontConfig.status_refresh_s),
        poll_interval_s=_number(raw, "FRONT_POLL_INTERVAL_S", FrontConfig.poll_interval_s),
        events_max_streams=int(_number(raw, "FRONT_EVENTS_MAX_STREAMS", FrontConfig.events_max_streams, int)),
        max_upload_bytes=int(_number(raw, "FRONT_MAX_UPLOAD_BYTES", FrontConfig.max_upload_bytes, int)),
        history_size=int(_number(raw, "FRONT_HISTORY_SIZE", FrontConfig.history_size, int)),
    )
