"""Running one job inside a worker process: the body of every demo's actor.

Order of work: claim the job (PENDING → STARTED, atomically), get the model from the per-process
cache, expand the documents into image sources, let the demo run over them, zip the results,
record SUCCESS. Bad input or a demo error ends FAILURE with a plain message and is never retried;
a cancel ends CANCELLED; Redis or disk trouble is raised again so dramatiq retries the message.
"""
from __future__ import annotations

import logging
import time
import traceback
from collections import OrderedDict
from typing import Any

import redis
from dramatiq.middleware import CurrentMessage, TimeLimitExceeded
from dramatiq_abort import Abort, abort_requested

from . import datasets, metrics
from .callbacks import Outbox
from .config import Config
from .context import JobCancelled, JobContext
from .demo import Demo
from .devices import pick_device
from .events import announce, end
from .inputs import Document, DocumentError, DownloadError, Fetcher, configure_pillow, expand
from .jobs import CANCELLED, FAILURE, STARTED, SUCCESS, TERMINAL, Job, JobStore, job_path
from .queue import Platform, is_infrastructure_error
from .storage import build_zip, count_results

log = logging.getLogger(__name__)


class ModelCache:
    """Models kept per worker process, by (demo, model id), least recently used dropped first."""

    def __init__(self, size: int):
        self.size = max(1, size)
        self.models: OrderedDict[tuple[str, str | None], Any] = OrderedDict()

    def get(self, demo: Demo, model_id: str | None) -> tuple[Any, float]:
        """The model and the seconds spent loading it now (0.0 when it was cached)."""
        key = (demo.name, model_id)
        if key in self.models:
            self.models.move_to_end(key)
            return self.models[key], 0.0
        start = time.perf_counter()
        model = demo.load_model(model_id)
        self.models[key] = model
        while len(self.models) > self.size:
            self.models.popitem(last=False)
        return model, time.perf_counter() - start


class JobRunner:
    """The worker side of the platform: its broker (with one actor per demo, bound to `run`), the
    job store, the outbox and the model cache of this worker process."""

    def __init__(self, cfg: Config, demos: dict[str, Demo]):
        self.cfg = cfg
        self.demos = demos
        self.models = ModelCache(cfg.model_cache_size)
        self._device: str | None = None
        configure_pillow(cfg)
        self.platform = Platform(cfg, demos, run_job=self.run, redis_patience_s=cfg.redis_outage_tolerance_s)
        self.store = JobStore(self.platform.client, cfg)
        self.outbox = Outbox(self.platform.client, cfg)
        self.fetcher = Fetcher(cfg)
        self.heartbeat = self.platform.heartbeat
        self.platform.job_ends.on_dead_letter = self.record_dead_letter
        self.platform.job_ends.on_skipped = self.record_skipped

    @property
    def device(self) -> str:
        if self._device is None:
            self._device = pick_device(self.cfg.device)
        return self._device

    # -- the actor body -------------------------------------------------------------------------
    def run(self, app: str, tracking_id: str) -> None:
        job = self.store.get(app, tracking_id)
        if job is None or job.state in TERMINAL:
            log.info("job %s is %s; nothing to do", tracking_id, job.state if job else "unknown")
            return
        message = CurrentMessage.get_current_message()
        if message and job.message_id and message.message_id != job.message_id:
            log.info("job %s was re-queued as message %s; this delivery (%s) is stale", tracking_id,
                     job.message_id, message.message_id)
            return
        if not self.store.transition(job, STARTED, attempts=job.attempts + 1, worker=self.heartbeat.worker_id,
                                     done=0):
            log.info("job %s was %s before it could start", tracking_id, job.state)
            return
        deaths = job.attempts - 1 - (message.options.get("retries", 0) if message else 0)
        if deaths >= self.cfg.job_max_deliveries:
            self._finish(job, FAILURE, error=f"the worker running this job stopped {deaths} times; "
                                              "giving up (see the worker logs)")
            return
        self.heartbeat.current_job = {"app": app, "tracking_id": tracking_id}
        self.heartbeat.beat()
        self.store.clear_errors(job)
        self.store.log(job, f"started on {self.heartbeat.worker_id} (attempt {job.attempts})")
        announce(self.outbox, self.cfg, job)
        try:
            self._run(job)
        except (JobCancelled, Abort):
            self._finish(job, CANCELLED, error="cancelled by the client")
        except TimeLimitExceeded:
            self._finish(job, FAILURE, error=f"time limit of {self.cfg.job_time_limit_s} s exceeded")
        except Exception as exc:
            if is_infrastructure_error(exc):
                self._note_retry(job, exc)
                raise  # dramatiq retries it; JobEnds records FAILURE if it never succeeds
            log.error("job %s failed:\n%s", tracking_id, traceback.format_exc())
            self._finish(job, FAILURE, error=_plain(exc))
        finally:
            self.heartbeat.current_job = None

    def _run(self, job: Job) -> None:
        demo = self.demos[job.app]
        started = time.perf_counter()
        sources = self._expand(job)
        expand_s = time.perf_counter() - started
        model, load_s = self.models.get(demo, demo.model_id(job.params))
        self.store.update(job, total=len(sources))
        ctx = JobContext(job, cfg=self.cfg, store=self.store, folder=job_path(self.cfg, job), sources=sources,
                         fetcher=self.fetcher, cancel_requested=self._cancel_requested,
                         on_progress=lambda j: announce(self.outbox, self.cfg, j, "PROGRESS"),
                         device=lambda: self.device)
        run_started = time.perf_counter()
        output = demo.run(ctx, model)
        run_s = time.perf_counter() - run_started
        if ctx.failed_images >= len(sources):
            raise RuntimeError(f"no image could be processed; first error: {ctx.first_error}")
        datasets.record(self.cfg, job.tracking_id, job.app, job.documents, sources, self.fetcher)
        if isinstance(output, dict):  # where the client finds the images again (discover-demo reads it)
            base = (self.cfg.public_url or job.base_url).rstrip("/")
            output = {**output, "dataset_url": f"{base}/datasets/{job.tracking_id}"}
        timings = {"queued_s": round(job.started_at - job.created_at, 4), "expand_s": round(expand_s, 4),
                   "model_load_s": round(load_s, 4), "model_cached": load_s == 0.0, "run_s": round(run_s, 4),
                   "per_image_s": round(run_s / max(job.done, 1), 4), **ctx.timings}
        self.store.update(job, timings=timings, done=job.total)
        self._finish(job, SUCCESS, output=output)

    def _expand(self, job: Job) -> list:
        """Every document's image sources; a document that cannot be read is an error, not the end."""
        sources, failures = [], []
        for raw in job.documents:
            if self._cancel_requested():
                raise JobCancelled()
            doc = Document.from_dict(raw)
            try:
                found = expand(doc, self.fetcher, self.cfg)
            except (DocumentError, DownloadError) as exc:
                failures.append(f"{doc.uid}: {exc}")
                self.store.add_error(job, {"doc_uid": doc.uid, "message": str(exc)})
                continue
            self.store.log(job, f"document {doc.uid}: {len(found)} image(s)")
            sources.extend(found)
        if len(sources) > self.cfg.max_images_per_job:
            raise ValueError(f"{len(sources)} images in this job; the limit is {self.cfg.max_images_per_job} "
                             "(MAX_IMAGES_PER_JOB)")
        if not sources:
            raise ValueError("no image to process" + (f": {'; '.join(failures)}" if failures else ""))
        return sources

    def _note_retry(self, job: Job, exc: BaseException) -> None:
        """Say in the job's log and errors why it paused (e.g. the disk is full), so a client does
        not watch a silent STARTED job while dramatiq waits to try it again."""
        message = CurrentMessage.get_current_message()
        retries = message.options.get("retries", 0) if message else 0
        note = (f"paused by an infrastructure failure: {_plain(exc)}; "
                + (f"retry {retries + 1} of {self.cfg.infra_max_retries} after a back-off"
                   if retries < self.cfg.infra_max_retries else "no retry left"))
        try:
            self.store.add_error(job, {"message": note})
            self.store.log(job, note)
        except redis.RedisError:
            log.warning("job %s: %s", job.tracking_id, note)

    def _cancel_requested(self) -> bool:
        return abort_requested(middleware=self.platform.abortable) is not None

    def _finish(self, job: Job, state: str, **changes: Any) -> None:
        folder = job_path(self.cfg, job)
        if state == SUCCESS:
            build_zip(folder)
        count_results(self.store.redis, job.app, job.tracking_id, folder)  # before the end a clear waits for
        if not end(self.store, self.outbox, self.cfg, job, state, **changes):
            return
        duration = job.finished_at - (job.started_at or job.created_at)
        metrics.observe(self.store.redis, "api_job_duration_seconds", {"app": job.app, "state": state}, duration,
                        buckets=metrics.JOB_BUCKETS)

    def record_dead_letter(self, app: str, tracking_id: str, exc: BaseException | None) -> None:
        """dramatiq gave up on this job's message: record FAILURE unless it already ended."""
        self._end_unless_ended(app, tracking_id, FAILURE, f"infrastructure failure, retries exhausted: {_plain(exc)}")

    def record_skipped(self, app: str, tracking_id: str) -> None:
        """The message was skipped because of a cancel: make sure the job says CANCELLED."""
        self._end_unless_ended(app, tracking_id, CANCELLED, "cancelled by the client")

    def _end_unless_ended(self, app: str, tracking_id: str, state: str, error: str) -> None:
        job = self.store.get(app, tracking_id)
        if job and job.state not in TERMINAL:
            self._finish(job, state, error=error)


def _plain(exc: BaseException | None) -> str:
    """An exception as one line for a client: its message, never a traceback."""
    if exc is None:
        return "unknown error"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:500]
