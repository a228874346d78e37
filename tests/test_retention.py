"""Retention: the sweeper deletes exactly what has expired (ended jobs, uploads, the cache's least
recently used entries), never what a pending or running job reads, takes back each job's share of
`disk:<app>`, and measures DATA_FOLDER as `du -sb` does. Clocks are fake (`sweep(now=...)`, file
times set with os.utime); Redis, the API app, the worker and `python -m api callbacks` are real."""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from api import create_app
from api.platform import keys, retention
from api.platform.config import load_config
from api.platform.inputs import Fetcher
from api.platform.inputs.cache import build_once
from api.platform.jobs import CANCELLED, STARTED, SUCCESS, Job, JobStore
from api.platform.retention import DAY_S, RECENT_USE_S, Sweeper, du
from api.platform.storage import JOB_FILE, count_results
from tests.support.platform import Processes, json_of, platform_env, png_bytes, wait_for

NOW = 1_900_000_000.0  # the sweeper's clock: about 2030, later than any real file time here
APP = "dummy"


def tid(n: int) -> str:
    return f"{n:032x}"


@pytest.fixture
def store(config):
    client = redis.Redis.from_url(config.redis_url)
    yield JobStore(client, config)
    client.close()


def sweeper(store: JobStore, **settings) -> Sweeper:
    cfg = replace(store.cfg, **{"result_ttl_days": 30.0, "upload_ttl_days": 7.0, "cache_max_bytes": 0, **settings})
    return Sweeper(store.redis, cfg, [APP])


def du_sb(path: Path) -> int:
    """The real `du -sb` (coreutils); 0 for nothing there."""
    if not os.path.lexists(path):
        return 0
    return int(subprocess.run(["du", "-sb", str(path)], check=True, capture_output=True, text=True).stdout.split()[0])


def set_time(path: Path, when: float) -> None:
    os.utime(path, (when, when))


def upload(cfg, tracking_id: str, size: int, when: float) -> Path:
    folder = cfg.uploads_folder / tracking_id
    (folder / "0000").mkdir(parents=True)
    (folder / "0000" / "scan.png").write_bytes(b"u" * size)
    set_time(folder / "0000", when)
    set_time(folder, when)
    return folder


def ended(store: JobStore, tracking_id: str, ended_at: float, result_bytes: int = 1000, state: str = CANCELLED,
          documents: list | None = None) -> Job:
    """A job that ended at `ended_at` (its job.json says so), with results counted in disk:<app>."""
    job = Job(tracking_id=tracking_id, app=APP, documents=documents or [])
    store.create(job)
    if state == SUCCESS:
        store.transition(job, STARTED)
    store.transition(job, state, finished_at=ended_at)
    folder = store.cfg.results_folder / APP / tracking_id
    (folder / "doc" / "crops").mkdir(parents=True)
    (folder / "doc" / "crops" / "a.png").write_bytes(b"r" * result_bytes)
    count_results(store.redis, APP, tracking_id, folder)
    return job


def active(store: JobStore, tracking_id: str, state: str = "PENDING", documents: list | None = None) -> Job:
    job = Job(tracking_id=tracking_id, app=APP, documents=documents or [])
    store.create(job)
    if state == STARTED:
        store.transition(job, STARTED)
    return job


def cache_entry(cfg, section: str, name: str, size: int, last_use: float) -> Path:
    entry = cfg.cache_folder / section / name
    entry.mkdir(parents=True)
    (entry / "image").write_bytes(b"c" * size)
    set_time(entry, last_use)
    return entry


# -- jobs and uploads ------------------------------------------------------------------------------
def test_the_sweeper_deletes_exactly_the_expired_jobs_and_uploads_and_never_a_running_jobs(store, config, client):
    cfg = config
    old, day = NOW - 31 * DAY_S, DAY_S
    # ended: 31 days ago (goes), exactly 30 (goes), 29 (stays); a SUCCESS with a dataset record (goes)
    ended(store, tid(1), old, 1000)
    ended(store, tid(2), NOW - 30 * day, 2000)
    ended(store, tid(3), NOW - 29 * day, 3000)
    ended(store, tid(4), old, 4000, state=SUCCESS)
    upload(cfg, tid(4), 500, old)
    (cfg.datasets_folder / "documents" / "img").mkdir(parents=True)
    (cfg.datasets_folder / f"{tid(4)}.json").write_text(json.dumps({"uid": tid(4), "documents": []}))
    (cfg.datasets_folder / "documents" / "img" / "scan.json").write_text(json.dumps({"dataset": tid(4)}))
    (cfg.datasets_folder / "documents" / "img" / "other.json").write_text(json.dumps({"dataset": tid(3)}))
    # a job Redis lost before it ended: job.json still says PENDING, last written 31 days ago (goes)
    lost = active(store, tid(5))
    store.redis.delete(keys.job(tid(5)))
    set_time(cfg.results_folder / APP / tid(5) / JOB_FILE, old)
    # an old ended job whose crops a pending job reads (chained): stays while that job waits
    ended(store, tid(6), old, 600)
    crops = cfg.results_folder / APP / tid(6) / "doc" / "crops"
    active(store, tid(7), documents=[{"type": "dir", "uid": "crops", "path": str(crops)}])
    # pending and running jobs with 40-day-old uploads (kept), an orphan upload 8 days old (goes),
    # one 6 days old (stays)
    upload(cfg, tid(7), 700, NOW - 40 * day)
    active(store, tid(8), STARTED)
    upload(cfg, tid(8), 800, NOW - 40 * day)
    upload(cfg, tid(9), 900, NOW - 8 * day)
    upload(cfg, tid(10), 100, NOW - 6 * day)
    removed = {f"{APP}/{t}": du_sb(cfg.results_folder / APP / t) + du_sb(cfg.uploads_folder / t)
               for t in (tid(1), tid(2), tid(4), tid(5))}
    removed_upload = du_sb(cfg.uploads_folder / tid(9))
    datasets_bytes = du_sb(cfg.datasets_folder / f"{tid(4)}.json") + du_sb(
        cfg.datasets_folder / "documents" / "img" / "scan.json")
    shares = {t: int(store.redis.hget(keys.disk_jobs(APP), t)) for t in (tid(1), tid(2), tid(4))}
    total_before = int(store.redis.get(keys.disk(APP)))

    report = sweeper(store).sweep(now=NOW)

    assert sorted(report.jobs) == sorted(removed)
    assert report.uploads == [tid(9)] and report.uploads_bytes == removed_upload
    assert report.jobs_bytes == sum(removed.values()) + datasets_bytes
    assert sorted(p.name for p in (cfg.results_folder / APP).iterdir()) == [tid(3), tid(6), tid(7), tid(8)]
    assert sorted(p.name for p in cfg.uploads_folder.iterdir()) == [tid(7), tid(8), tid(10)]
    assert not (cfg.datasets_folder / f"{tid(4)}.json").exists()
    assert sorted(p.name for p in (cfg.datasets_folder / "documents" / "img").iterdir()) == ["other.json"]
    assert report.kept_in_use == 3  # expired, but read by a pending or running job: tid(6), uploads of 7 and 8
    # each swept job's share taken back exactly; its Redis state gone, its tombstone there
    assert int(store.redis.get(keys.disk(APP))) == total_before - sum(shares.values())
    for t in (tid(1), tid(2), tid(4), tid(5)):
        assert not store.redis.exists(keys.job(t), keys.job_log(t), keys.job_errors(t)), t
        assert not any(store.redis.zscore(store.index_prefix(APP) + s, t) for s in ("CANCELLED", "SUCCESS", "PENDING"))
        assert retention.expired_at(store.redis, APP, t) == NOW
    assert store.redis.exists(keys.job(tid(3))) and store.get(APP, tid(3)).state == CANCELLED
    assert lost.tracking_id in {r.split("/")[1] for r in report.jobs}
    # status (and every route on the job) answers 410 with the date; an unknown job is still 404
    response = client.get(f"/{APP}/{tid(1)}/status")
    assert response.status_code == 410, response.data
    error = json_of(response)["error"]
    assert error["code"] == "expired" and error["expired_at"].startswith("2030-03-17T")
    assert "RESULT_TTL_DAYS" in error["message"]
    assert client.get(f"/{APP}/{tid(4)}/result").status_code == 410
    assert client.get(f"/{APP}/{tid(11)}/status").status_code == 404
    assert client.get(f"/{APP}/{tid(3)}/status").status_code == 200
    # a second pass finds nothing more to do
    again = sweeper(store).sweep(now=NOW)
    assert (again.jobs, again.uploads, again.cache) == ([], [], [])


def test_a_chained_jobs_source_goes_once_the_reader_has_ended(store, config):
    ended(store, tid(1), NOW - 31 * DAY_S)
    crops = config.results_folder / APP / tid(1) / "doc" / "crops"
    reader = active(store, tid(2), STARTED, documents=[{"type": "dir", "uid": "c", "path": str(crops)}])
    assert sweeper(store).sweep(now=NOW).jobs == []
    store.transition(reader, CANCELLED, finished_at=NOW - DAY_S)
    assert sweeper(store).sweep(now=NOW).jobs == [f"{APP}/{tid(1)}"]


def test_zero_days_keeps_everything_and_a_second_sweeper_waits_for_the_first(store, config):
    ended(store, tid(1), NOW - 400 * DAY_S)
    upload(config, tid(2), 10, NOW - 400 * DAY_S)
    report = sweeper(store, result_ttl_days=0, upload_ttl_days=0).sweep(now=NOW)
    assert (report.jobs, report.uploads) == ([], [])
    lock = store.redis.lock(keys.retention_lock(), timeout=10)
    assert lock.acquire(blocking=False)
    assert sweeper(store).sweep(now=NOW) is None  # another process is sweeping
    lock.release()


def test_monitor_clear_and_the_sweeper_take_a_jobs_share_back_once(store, config, client):
    ended(store, tid(1), NOW - 31 * DAY_S, 1000)
    ended(store, tid(2), NOW - 31 * DAY_S, 2000)
    response = client.post(f"/{APP}/monitor/clear/{tid(1)}")
    assert response.status_code == 200 and json_of(response)["cleared"] == 1
    report = sweeper(store).sweep(now=NOW)
    assert report.jobs == [f"{APP}/{tid(2)}"]
    assert int(store.redis.get(keys.disk(APP))) == 0
    assert json_of(client.get(f"/{APP}/monitor"))["total_size"] == 0


def test_an_idempotency_key_of_a_swept_job_answers_410(client, store, config):
    body = {"documents": [{"type": "img", "src": "https://example.org/a.png"}]}
    first = client.post(f"/{APP}/start", json=body, headers={"Idempotency-Key": "run-1"})
    tracking_id = json_of(first)["tracking_id"]
    job = store.get(APP, tracking_id)
    store.transition(job, CANCELLED, finished_at=NOW - 31 * DAY_S)
    assert sweeper(store).sweep(now=NOW).jobs == [f"{APP}/{tracking_id}"]
    again = client.post(f"/{APP}/start", json=body, headers={"Idempotency-Key": "run-1"})
    assert again.status_code == 410 and json_of(again)["error"]["code"] == "expired"


# -- the cache -------------------------------------------------------------------------------------
def test_the_cache_goes_least_recently_used_first_until_it_fits_keeping_what_jobs_read(store, config):
    cfg = config
    url = "https://example.org/manifest.json"
    entries = {  # name: (section, bytes, last use)
        "a": ("documents", 4000, NOW - 50 * DAY_S),
        "b": ("zip", 3000, NOW - 40 * DAY_S),
        "c": ("documents", 5000, NOW - 30 * DAY_S),
        "d": ("pdf", 2000, NOW - 20 * DAY_S),
        "e": ("documents", 6000, NOW - 10 * DAY_S),
        "f": ("documents", 1000, NOW - RECENT_USE_S / 2),  # just used: a job may have claimed it
    }
    for name, (section, size, when) in entries.items():
        cache_entry(cfg, section, name, size, when)
    pending_reads = cache_entry(cfg, "documents", retention.url_entry(url), 7000, NOW - 60 * DAY_S)  # the oldest
    active(store, tid(1), documents=[{"type": "iiif", "src": url, "uid": "m"}])
    for section in ("documents", "zip", "pdf"):
        set_time(cfg.cache_folder / section, NOW - DAY_S)
    before = du_sb(cfg.cache_folder)
    sizes = {name: du_sb(cfg.cache_folder / section / name) for name, (section, _, _) in entries.items()}
    # one byte less room than without a and b: a, b, then c go (the older pending one stays)
    limit = before - sizes["a"] - sizes["b"] - 1

    report = sweeper(store, cache_max_bytes=limit).sweep(now=NOW)

    assert report.cache == ["documents/a", "zip/b", "documents/c"]
    assert report.cache_bytes == sizes["a"] + sizes["b"] + sizes["c"]
    assert pending_reads.is_dir() and report.kept_in_use == 1
    left = sorted(p.name for s in ("documents", "zip", "pdf") for p in (cfg.cache_folder / s).iterdir())
    assert left == sorted(["d", "e", "f", pending_reads.name])
    assert du_sb(cfg.cache_folder) <= limit
    assert report.areas["cache"] == du_sb(cfg.cache_folder) and report.cache_over_bytes == 0


def test_entries_used_since_the_oldest_running_job_started_are_kept(store, config):
    cfg = config
    running = active(store, tid(1), STARTED)  # started now, in real time: before NOW
    cache_entry(cfg, "zip", "old", 5000, running.started_at - 10)
    cache_entry(cfg, "zip", "read-by-it", 5000, running.started_at + 1)  # extracted by the running job
    report = sweeper(store, cache_max_bytes=1).sweep(now=NOW)
    assert report.cache == ["zip/old"]
    assert (cfg.cache_folder / "zip" / "read-by-it").is_dir() and report.cache_over_bytes > 0


def one_page(tmp: Path) -> list[str]:
    (tmp / "p1.png").write_bytes(png_bytes())
    return ["p1.png"]


def test_a_job_reading_a_cache_entry_makes_it_recently_used(store, config, http_server):
    """The last use is recorded when a job reads an entry (a download hit, a zip or PDF folder
    built once), not when it was written: of three entries, the one not read again goes first."""
    cfg = config
    http_server.add("/first.png", png_bytes((1, 1, 1)), "image/png")
    http_server.add("/second.png", png_bytes((2, 2, 2)), "image/png")
    fetcher = Fetcher(cfg)
    first = fetcher.fetch(http_server.url("/first.png"), kind="image")
    second = fetcher.fetch(http_server.url("/second.png"), kind="image")
    assert first.parent.name == retention.url_entry(http_server.url("/first.png"))
    built = cfg.cache_folder / "zip" / ("0" * 64)
    build_once(built, one_page)
    base = time.time()
    for entry, days in ((first.parent, 9), (second.parent, 8), (built, 7)):  # written days ago, first the oldest
        set_time(entry, base - days * DAY_S)
    assert fetcher.fetch(http_server.url("/first.png"), kind="image") == first  # a hit: no download
    assert len(http_server.requests) == 2
    build_once(built, lambda tmp: pytest.fail("built twice"))
    later = base + 2 * RECENT_USE_S  # those reads are no longer "just now"
    report = sweeper(store, cache_max_bytes=du_sb(cfg.cache_folder) - 1).sweep(now=later)
    assert report.cache == [f"documents/{second.parent.name}"]
    assert first.is_file() and built.is_dir()


# -- sizes -----------------------------------------------------------------------------------------
def test_disk_accounting_matches_du(store, config, client):
    cfg = config
    ended(store, tid(1), NOW - DAY_S, 12_345)
    upload(cfg, tid(2), 6789, NOW)
    cache_entry(cfg, "documents", "x", 3333, NOW)
    cache_entry(cfg, "pdf", "y-150dpi", 4444, NOW)
    (cfg.models_folder / APP).mkdir(parents=True)
    (cfg.models_folder / APP / "v1.pt").write_bytes(b"m" * 2222)
    (cfg.datasets_folder / "zips").mkdir(parents=True)
    (cfg.datasets_folder / "zips" / "a.zip").write_bytes(b"z" * 111)
    os.link(cfg.datasets_folder / "zips" / "a.zip", cfg.datasets_folder / "zips" / "b.zip")  # counted once, as du does
    os.symlink("/etc", cfg.models_folder / "link")  # a link is its own size, never followed
    (cfg.data_folder / "model_loads.log").write_text("1 v1\n")

    report = sweeper(store, cache_max_bytes=10**9).sweep(now=NOW)

    folders = {"results": cfg.results_folder, "uploads": cfg.uploads_folder, "cache": cfg.cache_folder,
               "datasets": cfg.datasets_folder, "models": cfg.models_folder}
    assert {area: report.areas[area] for area in folders} == {area: du_sb(f) for area, f in folders.items()}
    assert report.data_bytes == du_sb(cfg.data_folder)
    assert du(cfg.data_folder) == du_sb(cfg.data_folder)
    monitor = json_of(client.get(f"/{APP}/monitor"))
    assert monitor["disk"]["areas"] == report.areas and monitor["disk"]["data_bytes"] == report.data_bytes
    assert monitor["disk"]["measured_at"].startswith("2030-03-17T")
    [last] = monitor["retention"]["last_sweeps"]
    assert (last["jobs"], last["uploads"], last["cache"]) == (0, 0, 0)
    assert monitor["retention"]["result_ttl_days"] == 30
    text = client.get("/metrics").data.decode()
    assert f'api_data_bytes{{area="results"}} {float(du_sb(cfg.results_folder))}' in text
    assert 'api_swept_total{kind="jobs"} 0.0' in text and "api_last_sweep_timestamp_seconds 1.9e+09" in text


def test_what_sweeps_removed_shows_in_monitor_and_metrics(store, config, client):
    ended(store, tid(1), NOW - 31 * DAY_S, 5000)
    upload(config, tid(2), 700, NOW - 8 * DAY_S)
    cache_entry(config, "documents", "old", 900, NOW - DAY_S)
    report = sweeper(store, cache_max_bytes=1).sweep(now=NOW)
    sweeper(store, cache_max_bytes=1).sweep(now=NOW + 1)  # nothing more
    retention_block = json_of(client.get(f"/{APP}/monitor"))["retention"]
    newest, oldest = retention_block["last_sweeps"]
    assert (oldest["jobs"], oldest["uploads"], oldest["cache"]) == (1, 1, 1)
    assert (newest["jobs"], newest["uploads"], newest["cache"]) == (0, 0, 0)
    assert retention_block["removed_total"] == {
        "jobs": 1, "jobs_bytes": report.jobs_bytes, "uploads": 1, "uploads_bytes": report.uploads_bytes,
        "cache": 1, "cache_bytes": report.cache_bytes}
    text = client.get("/metrics").data.decode()
    assert f'api_swept_bytes_total{{kind="uploads"}} {float(report.uploads_bytes)}' in text
    assert 'api_swept_total{kind="cache"} 1.0' in text


# -- DATA_MAX_BYTES --------------------------------------------------------------------------------
def test_a_job_that_would_pass_data_max_bytes_is_refused_with_507(store, config, data_folder, redis_url):
    ended(store, tid(1), NOW, 50_000)
    measured = sweeper(store).sweep(now=NOW).data_bytes
    app = create_app(load_config(platform_env(data_folder, redis_url, DATA_MAX_BYTES=str(measured + 10_000))))
    app.testing = True
    client = app.test_client()

    def start(size: int):
        files = {"files": [(io.BytesIO(b"\x89PNG" + b"p" * (size - 4)), "scan.png")]}
        return client.post(f"/{APP}/start", data=files, content_type="multipart/form-data")

    assert start(5_000).status_code == 202  # fits (uploads are measured by the next sweep)
    refused = start(20_000)
    assert refused.status_code == 507, refused.data
    error = json_of(refused)["error"]
    assert error["code"] == "insufficient_storage" and error["data_max_bytes"] == measured + 10_000
    assert error["incoming_bytes"] == 20_000 and "DATA_MAX_BYTES" in error["message"]
    assert len(list(config.uploads_folder.iterdir())) == 1  # the refused request saved nothing
    # results counted since the last sweep count too: a job's end of 8 000 bytes leaves no room for 5 000
    ended(store, tid(2), NOW, 8_000)
    assert start(5_000).status_code == 507
    assert client.post(f"/{APP}/start", json={"documents": [{"type": "img", "src": "https://example.org/a.png"}]}
                       ).status_code == 202  # nothing uploaded: still under the limit


# -- the sweeper as it runs: a thread of `python -m api callbacks`, with a real worker -------------
def test_the_callbacks_process_sweeps_ended_jobs_and_spares_a_running_jobs_uploads(data_folder, redis_url, tmp_path):
    """RESULT_TTL_DAYS and UPLOAD_TTL_DAYS of about a second, a sweep every 0.3 s: an ended job
    expires within seconds, while a job running for longer keeps its uploads to its end."""
    env = platform_env(data_folder, redis_url, RESULT_TTL_DAYS=str(1 / DAY_S), UPLOAD_TTL_DAYS=str(1 / DAY_S),
                       SWEEP_INTERVAL_S="0.3")
    app = create_app(load_config(env))
    client = app.test_client()
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = Processes(env, logs)
    try:
        procs.worker()
        procs.sender()

        def start(delay: float) -> str:
            files = {"files": [(io.BytesIO(png_bytes()), "a.png"), (io.BytesIO(png_bytes((1, 2, 3))), "b.png")],
                     "parameters": json.dumps({"delay": delay})}
            response = client.post(f"/{APP}/start", data=files, content_type="multipart/form-data")
            assert response.status_code == 202, response.data
            return json_of(response)["tracking_id"]

        quick = start(0)
        wait_for(lambda: client.get(f"/{APP}/{quick}/status").status_code == 410, 30, message="quick job expired",
                 interval=0.2)
        assert not (data_folder / "results" / APP / quick).exists() and not (data_folder / "uploads" / quick).exists()
        slow = start(2.5)  # runs about 5 s: many sweeps while its upload is seconds old
        wait_for(lambda: json_of(client.get(f"/{APP}/{slow}/status"))["state"] == "STARTED", 30,
                 message="slow job started", interval=0.05)
        time.sleep(1.5)  # its upload is past UPLOAD_TTL_DAYS now, and several sweeps ran
        assert (data_folder / "uploads" / slow).is_dir() and (data_folder / "results" / APP / slow).is_dir()
        status = wait_for(lambda: (s := json_of(client.get(f"/{APP}/{slow}/status"))).get("state") in
                          ("SUCCESS", "FAILURE") and s, 60, message="slow job ended", interval=0.05)
        assert status["state"] == "SUCCESS" and status["error_count"] == 0, status
        assert len(status["output"]["images"]["a"]) == 1 and len(status["output"]["images"]["b"]) == 1
        wait_for(lambda: client.get(f"/{APP}/{slow}/status").status_code == 410, 30, message="slow job expired")
    except AssertionError:
        print(procs.logs())
        raise
    finally:
        procs.stop()
    assert int(redis.Redis.from_url(redis_url).get(keys.disk(APP)) or 0) == 0


def test_url_entry_is_where_the_fetcher_puts_a_download(config):
    url = "https://example.org/page.png"
    assert Fetcher(config).cache_path(url, "image").parent.name == retention.url_entry(url)
    assert retention.url_entry(url) == hashlib.sha256(url.encode()).hexdigest()


def test_the_openapi_document_names_410_507_and_the_monitor_fields(client):
    spec = json_of(client.get("/openapi.json"))
    paths = spec["paths"]
    for path, method in ((f"/{APP}/{{tracking_id}}/status", "get"), (f"/{APP}/{{tracking_id}}/result", "get"),
                         (f"/{APP}/{{tracking_id}}/cancel", "post")):
        assert "410" in paths[path][method]["responses"], path
    assert "507" in paths[f"/{APP}/start"]["post"]["responses"]
    monitor = paths[f"/{APP}/monitor"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(monitor["properties"]["disk"]["properties"]["areas"]["properties"]) == {*retention.AREAS, "other"}
    assert "last_sweeps" in monitor["properties"]["retention"]["properties"]
