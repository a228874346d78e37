"""Result files: where they live, how they are written (atomically), served and cleared.

Layout: `DATA_FOLDER/results/<app>/<tracking_id>/` holds `job.json`, the demo's outputs and, once
the job succeeded, `result.zip`. Every file appears whole or not at all (temp file, then rename),
so a reader never sees half a result, even if a worker is killed mid-write.

`disk:<app>` in Redis is the bytes of the app's results (`/monitor`'s `total_size`). The share each
job was counted for is kept in `disk:<app>:jobs`, and clearing the job takes back exactly that
share, so no mix of clears, uploads, retries and races drives the total below zero.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO
from urllib.parse import quote

import redis
from flask import Response, send_file

from . import keys
from .config import Config
from .errors import Conflict, InputError, NotFound

TRACKING_ID = re.compile(r"^[0-9a-f]{32}$")
APP_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
ZIP_NAME = "result.zip"
# Formats whose bytes are compressed already: stored in the result zip, not deflated again
COMPRESSED_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".jp2", ".zip", ".gz"})
JOB_FILE = "job.json"
TEMP_PREFIX = ".tmp-"
# The only types served inline by the API's origin: they cannot carry script, even when a browser
# opens them directly. Everything else (SVG, HTML, XML, zips, unknown) is served as an attachment.
INLINE_TYPES = {
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
    ".webp": "image/webp", ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff",
    ".jp2": "image/jp2", ".json": "application/json", ".txt": "text/plain; charset=utf-8",
}
# Redis: the app's results bytes, and per job the share of it that job was counted for.
# KEYS: total, shares. ARGV: tracking id, bytes. Counts a job once; returns the bytes added.
COUNT_LUA = """
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('INCRBY', KEYS[1], ARGV[2])
return tonumber(ARGV[2])
"""
# KEYS: total, shares. ARGV: tracking id, bytes to take back when the job has no share recorded
# (it was counted before shares were). Takes the share back, never below zero; returns it.
UNCOUNT_LUA = """
local share = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[1])
local total = tonumber(redis.call('GET', KEYS[1]) or '0')
redis.call('SET', KEYS[1], math.max(total - share, 0))
return share
"""


def disk_bytes(client: redis.Redis, app: str) -> int:
    """The bytes of `app`'s results as counted (`/monitor`'s total_size)."""
    return int(client.get(keys.disk(app)) or 0)


def is_tracking_id(value: str) -> bool:
    return bool(TRACKING_ID.match(value or ""))


def job_folder(cfg: Config, app: str, tracking_id: str) -> Path:
    """The job's result folder; ids are validated before they touch the disk."""
    if not APP_NAME.match(app) or not is_tracking_id(tracking_id):
        raise NotFound(f"no job {tracking_id!r} in {app!r}")
    return cfg.results_folder / app / tracking_id


def safe_relpath(relpath: str) -> PurePosixPath:
    """A relative path with no `..`, no absolute root, no backslash, no hidden temp file."""
    path = PurePosixPath(relpath)
    if (not relpath or path.is_absolute() or "\\" in relpath or "\x00" in relpath
            or any(part in ("", ".", "..") for part in relpath.split("/"))
            or any(part.startswith(TEMP_PREFIX) for part in path.parts)):
        raise InputError("path", f"not a safe relative path: {relpath!r}")
    return path


def safe_join(root: Path, relpath: str) -> Path:
    target = root.joinpath(*safe_relpath(relpath).parts)
    if not target.resolve().is_relative_to(root.resolve()):  # a symlink pointing out
        raise InputError("path", f"not a safe relative path: {relpath!r}")
    return target


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Write to a temp file beside `path`, fsync, then rename over it; on error, leave nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write(path: Path, data: bytes | str) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)


def write_json(path: Path, obj) -> None:
    atomic_write(path, json.dumps(obj, ensure_ascii=False, indent=1, default=str))


def result_files(folder: Path) -> list[Path]:
    """Every finished file of a job (temp files and the zip itself left out), sorted."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not p.name.startswith(TEMP_PREFIX) and p != folder / ZIP_NAME)


def build_zip(folder: Path) -> Path:
    """`result.zip` of the job's files, built once when the job ends (before it is said to have
    succeeded, so it is on every job's critical path). Files that are compressed already (JPEG,
    PNG, ...) are stored as they are: deflating them again costs ~25 ms per MB and saves ~1%."""
    target = folder / ZIP_NAME
    with atomic_open(target) as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in result_files(folder):
            method = zipfile.ZIP_STORED if path.suffix.lower() in COMPRESSED_SUFFIXES else zipfile.ZIP_DEFLATED
            archive.write(path, path.relative_to(folder).as_posix(), compress_type=method)
    return target


def serve_file(cfg: Config, app: str, tracking_id: str, relpath: str, *, download_name: str | None = None) -> Response:
    """A result file (`X-Accel-Redirect: <XACCEL_PREFIX>/<app>/<id>/<relpath>` with USE_XACCEL)."""
    path = safe_join(job_folder(cfg, app, tracking_id), relpath)
    if not path.is_file():
        raise NotFound(f"no file {relpath!r} in job {tracking_id}")
    return _send(cfg, path, f"{app}/{tracking_id}/{relpath}", download_name or path.name)


def serve_data_file(cfg: Config, path: Path, download_name: str) -> Response:
    """A file elsewhere in DATA_FOLDER (the input cache, uploads, dataset zips), named
    `download_name`, whose suffix decides the type (give the one the bytes show, not the client's);
    through nginx as `X-Accel-Redirect: <XACCEL_PREFIX>/_data/<path in DATA_FOLDER>`."""
    relative = path.resolve().relative_to(cfg.data_folder.resolve())
    return _send(cfg, path, f"_data/{relative.as_posix()}", download_name)


def inline_type(name: str) -> str | None:
    """The Content-Type a file called `name` is served inline with; None: as an attachment."""
    return INLINE_TYPES.get(PurePosixPath(name).suffix.lower())


def content_disposition(kind: str, name: str) -> str:
    """`attachment` or `inline` with the file name: as is when plain ASCII, else an ASCII stand-in
    and RFC 6266's `filename*` (a header cannot carry raw UTF-8, nor an unescaped quote)."""
    plain = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in name)
    if plain == name:
        return f'{kind}; filename="{name}"'
    return f"{kind}; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"


def _send(cfg: Config, path: Path, internal: str, name: str) -> Response:
    """The file, through nginx (`X-Accel-Redirect: <XACCEL_PREFIX>/<internal>`) when USE_XACCEL is
    on, else by Flask; inline only when its name's type is known safe. nginx keeps this answer's
    Content-Type and Content-Disposition; its configuration adds nosniff and a sandbox."""
    mimetype = inline_type(name)
    if cfg.use_xaccel:
        response = Response(status=200)
        response.headers["X-Accel-Redirect"] = f"{cfg.xaccel_prefix.rstrip('/')}/{quote(internal)}"
        response.headers["Content-Type"] = mimetype or ""  # "": nginx picks it from the extension
    else:
        response = send_file(path, mimetype=mimetype, as_attachment=not mimetype, download_name=name,
                             conditional=True, max_age=0)
    response.headers["Content-Disposition"] = content_disposition("inline" if mimetype else "attachment", name)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def folder_size(folder: Path) -> int:
    """Bytes of the files under `folder` (0 when it is gone; files vanishing meanwhile are skipped)."""
    total = 0
    for path in folder.rglob("*"):
        with contextlib.suppress(FileNotFoundError):
            if path.is_file():
                total += path.stat().st_size
    return total


def count_results(client: redis.Redis, app: str, tracking_id: str, folder: Path) -> int:
    """Add the job's results folder to `disk:<app>`, once per job (a second call adds nothing);
    returns the bytes added. Call it before the job's end is written (a clear waits for that), so
    a job that can be cleared has always been counted first."""
    script = client.register_script(COUNT_LUA)
    return int(script(keys=[keys.disk(app), keys.disk_jobs(app)], args=[tracking_id, folder_size(folder)]))


def clear_job_files(cfg: Config, app: str, tracking_id: str, client: redis.Redis | None = None) -> int:
    """Delete an ended job's uploads and results; returns the bytes freed on disk.

    Refuses (409) a job whose `job.json` does not record its end yet while Redis still holds it:
    its worker is between the end in Redis and the mirror on disk, and would recreate a folder
    holding only `job.json`. Each folder is renamed away, then deleted, so the job vanishes at once.
    With `client`, the job's share of `disk:<app>` is taken back: the share it was counted for, or
    (counted before shares were kept) its results measured now; never below zero."""
    folder = job_folder(cfg, app, tracking_id)
    if folder.is_dir() and not _ended_on_disk(folder) and (client is None or _held_by_redis(client, tracking_id)):
        raise Conflict(f"job {tracking_id} has not finished ending; try again in a moment")
    uploads = _remove(cfg.uploads_folder / tracking_id)
    results = _remove(folder)
    if client is not None:
        script = client.register_script(UNCOUNT_LUA)
        script(keys=[keys.disk(app), keys.disk_jobs(app)], args=[tracking_id, results])
    return uploads + results


def _ended_on_disk(folder: Path) -> bool:
    """Whether `job.json` records the job's end (every ending transition sets `finished_at`)."""
    try:
        return bool(json.loads((folder / JOB_FILE).read_text()).get("finished_at"))
    except (OSError, ValueError, AttributeError):
        return False


def _held_by_redis(client: redis.Redis, tracking_id: str) -> bool:
    """Whether Redis still holds the job, so its end may still be on its way to disk. (A job Redis
    forgot before it ended is lost: nothing will write it again, it may go.)"""
    return bool(client.exists(keys.job(tracking_id)))


def _remove(folder: Path) -> int:
    """Rename `folder` to a hidden sibling, then delete that; returns the bytes removed (0 for the
    caller that lost a race to rename it). A leftover of a clear that died midway goes too."""
    trash = folder.with_name(f"{TEMP_PREFIX}cleared-{folder.name}")
    shutil.rmtree(trash, ignore_errors=True)
    try:
        folder.rename(trash)
    except FileNotFoundError:
        return 0
    size = folder_size(trash)
    shutil.rmtree(trash, ignore_errors=True)
    return size
