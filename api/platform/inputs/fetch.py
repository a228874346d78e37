"""Downloads, through the SSRF guard, into a cache shared by all jobs.

Every URL a job reads (image, manifest, URL list, zip, PDF) is fetched here: checked by
`netguard`, capped in size, filtered by Content-Type, and stored under
`DATA_FOLDER/cache/documents/<sha256(url)>/<kind>`. A file appears there whole or not at all
(temp file, then rename), so a second job reading the same URL makes no request, and two workers
fetching the same URL at once cannot leave a half-written file.
"""
from __future__ import annotations

import hashlib
import threading
import weakref
from pathlib import Path

import requests

from ..config import Config
from ..netguard import AddressNotAllowed, check_url, guarded_session
from ..storage import atomic_open
from .cache import mark_used

CHUNK = 256 * 1024
_BINARY = ("application/octet-stream", "binary/octet-stream", "")
# kind -> accepted Content-Types: exact values, or prefixes ending in "/", or "+json" suffix matches.
ACCEPTED_TYPES: dict[str, tuple[str, ...]] = {
    "image": ("image/", *_BINARY),
    "manifest": ("application/json", "application/ld+json", "+json", "text/json", "text/plain", ""),
    "text": ("text/", *_BINARY),
    "zip": ("application/zip", "application/x-zip-compressed", "application/x-zip", *_BINARY),
    "pdf": ("application/pdf", "application/x-pdf", *_BINARY),
}


class DownloadError(Exception):
    """One download failed: refused address, HTTP error, wrong Content-Type, too large, timeout."""


class Fetcher:
    """Fetches URLs into the cache; one per worker process, safe to share between threads."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.folder = cfg.cache_folder / "documents"
        self.session = guarded_session(allow_private=cfg.allow_private_urls, allowed_hosts=cfg.allowed_source_hosts,
                                       pool_size=max(10, cfg.download_workers))
        self._locks: weakref.WeakValueDictionary[str, threading.Lock] = weakref.WeakValueDictionary()
        self._locks_guard = threading.Lock()

    def cache_path(self, url: str, kind: str) -> Path:
        return self.folder / hashlib.sha256(url.encode()).hexdigest() / kind

    def fetch(self, url: str, *, kind: str, cancel: threading.Event | None = None) -> Path:
        """The local file holding `url`'s body, downloaded now unless already cached.

        `kind` (image, manifest, text, zip, pdf) decides the Content-Types accepted. `cancel`, when
        set, stops a download between chunks. Raises DownloadError with a plain message."""
        if kind not in ACCEPTED_TYPES:
            raise ValueError(f"unknown download kind {kind!r}")
        target = self.cache_path(url, kind)
        if target.is_file():
            mark_used(target.parent)
            return target
        with self._lock_for(str(target)):  # one download per URL in this process; others wait for it
            if target.is_file():
                return target
            try:
                # Scheme, host, literal addresses; names are resolved and checked by the session
                # before it connects, for this URL and each redirect.
                check_url(url, allow_private=self.cfg.allow_private_urls, resolve=False,
                          allowed_hosts=self.cfg.allowed_source_hosts)
                self._download(url, kind, target, cancel)
            except DownloadError:
                raise
            except AddressNotAllowed as exc:  # one text for every refusal: nothing was connected to
                raise DownloadError(f"{url}: refused, {exc}") from None
            except requests.Timeout:
                raise DownloadError(f"{url}: no answer within {self.cfg.download_timeout_s:g} s") from None
            except requests.RequestException as exc:
                raise DownloadError(f"{url}: {_reason(exc)}") from None
            except ValueError as exc:  # check_url: scheme, host
                raise DownloadError(f"{url}: {exc}") from None
        return target

    def _download(self, url: str, kind: str, target: Path, cancel: threading.Event | None) -> None:
        cap = self.cfg.max_download_bytes
        timeout = self.cfg.download_timeout_s
        with self.session.get(url, stream=True, timeout=(timeout, timeout)) as response:
            if response.status_code >= 400:
                raise DownloadError(f"{url}: HTTP {response.status_code} {response.reason or ''}".rstrip())
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if not _accepted(content_type, ACCEPTED_TYPES[kind]):
                raise DownloadError(f"{url}: Content-Type {content_type!r} is not a {kind}")
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > cap:
                raise DownloadError(f"{url}: {int(length)} bytes, over the {cap} byte limit (MAX_DOWNLOAD_BYTES)")
            received = 0
            with atomic_open(target) as handle:
                for chunk in response.iter_content(CHUNK):  # decoded: the cap also bounds gzip bombs
                    received += len(chunk)
                    if received > cap:
                        raise DownloadError(f"{url}: over the {cap} byte limit (MAX_DOWNLOAD_BYTES)")
                    if cancel is not None and cancel.is_set():
                        raise DownloadError(f"{url}: cancelled")
                    handle.write(chunk)

    def _lock_for(self, key: str) -> threading.Lock:
        with self._locks_guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.Lock()
            return lock


def _accepted(content_type: str, accepted: tuple[str, ...]) -> bool:
    return any(content_type == a or (a.endswith("/") and content_type.startswith(a))
               or (a.startswith("+") and content_type.endswith(a)) for a in accepted)


def _reason(exc: BaseException) -> str:
    """A plain message for a requests error (which wraps urllib3's, which wraps an OSError)."""
    innermost: BaseException = exc
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, AddressNotAllowed):
            return f"refused, {seen}"
        innermost = seen
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, requests.TooManyRedirects):
        return "too many redirects"
    if isinstance(exc, requests.ConnectionError):
        detail = innermost.strerror if isinstance(innermost, OSError) and innermost.strerror else ""
        return f"could not connect ({detail})" if detail else "could not connect"
    return str(exc) or type(exc).__name__
