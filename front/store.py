"""The front's job history: one SQLite file in FRONT_DATA_FOLDER, written by the start form,
by callbacks and by status refreshes, read by the job and history pages.

SQLite because the front may run several threads or gunicorn processes on one host: each call
opens its own connection, and a read-modify-write takes the database's write lock
(`BEGIN IMMEDIATE`), so a late PROGRESS callback racing a SUCCESS cannot undo it.
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TERMINAL = ("SUCCESS", "FAILURE", "CANCELLED")
STATES = ("PENDING", "STARTED", *TERMINAL)
JSON_COLUMNS = ("progress", "errors", "output", "inputs", "parameters")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    tracking_id TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    state TEXT NOT NULL,
    progress TEXT NOT NULL DEFAULT '{}',
    error TEXT NOT NULL DEFAULT '',
    errors TEXT NOT NULL DEFAULT '[]',
    output TEXT NOT NULL DEFAULT 'null',
    inputs TEXT NOT NULL DEFAULT '[]',
    parameters TEXT NOT NULL DEFAULT '{}',
    last_source TEXT NOT NULL DEFAULT 'start',
    callbacks INTEGER NOT NULL DEFAULT 0,
    notify INTEGER NOT NULL DEFAULT 0,
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at DESC);
CREATE TABLE IF NOT EXISTS seen_signatures (signature TEXT PRIMARY KEY, seen_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS seen_events (event_id TEXT PRIMARY KEY, seen_at REAL NOT NULL);
"""


class JobStore:
    """Jobs started from this front, keyed by the API's tracking_id."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=15, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            yield db
        finally:
            db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # -- jobs -------------------------------------------------------------------------------------------
    def create(self, tracking_id: str, app: str, *, state: str = "PENDING", inputs: list | None = None,
               parameters: dict | None = None, notify: bool = False, note: str = "") -> None:
        """Record a job just started; `notify`: the API was asked to call us back (else we poll it)."""
        now = time.time()
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO jobs (tracking_id, app, created_at, updated_at, state, inputs,"
                       " parameters, notify, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (tracking_id, app, now, now, state, json.dumps(inputs or []), json.dumps(parameters or {}),
                        int(notify), note))

    def get(self, tracking_id: str) -> dict | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE tracking_id = ?", (tracking_id,)).fetchone()
        return _job(row) if row else None

    def recent(self, limit: int = 50) -> list[dict]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM jobs ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
        return [_job(r) for r in rows]

    def update(self, tracking_id: str, news: dict, source: str) -> bool:
        """Merge what a callback or the API's status says into the job; False if the job is not
        ours or the news is older than what we know (a PROGRESS arriving after the end, fewer
        images done than already seen). `news` holds any of state, progress, error, errors, output."""
        state = news.get("state")
        if state not in STATES:
            return False
        with self._write() as db:
            row = db.execute("SELECT * FROM jobs WHERE tracking_id = ?", (tracking_id,)).fetchone()
            if row is None:
                return False
            job = _job(row)
            if job["state"] in TERMINAL and (state != job["state"]):
                return False  # an ended job never changes state again
            if job["state"] == "STARTED" and state == "PENDING":
                return False
            progress = news.get("progress") if isinstance(news.get("progress"), dict) else None
            old_done = (job["progress"] or {}).get("done") or 0
            if state == job["state"] and progress is not None and (progress.get("done") or 0) < old_done:
                progress = None  # an older PROGRESS overtaken by a newer one
            changes: dict[str, Any] = {"state": state, "updated_at": time.time(), "last_source": source}
            if progress is not None:
                changes["progress"] = json.dumps(progress)
            if news.get("error") is not None:
                changes["error"] = str(news["error"] or "")
            if isinstance(news.get("errors"), list):
                changes["errors"] = json.dumps(news["errors"])
            if news.get("output") is not None:
                changes["output"] = json.dumps(news["output"])
            if source == "callback":
                changes["callbacks"] = job["callbacks"] + 1
            columns = ", ".join(f"{k} = ?" for k in changes)
            db.execute(f"UPDATE jobs SET {columns} WHERE tracking_id = ?", (*changes.values(), tracking_id))
        return True

    # -- replays ----------------------------------------------------------------------------------------
    def remember_signature(self, signature: str, max_age_s: float) -> bool:
        """True the first time a signature is seen, False for a replay of the same signed message.
        Signatures older than the allowed callback age are forgotten: their timestamps are refused anyway."""
        now = time.time()
        with self._write() as db:
            db.execute("DELETE FROM seen_signatures WHERE seen_at < ?", (now - 2 * max_age_s - 60,))
            try:
                db.execute("INSERT INTO seen_signatures (signature, seen_at) VALUES (?, ?)", (signature, now))
            except sqlite3.IntegrityError:
                return False
        return True

    def remember_event(self, event_id: str, keep_s: float = 7 * 86400) -> bool:
        """True the first time an event id is seen. The API's sender retries an event with the same
        id (and a new signature) when our answer was lost: it is acknowledged but applied once."""
        now = time.time()
        with self._write() as db:
            db.execute("DELETE FROM seen_events WHERE seen_at < ?", (now - keep_s,))
            try:
                db.execute("INSERT INTO seen_events (event_id, seen_at) VALUES (?, ?)", (event_id, now))
            except sqlite3.IntegrityError:
                return False
        return True


def _job(row: sqlite3.Row) -> dict:
    job = dict(row)
    for column in JSON_COLUMNS:
        try:
            job[column] = json.loads(job[column])
        except (TypeError, ValueError):
            job[column] = None
    job["finished"] = job["state"] in TERMINAL
    return job
