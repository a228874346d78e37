"""`JobContext`: everything a demo's `run` may touch, and the only way it touches the platform.

It hands out the job's images (downloaded and decoded ahead, in order), takes progress and
per-image errors, writes output files atomically into the job's folder, and says when the job was
cancelled. Progress callbacks are throttled here, so a demo can report every image.
"""
from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from . import metrics
from .config import Config
from .inputs import Fetcher, ImageFeed, ImageSource, LoadedImage
from .jobs import Job, JobStore
from .storage import atomic_open, atomic_write, safe_join


class JobCancelled(Exception):
    """Raised between images once a cancel was requested; the platform ends the job CANCELLED."""


class JobContext:
    def __init__(self, job: Job, *, cfg: Config, store: JobStore, folder: Path, sources: list[ImageSource],
                 fetcher: Fetcher, cancel_requested: Callable[[], bool], on_progress: Callable[[Job], None],
                 device: str | Callable[[], str] = "cpu"):
        self.job = job
        self.cfg = cfg
        self.store = store
        self.folder = folder
        self.sources = sources
        self.fetcher = fetcher
        self._device = device
        self._cancel_requested = cancel_requested
        self._on_progress = on_progress
        self._last_progress = 0.0
        self._last_advance = time.monotonic()
        self.timings: dict[str, float] = {}
        self.failed_images = 0
        self.first_error = ""

    # -- what the job is ----------------------------------------------------------------------
    @property
    def params(self) -> dict:
        return self.job.params

    @property
    def app(self) -> str:
        return self.job.app

    @property
    def tracking_id(self) -> str:
        return self.job.tracking_id

    @property
    def total(self) -> int:
        return self.job.total

    @property
    def device(self) -> str:
        """Where models run ("cpu", "cuda", ...). Resolved only when asked: finding out imports
        torch, which a job that needs no model must not pay for (nor be interrupted in, by its
        time limit, leaving a half-imported torch behind for the next job)."""
        return self._device() if callable(self._device) else self._device

    # -- images in, progress out --------------------------------------------------------------
    def images(self) -> Iterator[LoadedImage]:
        """The job's decodable images, in order. An image that cannot be had is recorded as an
        error (and counted done) without reaching the demo. Stops with JobCancelled on cancel."""
        with ImageFeed(self.sources, self.fetcher, self.cfg) as feed:
            self._last_advance = time.monotonic()
            for item in feed:
                self.check_cancelled()
                if item.image is None:
                    self.error(item.source, item.error or "unreadable image")
                    self.advance()
                    continue
                yield item
            self.check_cancelled()

    def advance(self, n: int = 1) -> None:
        """`n` more images are finished (processed or failed)."""
        now = time.monotonic()
        per_image = (now - self._last_advance) / max(n, 1)
        self._last_advance = now
        metrics.observe(self.store.redis, "api_image_duration_seconds", {"app": self.app}, per_image, n)
        self.store.update(self.job, done=min(self.job.done + n, self.job.total or self.job.done + n))
        if now - self._last_progress >= self.cfg.progress_interval_s or self.job.done >= self.job.total:
            self._last_progress = now
            self._on_progress(self.job)

    def error(self, source: ImageSource | None, message: str) -> None:
        """Record that one image (or, with None, the job as a whole) could not be processed."""
        entry: dict[str, Any] = {"message": message}
        self.first_error = self.first_error or message
        if source is not None:
            self.failed_images += 1
            entry.update(doc_uid=source.doc_uid, image=source.name, index=source.index)
            if source.url:
                entry["url"] = source.url
        self.store.add_error(self.job, entry)
        self.log(f"error: {entry.get('doc_uid', '')}/{entry.get('image', '')}: {message}")

    def log(self, message: str) -> None:
        self.store.log(self.job, message)

    def timing(self, name: str, seconds: float) -> None:
        """Add `seconds` to a named timing shown in the job's `timings`."""
        self.timings[name] = round(self.timings.get(name, 0.0) + seconds, 4)

    def observe_inference(self, runtime: str, seconds: float, images: int) -> None:
        """`images` went through the model in `seconds` with `runtime`: /metrics shows the time per
        image by app and runtime (api_inference_seconds)."""
        metrics.observe(self.store.redis, "api_inference_seconds", {"app": self.app, "runtime": runtime},
                        seconds / max(images, 1), images)

    @property
    def cancelled(self) -> bool:
        return self._cancel_requested()

    def check_cancelled(self) -> None:
        if self._cancel_requested():
            raise JobCancelled()

    # -- outputs ------------------------------------------------------------------------------
    def path(self, relpath: str) -> Path:
        """Where an output lives in the job's folder (validated; for reading what you wrote)."""
        return safe_join(self.folder, relpath)

    def write(self, relpath: str, data: bytes | str) -> Path:
        path = self.path(relpath)
        atomic_write(path, data)
        return path

    def write_json(self, relpath: str, obj: Any) -> Path:
        return self.write(relpath, json.dumps(obj, ensure_ascii=False, default=str))

    @contextlib.contextmanager
    def open(self, relpath: str, mode: str = "wb") -> Iterator[IO]:
        """A file to write into, that appears whole at `relpath` when the block ends without error
        (e.g. `with job.open("a.jpg") as f: image.save(f, "JPEG")`)."""
        with atomic_open(self.path(relpath), mode) as handle:
            yield handle

    def url(self, relpath: str) -> str:
        """The public URL of an output file (for a demo's `output`)."""
        base = (self.cfg.public_url or self.job.base_url).rstrip("/")
        return f"{base}/{self.app}/{self.tracking_id}/result/{relpath}"
