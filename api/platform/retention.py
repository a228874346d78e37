"""Retention: what DATA_FOLDER keeps, and for how long.

Nothing else deletes files on its own, so without this uploads, the download cache and results
grow until the disk is full. The sweeper runs as a thread of `python -m api callbacks` (never in a
GPU worker), once per SWEEP_INTERVAL_S, one pass at a time across processes (a Redis lock):

- an ended job whose end is RESULT_TTL_DAYS old loses its results, uploads, dataset record and
  Redis state; its id is then remembered in `expired:<app>` (a sorted set: id -> when it expired,
  kept TOMBSTONE_DAYS), so its status answers 410 "expired" with that date rather than a 404;
- an upload folder UPLOAD_TTL_DAYS old goes;
- when the cache holds more than CACHE_MAX_BYTES, its entries go least recently used first, until
  it fits. An entry's last use is the mtime of its folder (`cache/<section>/<entry>/`): set when
  built and touched by `inputs.cache.mark_used` each time a job reads it (atime is no use: relatime
  and noatime mounts do not keep it);
- never the inputs of a PENDING or STARTED job: its uploads, the result folders it reads (chained
  jobs), the downloads of its documents' URLs, and any cache entry used since the oldest running
  job started (what it extracted or downloaded along the way); a pending job's derived files (zip
  members, PDF pages) are rebuilt if evicted.

Each pass measures every area as `du -sb` does (apparent sizes, directories included, a hard-linked
file once) into `retention:usage`, which /monitor, /metrics and the DATA_MAX_BYTES check at /start
read; what each pass removed goes to `retention:sweeps` (the last few) and `retention:removed`
(running totals). A swept job's share of `disk:<app>` is taken back exactly (`clear_job_files`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from redis.exceptions import LockError

from . import keys
from .config import Config
from .errors import Conflict, Gone, InsufficientStorage
from .jobs import PENDING, STARTED, STATES, TERMINAL, JobStore, iso
from .storage import APP_NAME, JOB_FILE, TEMP_PREFIX, clear_job_files, is_tracking_id

log = logging.getLogger(__name__)

DAY_S = 86400.0
AREAS = ("results", "uploads", "cache", "datasets", "models")
TOMBSTONE_DAYS = 90  # a swept job answers 410 this long, then 404
RECENT_USE_S = 600.0  # a cache entry used this recently is never evicted (a job may have just claimed it)
SWEEPS_KEPT = 10  # passes listed in /monitor
LOCK_TIMEOUT_S = 3600
REMOVED_KINDS = ("jobs", "uploads", "cache")


# -- sizes, as du -sb counts them ------------------------------------------------------------------
def du(path: Path, seen: set[tuple[int, int]] | None = None) -> int:
    """Bytes under `path` as `du -sb` prints them: the apparent size of every entry (directories
    and symbolic links included, links not followed), each hard-linked inode once; 0 when absent.
    Entries vanishing during the walk are skipped."""
    seen = set() if seen is None else seen
    try:
        info = path.lstat()
    except FileNotFoundError:
        return 0
    total = _count(info, seen)
    if stat.S_ISDIR(info.st_mode):
        stack = [str(path)]
        while stack:
            try:
                with os.scandir(stack.pop()) as entries:
                    for entry in entries:
                        with contextlib.suppress(FileNotFoundError):
                            total += _count(entry.stat(follow_symlinks=False), seen)
                            if entry.is_dir(follow_symlinks=False):
                                stack.append(entry.path)
            except (FileNotFoundError, NotADirectoryError):
                continue
    return total


def _count(info: os.stat_result, seen: set[tuple[int, int]]) -> int:
    if info.st_nlink > 1 and not stat.S_ISDIR(info.st_mode):
        if (info.st_dev, info.st_ino) in seen:
            return 0
        seen.add((info.st_dev, info.st_ino))
    return info.st_size


def _mtime(path: Path) -> float | None:
    try:
        return path.lstat().st_mtime
    except FileNotFoundError:
        return None


def _remove(path: Path) -> int:
    """Rename `path` to a hidden sibling (it vanishes at once for readers), measure, delete; the
    bytes removed (0 when another remover got there first)."""
    trash = path.with_name(f"{TEMP_PREFIX}swept-{path.name}")
    try:
        path.rename(trash)
    except FileNotFoundError:
        return 0
    size = du(trash)
    if trash.is_dir() and not trash.is_symlink():
        shutil.rmtree(trash, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            trash.unlink()
    return size


def url_entry(url: str) -> str:
    """The cache entry (`cache/documents/<name>`) a URL's download lies in (as `Fetcher.cache_path`)."""
    return hashlib.sha256(url.encode()).hexdigest()


# -- what running jobs use -----------------------------------------------------------------------
@dataclass
class InUse:
    """What PENDING and STARTED jobs read, as seen at the start of a pass."""

    jobs: set[str] = field(default_factory=set)  # their tracking ids (so their uploads)
    results: set[tuple[str, str]] = field(default_factory=set)  # (app, id) of result folders they read
    cache: set[tuple[str, str]] = field(default_factory=set)  # (section, entry) they read
    since: float = float("inf")  # when the oldest STARTED job started

    def note_path(self, cfg: Config, raw: str) -> None:
        """Protect whatever holds a document's local file or folder in DATA_FOLDER."""
        try:
            parts = Path(raw).resolve().relative_to(cfg.data_folder.resolve()).parts
        except (ValueError, OSError):
            return
        if len(parts) >= 3 and parts[0] == cfg.results_folder.name:
            self.results.add((parts[1], parts[2]))
        elif len(parts) >= 2 and parts[0] == cfg.uploads_folder.name:
            self.jobs.add(parts[1])
        elif len(parts) >= 3 and parts[0] == cfg.cache_folder.name:
            self.cache.add((parts[1], parts[2]))


def in_use(client: redis.Redis, cfg: Config, apps: Iterable[str]) -> InUse:
    """Jobs PENDING or STARTED now (the per-state indexes, each checked against its job's hash) and
    what they read: their documents' URLs (downloads), local paths (uploads, chained results)."""
    found = InUse()
    candidates = []
    for app in apps:
        for state in (PENDING, STARTED):
            candidates += [keys.text(raw) for raw in client.zrange(JobStore.index_prefix(app) + state, 0, -1)]
    pipe = client.pipeline(transaction=False)
    for tracking_id in candidates:
        pipe.hmget(keys.job(tracking_id), ["state", "started_at", "documents"])
    for tracking_id, (state, started_at, documents) in zip(candidates, pipe.execute(), strict=True):
        if state is None or keys.text(state) not in (PENDING, STARTED):
            continue
        found.jobs.add(tracking_id)
        if keys.text(state) == STARTED:
            found.since = min(found.since, float(keys.text(started_at or b"0") or 0))
        try:
            docs = json.loads(documents) if documents else []
        except ValueError:
            docs = []
        for doc in docs if isinstance(docs, list) else []:
            if not isinstance(doc, dict):
                continue
            if doc.get("src"):
                found.cache.add(("documents", url_entry(str(doc["src"]))))
            if doc.get("path"):
                found.note_path(cfg, str(doc["path"]))
    return found


# -- one pass --------------------------------------------------------------------------------------
@dataclass
class SweepReport:
    """What one pass removed and measured (JSON in `retention:sweeps`)."""

    at: float
    duration_s: float = 0.0
    jobs: list[str] = field(default_factory=list)  # "<app>/<tracking_id>"
    jobs_bytes: int = 0
    uploads: list[str] = field(default_factory=list)
    uploads_bytes: int = 0
    cache: list[str] = field(default_factory=list)  # "<section>/<entry>", least recently used first
    cache_bytes: int = 0
    kept_in_use: int = 0  # expired or evictable, kept because a pending or running job reads it
    cache_over_bytes: int = 0  # what the cache still holds past CACHE_MAX_BYTES (all of it in use)
    failures: int = 0
    areas: dict[str, int] = field(default_factory=dict)  # bytes per area after the pass, as du -sb
    data_bytes: int = 0  # all of DATA_FOLDER, as du -sb

    def summary(self) -> dict[str, Any]:
        """The pass without the lists of names (those go to the log)."""
        return {"at": iso(self.at), "duration_s": round(self.duration_s, 3),
                **{kind: len(getattr(self, kind)) for kind in REMOVED_KINDS},
                **{f"{kind}_bytes": getattr(self, f"{kind}_bytes") for kind in REMOVED_KINDS},
                "kept_in_use": self.kept_in_use, "cache_over_bytes": self.cache_over_bytes,
                "failures": self.failures}


class Sweeper:
    """Deletes what has expired (see the module's docstring); `sweep(now=...)` takes a clock so
    tests can live 31 days ahead."""

    def __init__(self, client: redis.Redis, cfg: Config, apps: Iterable[str]):
        self.client = client
        self.cfg = cfg
        self.apps = list(apps)

    def sweep(self, now: float | None = None) -> SweepReport | None:
        """One pass; None when another process holds the lock."""
        lock = self.client.lock(keys.retention_lock(), timeout=LOCK_TIMEOUT_S)
        if not lock.acquire(blocking=False):
            return None
        try:
            return self._sweep(time.time() if now is None else now)
        finally:
            with contextlib.suppress(LockError):  # held past its timeout
                lock.release()

    def run(self, stop: threading.Event) -> None:
        """A pass now, then every SWEEP_INTERVAL_S until `stop` is set (0: never)."""
        if self.cfg.sweep_interval_s <= 0:
            return
        while not stop.is_set():
            try:
                report = self.sweep()
                if report and (report.jobs or report.uploads or report.cache or report.failures):
                    log.info("retention: %s", json.dumps(report.summary()))
            except redis.RedisError as exc:
                log.warning("retention pass skipped: %s", exc)
            except Exception:  # a sweeper that dies lets the disk fill up unnoticed
                log.exception("retention pass failed")
            stop.wait(self.cfg.sweep_interval_s)

    def _sweep(self, now: float) -> SweepReport:
        started = time.monotonic()
        report = SweepReport(at=now)
        using = in_use(self.client, self.cfg, self._apps_with_jobs())
        swept = self._expire_jobs(now, using, report)
        self._forget_datasets(swept, report)
        self._expire_uploads(now, using, report)
        cache_bytes = self._evict_cache(now, using, report)
        self._measure(report, cache_bytes)
        report.duration_s = time.monotonic() - started
        self._record(report)
        return report

    def _apps_with_jobs(self) -> list[str]:
        """The installed demos and any other whose results lie on disk (a demo uninstalled since)."""
        apps = list(self.apps)
        root = self.cfg.results_folder
        if root.is_dir():
            apps += sorted(p.name for p in root.iterdir() if p.is_dir() and APP_NAME.match(p.name)
                           and p.name not in apps)
        return apps

    # -- jobs --------------------------------------------------------------------------------------
    def _expire_jobs(self, now: float, using: InUse, report: SweepReport) -> list[str]:
        ttl = self.cfg.result_ttl_days * DAY_S
        swept: list[str] = []
        if ttl <= 0:
            return swept
        for app in self._apps_with_jobs():
            folder = self.cfg.results_folder / app
            for job_folder in sorted(folder.iterdir()) if folder.is_dir() else []:
                tracking_id = job_folder.name
                if not is_tracking_id(tracking_id):
                    continue
                ended, lost = self._ended_at(job_folder, tracking_id)
                if ended is None or now - ended < ttl:
                    continue
                if tracking_id in using.jobs or (app, tracking_id) in using.results:
                    report.kept_in_use += 1
                    continue
                if lost:  # never counted (a job is counted as it ends): nothing of disk:<app> to take back
                    self.client.hsetnx(keys.disk_jobs(app), tracking_id, 0)
                try:
                    size = du(job_folder) + du(self.cfg.uploads_folder / tracking_id)
                    clear_job_files(self.cfg, app, tracking_id, self.client)
                except Conflict:  # its end is still being written: the next pass takes it
                    continue
                except OSError as exc:
                    log.warning("retention: job %s/%s not removed: %s", app, tracking_id, exc)
                    report.failures += 1
                    continue
                self._forget_job(app, tracking_id, now)
                report.jobs.append(f"{app}/{tracking_id}")
                report.jobs_bytes += size
                swept.append(tracking_id)
        return swept

    def _ended_at(self, folder: Path, tracking_id: str) -> tuple[float | None, bool]:
        """When the job ended, from its `job.json`, and whether it is lost: a job Redis forgot
        before it ended (it never will) counts from that file's last write. None while it may
        still run."""
        record = folder / JOB_FILE
        try:
            data = json.loads(record.read_text())
            written = record.stat().st_mtime
        except (OSError, ValueError):
            return None, False
        if not isinstance(data, dict):
            return None, False
        if data.get("state") in TERMINAL:
            return float(data.get("finished_at") or written), False
        if self.client.exists(keys.job(tracking_id)):
            return None, False
        return written, True

    def _forget_job(self, app: str, tracking_id: str, now: float) -> None:
        """The job's Redis state goes (it may outlive the files when RESULT_TTL_DAYS < JOB_TTL_S);
        its tombstone stays, so its status says when it expired."""
        pipe = self.client.pipeline()
        pipe.delete(keys.job(tracking_id), keys.job_errors(tracking_id), keys.job_log(tracking_id),
                    keys.job_events(tracking_id))
        for state in STATES:
            pipe.zrem(JobStore.index_prefix(app) + state, tracking_id)
        pipe.zadd(keys.expired(app), {tracking_id: now})
        pipe.zremrangebyscore(keys.expired(app), "-inf", now - TOMBSTONE_DAYS * DAY_S)
        pipe.execute()

    def _forget_datasets(self, swept: list[str], report: SweepReport) -> None:
        """The dataset records of swept jobs (`datasets/<id>.json`), and the document records whose
        latest job is one of them (with their zips): nothing newer names those."""
        if not swept:
            return
        root = self.cfg.datasets_folder
        gone = set(swept)
        for tracking_id in swept:
            report.jobs_bytes += _remove(root / f"{tracking_id}.json")
        documents = root / "documents"
        for record in sorted(documents.glob("*/*.json")) if documents.is_dir() else []:
            try:
                dataset = json.loads(record.read_text()).get("dataset")
            except (OSError, ValueError, AttributeError):
                continue
            if dataset in gone:
                report.jobs_bytes += _remove(record)
                report.jobs_bytes += _remove(root / "zips" / record.parent.name / f"{record.stem}.zip")

    # -- uploads -----------------------------------------------------------------------------------
    def _expire_uploads(self, now: float, using: InUse, report: SweepReport) -> None:
        ttl = self.cfg.upload_ttl_days * DAY_S
        root = self.cfg.uploads_folder
        if ttl <= 0 or not root.is_dir():
            return
        for folder in sorted(root.iterdir()):
            uploaded = _mtime(folder)
            if uploaded is None or now - uploaded < ttl:
                continue
            if folder.name in using.jobs:
                report.kept_in_use += 1
                continue
            try:
                size = _remove(folder)
            except OSError as exc:
                log.warning("retention: upload %s not removed: %s", folder.name, exc)
                report.failures += 1
                continue
            if size:
                report.uploads.append(folder.name)
                report.uploads_bytes += size

    # -- the cache ---------------------------------------------------------------------------------
    def _evict_cache(self, now: float, using: InUse, report: SweepReport) -> int:
        """Evict least recently used entries while the cache is over CACHE_MAX_BYTES; returns the
        cache's bytes after that (as du -sb)."""
        root = self.cfg.cache_folder
        entries: list[tuple[float, str, str, int]] = []  # last use, section, name, bytes
        seen: set[tuple[int, int]] = set()
        total = du(root) if not root.is_dir() else root.lstat().st_size
        for folder in sorted(root.iterdir()) if root.is_dir() else []:
            if not folder.is_dir() or folder.is_symlink():
                total += du(folder, seen)
                continue
            total += folder.lstat().st_size
            for entry in sorted(folder.iterdir()):
                last_use, size = _mtime(entry), du(entry, seen)
                total += size
                if last_use is not None:
                    entries.append((last_use, folder.name, entry.name, size))
        limit = self.cfg.cache_max_bytes
        if limit <= 0 or total <= limit:
            return total
        recent = min(now - RECENT_USE_S, using.since)
        for last_use, section, name, size in sorted(entries):
            if total <= limit:
                break
            path = root / section / name
            if last_use >= recent or (section, name) in using.cache:
                report.kept_in_use += 1
                continue
            if _mtime(path) != last_use:  # a job read it since this pass looked
                continue
            try:
                removed = _remove(path)
            except OSError as exc:
                log.warning("retention: cache entry %s/%s not removed: %s", section, name, exc)
                report.failures += 1
                continue
            if removed:
                total -= size
                report.cache.append(f"{section}/{name}")
                report.cache_bytes += removed
        report.cache_over_bytes = max(0, total - limit)
        return total

    # -- measuring, recording ----------------------------------------------------------------------
    def _measure(self, report: SweepReport, cache_bytes: int) -> None:
        """Every area's bytes, and DATA_FOLDER's as a whole (areas are its children: walked once)."""
        folders = {"results": self.cfg.results_folder, "uploads": self.cfg.uploads_folder,
                   "cache": self.cfg.cache_folder, "datasets": self.cfg.datasets_folder,
                   "models": self.cfg.models_folder}
        areas = {area: cache_bytes if area == "cache" else du(folder) for area, folder in folders.items()}
        root = self.cfg.data_folder
        other = 0
        if root.is_dir():
            by_name = {folder.name for folder in folders.values()}
            other = root.lstat().st_size + sum(du(child) for child in root.iterdir() if child.name not in by_name)
        report.areas = {**areas, "other": other}
        report.data_bytes = sum(report.areas.values()) if root.is_dir() else 0

    def _record(self, report: SweepReport) -> None:
        counted = self.client.mget([keys.disk(app) for app in self.apps]) if self.apps else []
        usage: dict[Any, Any] = {**report.areas, "data_bytes": report.data_bytes, "measured_at": report.at,
                                 **{f"counted:{app}": int(raw or 0) for app, raw in zip(self.apps, counted,
                                                                                         strict=True)}}
        pipe = self.client.pipeline()
        pipe.delete(keys.retention_usage())
        pipe.hset(keys.retention_usage(), mapping=usage)
        pipe.lpush(keys.retention_sweeps(), json.dumps(report.summary()))
        pipe.ltrim(keys.retention_sweeps(), 0, SWEEPS_KEPT - 1)
        for kind in REMOVED_KINDS:
            pipe.hincrby(keys.retention_removed(), kind, len(getattr(report, kind)))
            pipe.hincrby(keys.retention_removed(), f"{kind}_bytes", getattr(report, f"{kind}_bytes"))
        pipe.hset(keys.retention_removed(), "last_sweep_at", report.at)
        pipe.execute()


# -- what the API reads ----------------------------------------------------------------------------
def expired_at(client: redis.Redis, app: str, tracking_id: str) -> float | None:
    """When the sweeper removed this job (unix time), if it did within TOMBSTONE_DAYS."""
    score = client.zscore(keys.expired(app), tracking_id)
    return float(score) if score is not None else None


def check_expired(client: redis.Redis, cfg: Config, app: str, tracking_id: str) -> None:
    """Raise 410 "expired" (with when) if the sweeper removed this job."""
    when = expired_at(client, app, tracking_id)
    if when is not None:
        raise Gone(f"job {tracking_id} expired on {iso(when)}: ended jobs are kept {cfg.result_ttl_days:g} days "
                   "(RESULT_TTL_DAYS), then deleted", details={"expired_at": iso(when)})


def usage(client: redis.Redis) -> dict[str, float]:
    """The last pass's measurement (`retention:usage`); empty before the first pass."""
    return {keys.text(k): float(keys.text(v)) for k, v in client.hgetall(keys.retention_usage()).items()}


def estimated_data_bytes(client: redis.Redis) -> int | None:
    """DATA_FOLDER's bytes now, as well as can be known without walking it: the last pass's
    measurement plus the results counted (`disk:<app>`) since. None before the first pass."""
    measured = usage(client)
    if "data_bytes" not in measured:
        return None
    apps = [name.partition(":")[2] for name in measured if name.startswith("counted:")]
    now = client.mget([keys.disk(app) for app in apps]) if apps else []
    grown = sum(max(0, int(raw or 0) - int(measured[f"counted:{app}"])) for app, raw in zip(apps, now, strict=True))
    return int(measured["data_bytes"]) + grown


def check_room(client: redis.Redis, cfg: Config, incoming: int = 0) -> None:
    """Raise 507 when DATA_FOLDER plus `incoming` bytes would pass DATA_MAX_BYTES (0: no limit).
    Until the sweeper has measured once, nothing is refused."""
    if cfg.data_max_bytes <= 0:
        return
    current = estimated_data_bytes(client)
    if current is None or current + incoming <= cfg.data_max_bytes:
        return
    raise InsufficientStorage(
        f"DATA_FOLDER holds about {current} bytes; with this request's {incoming} it would pass DATA_MAX_BYTES="
        f"{cfg.data_max_bytes}. Ended jobs are deleted after RESULT_TTL_DAYS={cfg.result_ttl_days:g}; "
        "an operator can free space sooner with POST /<app>/monitor/clear",
        details={"data_bytes": current, "incoming_bytes": incoming, "data_max_bytes": cfg.data_max_bytes})


def upload_bytes(uploads: Iterable[Any]) -> int:
    """Bytes of werkzeug uploads (spooled, so seekable; the stream is rewound)."""
    total = 0
    for upload in uploads:
        stream: Any = getattr(upload, "stream", None)
        try:
            position = stream.tell()
            total += stream.seek(0, os.SEEK_END)
            stream.seek(position)
        except (AttributeError, OSError, ValueError):
            total += int(getattr(upload, "content_length", 0) or 0)
    return total


def sweeps(client: redis.Redis) -> list[dict]:
    """The last passes' summaries, newest first."""
    return [json.loads(raw) for raw in client.lrange(keys.retention_sweeps(), 0, -1)]


def removed_totals(client: redis.Redis) -> dict[str, float]:
    """What every pass removed, summed (counts and bytes per kind), and when the last one ran."""
    return {keys.text(k): float(keys.text(v)) for k, v in client.hgetall(keys.retention_removed()).items()}


def monitor_fields(client: redis.Redis, cfg: Config) -> dict[str, Any]:
    """The `disk` additions and the `retention` block of /<app>/monitor."""
    measured = usage(client)
    totals = removed_totals(client)
    return {
        "areas": {area: int(measured[area]) if area in measured else None for area in (*AREAS, "other")},
        "data_bytes": estimated_data_bytes(client),
        "data_max_bytes": cfg.data_max_bytes,
        "measured_at": iso(measured.get("measured_at")),
        "retention": {
            "result_ttl_days": cfg.result_ttl_days, "upload_ttl_days": cfg.upload_ttl_days,
            "cache_max_bytes": cfg.cache_max_bytes, "sweep_interval_s": cfg.sweep_interval_s,
            "removed_total": {name: int(totals.get(name, 0)) for kind in REMOVED_KINDS
                              for name in (kind, f"{kind}_bytes")},
            "last_sweeps": sweeps(client),
        },
    }


def metric_families(client: redis.Redis) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
    """For /metrics: bytes per area (last pass), what passes removed, when the last one ran."""
    measured = usage(client)
    totals = removed_totals(client)
    data = GaugeMetricFamily("api_data_bytes", "Bytes in DATA_FOLDER per area, as du -sb, at the last sweep",
                             labels=["area"])
    for area in (*AREAS, "other"):
        if area in measured:
            data.add_metric([area], measured[area])
    yield data
    swept = CounterMetricFamily("api_swept", "Things the retention sweeper removed", labels=["kind"])
    swept_bytes = CounterMetricFamily("api_swept_bytes", "Bytes the retention sweeper removed", labels=["kind"])
    for kind in REMOVED_KINDS:
        swept.add_metric([kind], totals.get(kind, 0.0))
        swept_bytes.add_metric([kind], totals.get(f"{kind}_bytes", 0.0))
    yield swept
    yield swept_bytes
    if "last_sweep_at" in totals:
        yield GaugeMetricFamily("api_last_sweep_timestamp_seconds", "When the last retention sweep ran",
                                value=totals["last_sweep_at"])
