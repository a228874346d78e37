"""The Redis keys the platform shares between modules, named once (each is built only here)."""
from __future__ import annotations


def job(tracking_id: str) -> str:
    """A job's hash (its state and fields: `jobs.JobStore`)."""
    return f"job:{tracking_id}"


def job_errors(tracking_id: str) -> str:
    """A job's per-image errors (a list of JSON objects, capped)."""
    return f"{job(tracking_id)}:errors"


def job_log(tracking_id: str) -> str:
    """A job's log tail (a list of lines)."""
    return f"{job(tracking_id)}:log"


def job_events(tracking_id: str) -> str:
    """A job's announced events (a Redis stream, trimmed to EVENTS_STREAM_LENGTH, expiring with the
    job): what GET /<app>/<id>/events replays and follows (`events.py` writes, `stream.py` reads)."""
    return f"{job(tracking_id)}:events"


def disk(app: str) -> str:
    """Bytes of the app's results, as counted when jobs end (`/monitor`'s total_size)."""
    return f"disk:{app}"


def disk_jobs(app: str) -> str:
    """Per job, the share of `disk(app)` it was counted for (so a clear takes back exactly that)."""
    return f"disk:{app}:jobs"


def expired(app: str) -> str:
    """The app's jobs the retention sweeper deleted: a sorted set, tracking id -> when (unix time),
    trimmed to TOMBSTONE_DAYS, so their status answers 410 "expired" with that date."""
    return f"expired:{app}"


def retention_usage() -> str:
    """The last sweep's measurement (a hash): bytes per area, data_bytes, measured_at, and the
    `disk:<app>` counts then (`counted:<app>`, so /start can add the results written since)."""
    return "retention:usage"


def retention_sweeps() -> str:
    """The last sweeps' summaries (a list of JSON objects, newest first, capped)."""
    return "retention:sweeps"


def retention_removed() -> str:
    """What every sweep removed, summed (a hash: jobs, jobs_bytes, uploads, ..., last_sweep_at)."""
    return "retention:removed"


def retention_lock() -> str:
    """One sweep at a time, whatever the number of callbacks processes."""
    return "retention:lock"


def text(raw: bytes | str | memoryview | object) -> str:
    """A Redis reply as text: the platform's clients answer bytes (decode_responses off), which the
    redis typing cannot know."""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        return bytes(raw).decode()
    return str(raw)
